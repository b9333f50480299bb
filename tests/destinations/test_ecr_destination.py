from __future__ import annotations

from typing import Any

import pytest

from layerhoist import __version__
from layerhoist.destinations import DestinationOptions
from layerhoist.destinations.ecr.destination import EcrDestination, user_agent
from layerhoist.refs import parse_destination
from layerhoist.registry import EmbeddedRegistry
from layerhoist.transfer.config import PushConfig


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


@pytest.mark.anyio
@pytest.mark.usefixtures("aws_credentials")
async def test_requests_name_layerhoist_in_their_user_agent(registry: EmbeddedRegistry) -> None:
    sent: list[bytes] = []

    def record(request: Any, **_: Any) -> None:
        sent.append(request.headers["User-Agent"])

    destination = EcrDestination(
        parse_destination("ecr-public:team/app"),
        config=PushConfig(),
        options=DestinationOptions(endpoint_url=registry.endpoint_url),
    )
    async with destination:
        destination.client.meta.events.register("before-send", record)
        await destination.prepare(create=True)
        await destination.missing_blobs(["sha256:" + "0" * 64])
    assert len(sent) == 3
    assert all(agent.decode().startswith(user_agent()) for agent in sent)
    assert user_agent().startswith(f"layerhoist/{__version__} ")
