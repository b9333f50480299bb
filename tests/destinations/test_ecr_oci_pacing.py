"""ECR's ``/v2/`` steps are paced as the API actions they count as, and a 429 slows them."""

from __future__ import annotations

import pytest

from layerhoist.destinations.ecr.limits import OCI_STEP_QUOTAS, PUBLISHED_QUOTAS
from layerhoist.destinations.registry.upload import RequestPacing, timed
from layerhoist.oci.errors import RegistryResponseError
from layerhoist.transfer.metrics import RequestMetrics
from layerhoist.transfer.pacing import Pacer

pytestmark = pytest.mark.anyio


async def test_steps_count_against_their_api_quota_and_throttles_slow_them() -> None:
    pacer = Pacer(quotas=PUBLISHED_QUOTAS["ecr"])
    pacing = RequestPacing(pacer=pacer, operations=OCI_STEP_QUOTAS)
    metrics = RequestMetrics()

    async def ok() -> None:
        return None

    async def throttled() -> None:
        raise RegistryResponseError(what="PUT manifest", status=429, retry_after="1")

    await timed(metrics, "PutManifest", ok, pacing=pacing)
    await timed(metrics, "PutBlob", ok, pacing=pacing, hold_window=False)
    await timed(metrics, "Ping", ok, pacing=pacing)  # not an API action: not paced
    rate = pacer.stats["PutImage"].rate
    with pytest.raises(RegistryResponseError):
        await timed(metrics, "PutManifest", throttled, pacing=pacing)
    stats = pacer.stats
    assert stats["PutImage"].throttles == 1
    assert stats["PutImage"].rate < rate
    assert stats["CompleteLayerUpload"].throttles == 0
