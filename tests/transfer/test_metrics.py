from __future__ import annotations

import pytest

from layerhoist.transfer.metrics import RequestMetrics


def test_percentiles_are_within_one_bucket() -> None:
    metrics = RequestMetrics()
    for ms in range(1, 101):
        metrics.record("UploadLayerPart", ms / 1000, ok=ms != 50)
    p50 = metrics.percentile("UploadLayerPart", 50)
    p99 = metrics.percentile("UploadLayerPart", 99)
    assert p50 == pytest.approx(0.050, rel=0.05)
    assert p99 == pytest.approx(0.099, rel=0.05)
    report = metrics.to_json()["UploadLayerPart"]
    assert report["requests"] == 100
    assert report["errors"] == 1
    assert report["seconds"] == pytest.approx(5.05)


def test_unknown_operation_has_no_percentile() -> None:
    metrics = RequestMetrics()
    assert metrics.percentile("PutImage", 50) is None
    assert metrics.to_json() == {}
