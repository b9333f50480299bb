"""``layerhoist sync`` as a user runs it: a YAML file, a docker-registry source seeded by skopeo,
a second docker-registry as destination, the reports, the lock, a corrupt source blob."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from commands import FAILED, OK, USAGE, one_line_error
from conftest import required_tool
from layerhoist.exits import EXIT_LOCKED
from layerhoist.state import StateFile
from layerhoist.testing.distribution import Distribution, distribution_process
from sync_files import TAGS, held, seed_tags

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

#: Each filter of ``tags:`` and the source tags it takes (of :data:`TAGS`).
FILTERS = {
    "include": ("{include: ['\\d+\\.\\d+\\.\\d+']}", ["1.0.0", "1.1.0", "2.0.0"]),
    "exclude": ("{exclude: ['.*-rc.*', latest, dev]}", ["1.0.0", "1.1.0", "2.0.0", "v2.1.0"]),
    "semver": ("{semver: '>=1.1'}", ["1.1.0", "2.0.0", "v2.1.0"]),
    "latest": ("{latest: 2}", ["2.0.0", "v2.1.0"]),
    "all": (None, list(TAGS)),
}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """A second docker-registry, the destination."""
    binary, skopeo = required_tool("docker-registry"), required_tool("skopeo")
    directory = tmp_path_factory.mktemp("mirror")
    with distribution_process(directory, binary=binary, skopeo=skopeo) as running:
        yield running


@pytest.fixture(scope="module")
def seeded(distribution: Distribution, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``app`` with every tag of :data:`TAGS`: tag -> digest."""
    return seed_tags(distribution, tmp_path_factory.mktemp("seed"), "app", TAGS, seed=41)


def sync_file(path: Path, source: Distribution, mirror: Distribution, *mappings: str) -> Path:
    lines = [
        "registries:",
        f"  {source.host}: {{tls_verify: false}}",
        f"  {mirror.host}: {{tls_verify: false}}",
        "mappings:",
        *mappings,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def sync_cli(*args: str) -> Any:
    return await anyio.run_process([sys.executable, "-m", "layerhoist", "sync", *args], check=False)


async def test_each_filter_lands_exactly_its_tags_and_a_dry_run_writes_nothing(
    distribution: Distribution, mirror: Distribution, seeded: dict[str, str], tmp_path: Path
) -> None:
    mappings = []
    for name, (rules, _) in FILTERS.items():
        mappings += [
            f"  - from: {distribution.host}/app",
            f"    to: docker://{mirror.host}/filters/{name}",
        ]
        if rules is not None:
            mappings.append(f"    tags: {rules}")
    config = sync_file(tmp_path / "sync.yaml", distribution, mirror, *mappings)
    state, report, metrics = tmp_path / "state", tmp_path / "report.json", tmp_path / "sync.prom"

    dry = await sync_cli("--config", str(config), "--state", str(state), "--dry-run")
    assert dry.returncode == OK, dry.stderr.decode()
    wanted = {
        (f"docker://{mirror.host}/filters/{name}:{tag}")
        for name, (_, tags) in FILTERS.items()
        for tag in tags
    }
    assert {destination for action, destination in _actions(dry.stdout)} == wanted
    assert {action for action, _ in _actions(dry.stdout)} == {"copy"}
    assert len(_actions(dry.stdout)) == len(wanted)
    for name in FILTERS:
        assert await held(mirror, f"filters/{name}") == {}
    assert not state.exists()

    cold = await sync_cli(
        "--config", str(config), "--state", str(state), "--json", str(report),
        "--metrics-file", str(metrics), "--quiet",
    )  # fmt: skip
    assert cold.returncode == OK, cold.stderr.decode()
    assert cold.stdout == b""
    for name, (_, tags) in FILTERS.items():
        assert await held(mirror, f"filters/{name}") == {tag: seeded[tag] for tag in tags}
    document = json.loads(report.read_text())
    assert document["ok"] is True
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    copied = [
        s.value
        for s in families["layerhoist_sync_tags"].samples
        if s.labels.get("result") == "copied"
    ]
    assert copied == [len(wanted)]

    warm = await sync_cli("--config", str(config), "--state", str(state))
    assert warm.returncode == OK, warm.stderr.decode()
    assert {action for action, _ in _actions(warm.stdout)} == {"up-to-date"}


def _actions(stdout: bytes) -> list[tuple[str, str]]:
    """(action, destination) of each printed line: ``ACTION SOURCE -> DESTINATION (...)``."""
    return [(words[0], words[3]) for words in map(str.split, stdout.decode().splitlines())]


async def test_a_corrupt_source_blob_fails_only_its_tag(
    distribution: Distribution, mirror: Distribution, tmp_path: Path
) -> None:
    digests = seed_tags(distribution, tmp_path, "broken", ["good", "bad"], seed=42)
    manifest = json.loads(
        (
            await anyio.run_process(
                [distribution.skopeo, "inspect", "--raw", "--tls-verify=false",
                 f"docker://{distribution.host}/broken:bad"]
            )
        ).stdout
    )  # fmt: skip
    layer = manifest["layers"][0]["digest"].removeprefix("sha256:")
    data = distribution.root / "docker/registry/v2/blobs/sha256" / layer[:2] / layer / "data"
    data.write_bytes(bytes(len(data.read_bytes())))
    config = sync_file(
        tmp_path / "sync.yaml",
        distribution,
        mirror,
        f"  - from: {distribution.host}/broken",
        f"    to: docker://{mirror.host}/broken",
    )
    done = await sync_cli("--config", str(config), "--state", str(tmp_path / "state"))
    assert done.returncode == FAILED
    error = one_line_error(done)
    assert ":bad" in error or layer[:12] in error, error
    assert await held(mirror, "broken") == {"good": digests["good"]}


async def test_an_overlapping_run_is_refused_with_exit_3(
    distribution: Distribution, mirror: Distribution, tmp_path: Path
) -> None:
    config = sync_file(
        tmp_path / "sync.yaml",
        distribution,
        mirror,
        f"  - from: {distribution.host}/app",
        f"    to: docker://{mirror.host}/locked",
    )
    state = tmp_path / "state"
    with StateFile(state):
        refused = await sync_cli("--config", str(config), "--state", str(state))
        # A dry run takes no lock: it may look while a run goes on.
        looked = await sync_cli("--config", str(config), "--state", str(state), "--dry-run")
    assert refused.returncode == EXIT_LOCKED
    assert str(state) in one_line_error(refused)
    assert looked.returncode == OK, looked.stderr.decode()
    assert await held(mirror, "locked") == {}


async def test_a_bad_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "sync.yaml"
    config.write_text("mappings:\n  - from: example.com/app\n    tagz: {latest: 1}\n")
    done = await sync_cli("--config", str(config))
    assert done.returncode == USAGE
    assert f"{config}:3" in one_line_error(done)


async def test_metrics_of_a_dry_run_are_refused_before_planning(tmp_path: Path) -> None:
    config = tmp_path / "sync.yaml"
    config.write_text("mappings:\n  - from: 127.0.0.1:1/app\n    to: oci:" + str(tmp_path) + "\n")
    metrics = tmp_path / "sync.prom"
    done = await sync_cli(
        "--config", str(config), "--dry-run", "--metrics-file", str(metrics), "--quiet"
    )
    assert done.returncode == USAGE
    assert "--metrics-file" in one_line_error(done)
    assert not metrics.exists()
