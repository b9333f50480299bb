"""A source's pull limit stops the run's pulls from that host, said per tag, and only there."""

from __future__ import annotations

from pathlib import Path

import pytest

import layerhoist
from conftest import RegistryFactory
from layerhoist.destinations import DestinationOptions
from layerhoist.sync.run import sync
from layerhoist.sync.settings import SyncSettings
from layerhoist.testing.synthetic import write_oci_layout
from sync_files import sync_config, sync_mapping

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.usefixtures("aws_credentials")]

#: Manifest GETs the source allows; with two left the source stops pulling (its reserve).
PULLS = 5


async def test_the_pull_limit_stops_the_host_and_says_so(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    tags = write_oci_layout(layout, images=4, layers_per_image=1, layer_size=2048)
    async with make_registry(pull_limit=PULLS, pull_limit_window=3600.0) as source:
        options = DestinationOptions(endpoint_url=source.endpoint_url, create_repository=True)
        for repository in ("one", "two"):
            await layerhoist.copy(f"oci:{layout}", f"ecr-public:{repository}", options=options)
        host = source.endpoint_url.removeprefix("http://")
        config = sync_config(
            sync_mapping(0, f"docker://{host}/one", f"oci:{tmp_path / 'one'}"),
            sync_mapping(1, f"docker://{host}/two", f"oci:{tmp_path / 'two'}"),
            insecure=[host],
        )
        records = await sync(config, SyncSettings(mappings_at_once=1), state=tmp_path / "s")
    first = {r.tag: r.action for r in records if r.mapping == 0}
    assert first == {**dict.fromkeys(tags[:3], "copied"), tags[3]: "failed"}
    stopped = [r for r in records if r.action == "failed"]
    assert all("pull limit" in (r.error or "") for r in stopped)
    assert {r.tag for r in records if r.mapping == 1 and r.action == "failed"} == set(tags)
    assert all((r.error or "").startswith("not started: ") for r in records if r.mapping == 1)
