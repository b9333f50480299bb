"""The source side of a sync: each host's request rate from the sync file."""

from __future__ import annotations

from pathlib import Path

from layerhoist.refs import parse_destination, parse_source
from layerhoist.sync.catalog import SourceRates, registry_options
from layerhoist.sync.model import RegistrySettings, SyncConfig, SyncMapping
from layerhoist.transfer.config import PushConfig


def mapping(index: int, origin: str) -> SyncMapping:
    return SyncMapping(
        index=index,
        line=index + 1,
        origin=origin,
        source=parse_source(f"docker://{origin}"),
        destination=parse_destination(f"oci:/tmp/out{index}"),
        tags=None,
    )


def test_each_paced_host_has_one_bucket_shared_by_its_mappings() -> None:
    first, second, other = (
        mapping(0, "quay.io/a"),
        mapping(1, "quay.io/b"),
        mapping(2, "ghcr.io/c"),
    )
    config = SyncConfig(
        path=Path("sync.yaml"),
        mappings=(first, second, other),
        registries={"quay.io": RegistrySettings(requests_per_second=4.0)},
    )
    rates = SourceRates(config)
    options = [
        registry_options(config, m, config=PushConfig(), auth_file=None, rates=rates)
        for m in (first, second, other)
    ]
    assert options[0].rate is not None and options[0].rate is options[1].rate
    assert options[0].rate.rate == 4.0
    # A host the file sets no rate for is not paced.
    assert options[2].rate is None
    # Each phase makes its own: the plan's bucket is not the run's.
    assert SourceRates(config).of("quay.io") is not options[0].rate
