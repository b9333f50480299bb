from __future__ import annotations

import pytest

from layerhoist.config import PushConfig
from layerhoist.destinations import DestinationOptions, EcrDestination
from layerhoist.reference import parse_destination


@pytest.mark.parametrize(
    ("pacing", "endpoint", "paced"),
    [
        ("auto", None, True),
        ("auto", "https://api.ecr-public.us-east-1.amazonaws.com", True),
        ("auto", "https://ecr.cn-north-1.amazonaws.com.cn", True),
        ("auto", "http://127.0.0.1:5000", False),
        ("published", "http://127.0.0.1:5000", True),
        ("off", None, False),
    ],
)
def test_published_quotas_pace_aws_endpoints_only_in_auto(
    pacing: str, endpoint: str | None, paced: bool
) -> None:
    destination = EcrDestination(
        parse_destination("ecr-public:team/app"),
        config=PushConfig(pacing=pacing),  # type: ignore[arg-type]
        options=DestinationOptions(endpoint_url=endpoint),
    )
    assert (destination.pacer is not None) is paced


def test_unknown_pacing_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="pacing"):
        PushConfig(pacing="sometimes")  # type: ignore[arg-type]
