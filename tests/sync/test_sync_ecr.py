"""``sync`` from a docker-registry into the embedded registry's ECR flavours, end to end.

The source is Debian's docker-registry seeded by skopeo; the destination answers as ECR (its
API: BatchGetImage, DescribeRepositories' immutability) and as ECR Public (DescribeImageTags).
The embedded registry's request counters prove what a dry run and a warm run do not ask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import TEST_REGION, sha256_digest
from layerhoist.registry import EmbeddedRegistry
from layerhoist.sync.model import Destination
from layerhoist.sync.plan import CONFIRMED_BY_STATE, HELD_BY_DESTINATION, IMMUTABLE_DIFFERS
from layerhoist.sync.records import TagRecord
from layerhoist.sync.run import sync
from layerhoist.sync.settings import SyncSettings
from layerhoist.testing.distribution import Distribution
from layerhoist.transfer.config import PushConfig
from sync_files import TAGS, seed_tags, sync_config, sync_mapping

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.usefixtures("aws_credentials")]


@pytest.fixture(scope="module")
def seeded(distribution: Distribution, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``app`` in the module's docker-registry with every tag of :data:`TAGS`: tag -> digest."""
    return seed_tags(distribution, tmp_path_factory.mktemp("seed"), "app", TAGS, seed=11)


def settings_for(registry: EmbeddedRegistry, **changes: Any) -> SyncSettings:
    return SyncSettings(
        destination=Destination(endpoint_url=registry.endpoint_url, region=TEST_REGION),
        config=PushConfig(retry_for=0.0),
        **changes,
    )


def by_tag(records: list[TagRecord]) -> dict[str, TagRecord]:
    return {record.tag: record for record in records}


def requests(registry: EmbeddedRegistry) -> dict[str, int]:
    counted: dict[str, int] = registry.stats()["requests"]  # type: ignore[assignment]
    return dict(counted)


async def tags_held(client: Any, repository: str) -> dict[str, str]:
    answer = await client.list_images(repositoryName=repository)
    return {i["imageTag"]: i["imageDigest"] for i in answer["imageIds"] if "imageTag" in i}


@pytest.mark.parametrize("service", ["ecr", "ecr-public"])
async def test_dry_cold_warm_verify_and_a_new_tag(
    service: str,
    distribution: Distribution,
    registry: EmbeddedRegistry,
    ecr_client: Any,
    skopeo: str,
    tmp_path: Path,
) -> None:
    repository = f"cycle-{service}"
    seeded = seed_tags(distribution, tmp_path, repository, TAGS, seed=21)
    origin = f"docker://{distribution.host}/{repository}"
    config = sync_config(
        sync_mapping(0, origin, f"{service}:mirror/app"), insecure=[distribution.host]
    )
    settings = settings_for(registry)
    state = tmp_path / "state.sqlite"

    planned = await sync(config, settings, state=state, dry_run=True)
    assert {r.tag: r.action for r in planned} == dict.fromkeys(TAGS, "copy")
    assert all(r.bytes > 0 for r in planned)
    assert not state.exists()
    # The dry run asked whether the repository exists, and wrote nothing.
    assert set(requests(registry)) == {"DescribeRepositories"}

    cold = by_tag(await sync(config, settings, state=state))
    assert {tag: r.action for tag, r in cold.items()} == dict.fromkeys(TAGS, "copied")
    assert {tag: r.source_digest for tag, r in cold.items()} == seeded
    async with ecr_client(registry.endpoint_url, "ecr") as client:
        assert await tags_held(client, "mirror/app") == seeded
    host = registry.endpoint_url.removeprefix("http://")
    raw = await anyio.run_process(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{host}/mirror/app:v2.1.0"]
    )
    assert sha256_digest(raw.stdout) == seeded["v2.1.0"]

    before = requests(registry)
    warm = await sync(config, settings, state=state)
    assert {r.action for r in warm} == {"up-to-date"}
    assert {r.reason for r in warm} == {CONFIRMED_BY_STATE}
    assert requests(registry) == before  # the state file answered for the destination

    verified = await sync(config, settings_for(registry, verify=True), state=state)
    assert {(r.action, r.reason) for r in verified} == {("up-to-date", HELD_BY_DESTINATION)}
    asked = set(requests(registry)) - set(before)
    assert asked == ({"BatchGetImage"} if service == "ecr" else {"DescribeImageTags"})

    added = seed_tags(distribution, tmp_path, repository, ["3.0.0"], seed=22)
    fresh = by_tag(await sync(config, settings, state=state))
    assert fresh["3.0.0"].action == "copied"
    assert {r.action for tag, r in fresh.items() if tag != "3.0.0"} == {"up-to-date"}
    async with ecr_client(registry.endpoint_url, "ecr") as client:
        assert (await tags_held(client, "mirror/app"))["3.0.0"] == added["3.0.0"]


async def test_immutable_tag_that_differs_is_skipped_and_the_rest_lands(
    distribution: Distribution,
    seeded: dict[str, str],
    registry: EmbeddedRegistry,
    ecr_client: Any,
    tmp_path: Path,
) -> None:
    import layerhoist
    from layerhoist.destinations import DestinationOptions
    from layerhoist.oci import ClientSettings
    from layerhoist.sources.registry import RegistrySourceOptions

    async with ecr_client(registry.endpoint_url, "ecr") as client:
        await client.create_repository(repositoryName="locked/app", imageTagMutability="IMMUTABLE")
    # 1.0.0 in the destination holds what dev holds at the source.
    await layerhoist.copy(
        f"docker://{distribution.host}/app:dev",
        "ecr:locked/app:1.0.0",
        options=DestinationOptions(endpoint_url=registry.endpoint_url, region=TEST_REGION),
        source_options=RegistrySourceOptions(client=ClientSettings(tls_verify=False)),
    )
    config = sync_config(
        sync_mapping(0, f"docker://{distribution.host}/app", "ecr:locked/app"),
        insecure=[distribution.host],
    )
    records = by_tag(await sync(config, settings_for(registry), state=tmp_path / "s.sqlite"))
    assert records["1.0.0"].action == "skipped"
    assert records["1.0.0"].reason == IMMUTABLE_DIFFERS
    assert records["1.0.0"].destination_digest == seeded["dev"]
    assert {r.action for tag, r in records.items() if tag != "1.0.0"} == {"copied"}
    async with ecr_client(registry.endpoint_url, "ecr") as client:
        held = await tags_held(client, "locked/app")
    assert held == {**seeded, "1.0.0": seeded["dev"]}
