"""``sync`` from an OCI layout: platforms cut from an index, and an OCI layout as destination.

A copy of chosen platforms writes a new index, whose digest is not the source's: a second run
must still find it up to date, from the state file or, without one, by cutting the source's
index as the copy did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import TEST_REGION
from layerhoist.registry import EmbeddedRegistry
from layerhoist.sync.model import Destination
from layerhoist.sync.plan import CONFIRMED_BY_STATE, HELD_BY_DESTINATION
from layerhoist.sync.run import sync
from layerhoist.sync.settings import SyncSettings
from layerhoist.sync.shard import Shard
from layerhoist.testing.synthetic import write_oci_layout
from sync_files import sync_config, sync_mapping

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def actions(records: list[Any]) -> dict[str, tuple[str, str | None]]:
    return {record.tag: (record.action, record.reason) for record in records}


def put_images(registry: EmbeddedRegistry) -> int:
    counted: dict[str, int] = registry.stats()["requests"]  # type: ignore[assignment]
    return counted["PutImage"]


@pytest.mark.usefixtures("aws_credentials")
async def test_platforms_cut_from_an_index_are_up_to_date_on_the_next_run(
    registry: EmbeddedRegistry, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    tags = write_oci_layout(layout, images=2, layers_per_image=1, layer_size=2048, multiarch=True)
    config = sync_config(sync_mapping(0, f"oci:{layout}", "ecr:cut/app", platforms=["linux/arm64"]))
    settings = SyncSettings(
        destination=Destination(endpoint_url=registry.endpoint_url, region=TEST_REGION)
    )

    cold = await sync(config, settings, state=tmp_path / "a")
    assert {r.action for r in cold} == {"copied"}
    puts = put_images(registry)

    # Without a state file the plan cuts the source's index as the copy did.
    fresh = await sync(config, settings, state=tmp_path / "b")
    assert actions(fresh) == dict.fromkeys(tags, ("up-to-date", HELD_BY_DESTINATION))
    assert all(r.destination_digest != r.source_digest for r in fresh)
    again = await sync(config, settings, state=tmp_path / "b")
    assert actions(again) == dict.fromkeys(tags, ("up-to-date", CONFIRMED_BY_STATE))
    assert put_images(registry) == puts


async def test_a_layout_destination_is_read_from_its_index(tmp_path: Path) -> None:
    source, mirror = tmp_path / "source", tmp_path / "mirror"
    tags = write_oci_layout(source, images=3, layers_per_image=1, layer_size=2048)
    config = sync_config(sync_mapping(0, f"oci:{source}", f"oci:{mirror}"))

    planned = await sync(config, SyncSettings(), state=tmp_path / "a", dry_run=True)
    assert {r.action for r in planned} == {"copy"}
    assert not mirror.exists()
    cold = await sync(config, SyncSettings(), state=tmp_path / "a")
    assert actions(cold) == dict.fromkeys(tags, ("copied", None))
    fresh = await sync(config, SyncSettings(), state=tmp_path / "b")
    assert actions(fresh) == dict.fromkeys(tags, ("up-to-date", HELD_BY_DESTINATION))


async def test_shards_partition_the_plan(tmp_path: Path) -> None:
    source = tmp_path / "source"
    write_oci_layout(source, images=12, layers_per_image=1, layer_size=2048)
    config = sync_config(
        sync_mapping(0, f"oci:{source}", f"oci:{tmp_path / 'one'}"),
        sync_mapping(1, f"oci:{source}", f"oci:{tmp_path / 'two'}"),
    )
    whole = await sync(config, SyncSettings(), state=tmp_path / "s", dry_run=True)
    parts = [
        await sync(config, SyncSettings(), state=tmp_path / "s", dry_run=True, shard=Shard(i, 3))
        for i in range(3)
    ]
    keys = [{record.key for record in part} for part in parts]
    assert all(keys)
    assert sum(len(k) for k in keys) == len(whole)
    assert set().union(*keys) == {record.key for record in whole}
