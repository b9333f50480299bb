"""``layerhoist sync --shard I/3``, end to end, as deploy/ runs it: three real processes at once
over one sync file and one destination, each with its own state file.

The sources are a docker-registry seeded by skopeo (two mappings of one repository, one with a
version filter) and an OCI layout whose images share a base layer (so shards race on one blob
in one repository). The destination is the embedded registry answering as ECR, in this
process, so the test reads what it holds and slows it down at will; or the docker-registry
itself. Checked: the shards' JSON reports are disjoint and together are the unsharded
``--dry-run`` plan; every tag lands with its source digest and skopeo reads images back; a
shard killed with SIGKILL while the registry shows it part-way, rerun alone, finishes the job;
``--shards 3`` takes its index from an array job's environment, and says where it looked when
it finds none.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from commands import OK, USAGE, one_line_error
from conftest import TEST_REGION, ClientFactory
from layerhoist.registry import EmbeddedRegistry
from layerhoist.sync.config import load_config
from layerhoist.sync.model import Destination
from layerhoist.sync.records import work_key
from layerhoist.sync.run import sync
from layerhoist.sync.settings import SyncSettings
from layerhoist.sync.shard import parse_shard, shard_index
from layerhoist.testing.distribution import Distribution
from layerhoist.testing.synthetic import REF_NAME_ANNOTATION, write_oci_layout
from sync_files import LAYER_SIZE, TAGS, held, seed_tags

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SHARDS = 3
#: Where a Kubernetes Indexed Job and an AWS Batch array job put each child's index: set by the
#: engines, so written out here rather than read from the package.
INDEX_VARIABLES = ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX")
#: The docker-registry repository every tag of :data:`TAGS` is seeded into.
SOURCE_REPOSITORY = "shards/app"
#: The version filter of the second mapping, and the tags of :data:`TAGS` it takes.
SEMVER = ">=1.1"
SEMVER_TAGS = ("1.1.0", "2.0.0", "v2.1.0")
#: The OCI layout's images: each has the same base layer and one of its own.
LAYOUT_IMAGES = 8
LAYOUT_LAYERS = 2
SHARED_LAYERS = 1
#: Destination kinds: the embedded registry's ECR API, or the docker-registry through /v2/.
ECR, DOCKER = "ecr", "docker"
#: The destination repository of each mapping (the first from ``defaults: target``).
REPOSITORIES = ("mirror/shards/app", "releases/app", "local/app")
#: Every work item of the file.
WORK_ITEMS = len(TAGS) + len(SEMVER_TAGS) + LAYOUT_IMAGES
#: Added by the registry to every request while the shard to be killed runs: with one blob and
#: one mapping at a time, its tags then land one after another, each a dozen requests apart.
SLOW_LATENCY_MS = 50.0
#: How often the registry is asked what it holds while waiting for the kill point.
POLL_SECONDS = 0.05
#: Bounds each step that would otherwise hang on a regression.
GUARD_SECONDS = 120.0

#: A work item: the mapping's position and the destination image (``ecr:REPO:TAG``…).
Item = tuple[int, str]


@pytest.fixture(scope="module")
def seeded(distribution: Distribution, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """:data:`SOURCE_REPOSITORY` with every tag of :data:`TAGS`: tag -> digest."""
    return seed_tags(
        distribution, tmp_path_factory.mktemp("seed"), SOURCE_REPOSITORY, TAGS, seed=61
    )


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An OCI layout of :data:`LAYOUT_IMAGES` images sharing their base layer."""
    path = tmp_path_factory.mktemp("layout") / "layout"
    write_oci_layout(
        path,
        images=LAYOUT_IMAGES,
        layers_per_image=LAYOUT_LAYERS,
        layer_size=LAYER_SIZE,
        shared_layers=SHARED_LAYERS,
        seed=62,
    )
    return path


@dataclass(frozen=True)
class ShardedSync:
    """One sync file against one destination, and the ``layerhoist sync`` processes run on it;
    each named run keeps its report, state file and stderr under ``work``. ``prefix`` comes
    before each destination repository (``ecr:``, ``docker://HOST/``)."""

    config: Path
    kind: str
    prefix: str
    endpoint_url: str
    env: dict[str, str]
    work: Path

    def command(self, *extra: str) -> list[str]:
        """``layerhoist sync`` over the file and the destination, with ``extra``."""
        return [
            sys.executable, "-m", "layerhoist", "sync", "--config", str(self.config),
            "--endpoint-url", self.endpoint_url, "--region", TEST_REGION, "--quiet", *extra,
        ]  # fmt: skip

    def report(self, name: str) -> Path:
        """Where the run ``name`` writes its JSON report."""
        return self.work / f"{name}.json"

    def shard(self, index: int, name: str, *extra: str) -> list[str]:
        """Shard ``index`` of :data:`SHARDS` as the run ``name``, with the state file of the
        shard (the same in every run of it, as a deploy keeps it)."""
        state = self.work / f"state-{index}.sqlite"
        return self.command(
            "--shard", f"{index}/{SHARDS}", "--json", str(self.report(name)),
            "--state", str(state), *extra,
        )  # fmt: skip

    async def run(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Run ``command`` (with ``env`` added) to its end, which must be a success; its report."""
        with anyio.fail_after(GUARD_SECONDS):
            done = await anyio.run_process(command, env={**self.env, **(env or {})}, check=False)
        assert done.returncode == OK, done.stderr.decode()
        return read_report(self.report(name))

    async def plan(self, name: str) -> dict[str, Any]:
        """The unsharded ``--dry-run`` report, with a state file of its own (none yet)."""
        state = self.work / f"{name}.sqlite"
        command = self.command("--dry-run", "--json", str(self.report(name)), "--state", str(state))
        report = await self.run(name, command)
        assert not state.exists()
        return report

    @asynccontextmanager
    async def started(self, commands: Mapping[int, Sequence[str]]) -> AsyncIterator[list[Process]]:
        """Start each of ``commands`` (the shard index: the command), the stderr of each in
        ``work/first-I.stderr``; any still running when the block ends are killed."""
        async with AsyncExitStack() as stack:
            processes = []
            for index, command in commands.items():
                with (self.work / f"first-{index}.stderr").open("wb") as stderr:
                    process = await anyio.open_process(
                        command, env=self.env, stdin=DEVNULL, stdout=DEVNULL, stderr=stderr
                    )
                stack.push_async_callback(_stop, process)
                processes.append(process)
            yield processes

    def stderr(self, name: str) -> str:
        """What the run ``name``, started, wrote on stderr."""
        return (self.work / f"{name}.stderr").read_text()


async def _stop(process: Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.aclose()


def read_report(path: Path) -> dict[str, Any]:
    """A ``--json`` report."""
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def items(report: dict[str, Any]) -> set[Item]:
    """The work items of a report."""
    return {(record["mapping"], record["destination"]) for record in report["tags"]}


def actions(report: dict[str, Any]) -> dict[Item, str]:
    """Each work item of a report and its action."""
    return {(r["mapping"], r["destination"]): r["action"] for r in report["tags"]}


def assert_partition(parts: Sequence[set[Item]], whole: set[Item]) -> None:
    """``parts`` are disjoint, none empty, and together ``whole``."""
    assert all(parts)
    assert sum(len(part) for part in parts) == len(whole)
    assert set().union(*parts) == whole


def expected_holdings(plan: dict[str, Any], prefix: str) -> dict[str, dict[str, str]]:
    """What the plan's destination repositories (after ``prefix``) must hold once it has run:
    repository -> tag -> the source digest."""
    wanted: dict[str, dict[str, str]] = {repository: {} for repository in REPOSITORIES}
    for record in plan["tags"]:
        repository, _, tag = record["destination"].removeprefix(prefix).rpartition(":")
        wanted[repository][tag] = record["source_digest"]
    return wanted


async def holdings(client: Any, repositories: Sequence[str]) -> dict[str, dict[str, str]]:
    """What each of ``repositories`` holds: repository -> tag -> digest (empty when missing)."""
    found: dict[str, dict[str, str]] = {}
    for repository in repositories:
        try:
            answer = await client.list_images(repositoryName=repository)
        except client.exceptions.RepositoryNotFoundException:
            answer = {"imageIds": []}
        found[repository] = {
            image["imageTag"]: image["imageDigest"]
            for image in answer["imageIds"]
            if "imageTag" in image
        }
    return found


def landed(held: dict[str, dict[str, str]], wanted: dict[str, dict[str, str]]) -> set[str]:
    """``REPO:TAG`` of each wanted tag that holds its wanted digest."""
    return {
        f"{repository}:{tag}"
        for repository, tags in wanted.items()
        for tag, digest in tags.items()
        if held.get(repository, {}).get(tag) == digest
    }


def sync_file(path: Path, distribution: Distribution, layout: Path, prefix: str) -> Path:
    """Three mappings into the repositories :data:`REPOSITORIES` after ``prefix``."""
    source = f"{distribution.host}/{SOURCE_REPOSITORY}"
    lines = [
        "defaults:",
        f"  target: {prefix}mirror",
        "  create_repositories: true",
        "registries:",
        f"  {distribution.host}: {{tls_verify: false}}",
        "mappings:",
        f"  - from: {source}",
        f"  - from: {source}",
        f"    to: {prefix}{REPOSITORIES[1]}",
        f"    tags: {{semver: '{SEMVER}'}}",
        f"  - from: oci:{layout}",
        f"    to: {prefix}{REPOSITORIES[2]}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def sharded(
    request: pytest.FixtureRequest,
    distribution: Distribution,
    seeded: dict[str, str],
    layout: Path,
    registry: EmbeddedRegistry,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> ShardedSync:
    """The sync file over the seeded sources, into this test's embedded registry as ECR, or
    (parametrized :data:`DOCKER`) into the docker-registry itself."""
    kind = getattr(request, "param", ECR)
    prefix = "ecr:" if kind == ECR else f"docker://{distribution.host}/"
    env = {name: value for name, value in aws_env.items() if name not in INDEX_VARIABLES}
    config = sync_file(tmp_path / "sync.yaml", distribution, layout, prefix)
    return ShardedSync(config, kind, prefix, registry.endpoint_url, env, tmp_path)


@pytest.mark.parametrize("sharded", [ECR, DOCKER], indirect=True)
async def test_three_shards_at_once_partition_the_plan_and_land_it_all(
    sharded: ShardedSync,
    distribution: Distribution,
    seeded: dict[str, str],
    layout: Path,
    registry: EmbeddedRegistry,
    ecr_client: ClientFactory,
    skopeo: str,
) -> None:
    plan = await sharded.plan("plan")
    assert set(actions(plan).values()) == {"copy"}
    assert len(items(plan)) == WORK_ITEMS

    reports: dict[int, dict[str, Any]] = {}

    async def shard(index: int) -> None:
        reports[index] = await sharded.run(f"shard-{index}", sharded.shard(index, f"shard-{index}"))

    async with anyio.create_task_group() as group:
        for index in range(SHARDS):
            group.start_soon(shard, index)

    for number, report in reports.items():
        assert report["shard"] == f"{number}/{SHARDS}"
        assert set(actions(report).values()) == {"copied"}
    assert_partition([items(report) for report in reports.values()], items(plan))

    wanted = expected_holdings(plan, sharded.prefix)
    index = json.loads((layout / "index.json").read_text())
    assert wanted == {
        REPOSITORIES[0]: seeded,
        REPOSITORIES[1]: {tag: seeded[tag] for tag in SEMVER_TAGS},
        REPOSITORIES[2]: {
            m["annotations"][REF_NAME_ANNOTATION]: m["digest"] for m in index["manifests"]
        },
    }
    if sharded.kind == DOCKER:
        host = distribution.host
        assert {repository: await held(distribution, repository) for repository in wanted} == wanted
    else:
        host = registry.endpoint_url.removeprefix("http://")
        async with ecr_client(registry.endpoint_url, "ecr") as client:
            assert await holdings(client, REPOSITORIES) == wanted
    # skopeo reads one image of each repository back, checking every blob's digest.
    for repository, tags in wanted.items():
        tag = min(tags)
        read = await anyio.run_process(
            [skopeo, "copy", "--quiet", "--src-tls-verify=false",
             f"docker://{host}/{repository}:{tag}", f"oci:{sharded.work / 'read'}:{tag}"],
            check=False,
        )  # fmt: skip
        assert read.returncode == 0, read.stderr.decode()


async def test_a_killed_shard_rerun_alone_finishes_the_job(
    sharded: ShardedSync, registry: EmbeddedRegistry, ecr_client: ClientFactory
) -> None:
    plan = await sharded.plan("plan")
    wanted = expected_holdings(plan, sharded.prefix)
    # The shard with the most items is killed: its tags land one by one while it is slow.
    counts = [0] * SHARDS
    for record in plan["tags"]:
        counts[shard_index(work_key(record["origin"], record["destination"]), SHARDS)] += 1
    victim = counts.index(max(counts))
    victim_tags = {
        record["destination"].removeprefix(sharded.prefix)
        for record in plan["tags"]
        if shard_index(work_key(record["origin"], record["destination"]), SHARDS) == victim
    }
    slow = ("--concurrency", "1", "--mappings-at-once", "1")

    registry.simulator.update({"latency_ms": SLOW_LATENCY_MS})
    commands = {index: sharded.shard(index, f"first-{index}", *slow) for index in range(SHARDS)}
    async with (
        sharded.started(commands) as processes,
        ecr_client(registry.endpoint_url, "ecr") as client,
    ):
        killed = processes[victim]
        # Killed once the registry holds one of its tags.
        with anyio.fail_after(GUARD_SECONDS):
            while not landed(await holdings(client, REPOSITORIES), wanted) & victim_tags:
                assert killed.returncode is None, sharded.stderr(f"first-{victim}")
                await anyio.sleep(POLL_SECONDS)
        killed.send_signal(signal.SIGKILL)
        await killed.wait()
        registry.simulator.update({"latency_ms": 0.0})
        for index, process in enumerate(processes):
            with anyio.fail_after(GUARD_SECONDS):
                await process.wait()
            if index != victim:
                assert process.returncode == OK, sharded.stderr(f"first-{index}")
        assert killed.returncode == -signal.SIGKILL
        assert not sharded.report(f"first-{victim}").exists()
        # Every other shard is done, so this is all the killed shard had landed.
        before_rerun = landed(await holdings(client, REPOSITORIES), wanted) & victim_tags
        assert before_rerun
        assert before_rerun != victim_tags, "the shard finished before it could be killed"

        rerun = await sharded.run("rerun", sharded.shard(victim, "rerun"))
        assert await holdings(client, REPOSITORIES) == wanted

    survivors = [read_report(sharded.report(f"first-{i}")) for i in range(SHARDS) if i != victim]
    assert_partition([*map(items, survivors), items(rerun)], items(plan))
    redone = actions(rerun)
    up_to_date = {
        item[1].removeprefix(sharded.prefix) for item, act in redone.items() if act == "up-to-date"
    }
    assert up_to_date == before_rerun
    assert set(redone.values()) == {"up-to-date", "copied"}

    # Asked afresh (a new state file), the destination holds the whole plan.
    final = await sharded.plan("final")
    assert items(final) == items(plan)
    assert set(actions(final).values()) == {"up-to-date"}


@pytest.mark.usefixtures("aws_credentials")
async def test_shards_from_an_array_jobs_environment_take_what_shard_takes(
    sharded: ShardedSync,
) -> None:
    # No state file: every shard plans its whole part.
    state = sharded.work / "none.sqlite"
    reports: dict[tuple[str, int], dict[str, Any]] = {}
    limiter = anyio.CapacityLimiter(SHARDS)

    async def shards_from(variable: str, index: int) -> None:
        name = f"{variable}-{index}"
        command = sharded.command(
            "--shards", str(SHARDS), "--dry-run", "--json", str(sharded.report(name)),
            "--state", str(state),
        )  # fmt: skip
        async with limiter:
            reports[variable, index] = await sharded.run(name, command, {variable: str(index)})

    async with anyio.create_task_group() as group:
        for variable in INDEX_VARIABLES:
            for index in range(SHARDS):
                group.start_soon(shards_from, variable, index)

    config = load_config(sharded.config)
    settings = SyncSettings(
        destination=Destination(endpoint_url=sharded.endpoint_url, region=TEST_REGION)
    )
    for index in range(SHARDS):
        # What ``--shard I/3`` plans, in this process.
        shard = parse_shard(f"{index}/{SHARDS}")
        planned = await sync(config, settings, state=state, shard=shard, dry_run=True)
        taken = {(record.mapping, record.destination) for record in planned}
        assert taken
        for variable in INDEX_VARIABLES:
            assert items(reports[variable, index]) == taken
            assert reports[variable, index]["shard"] == f"{index}/{SHARDS}"


async def test_shards_without_an_index_in_the_environment_exit_2(sharded: ShardedSync) -> None:
    refused = await anyio.run_process(
        sharded.command("--shards", str(SHARDS), "--dry-run"), env=sharded.env, check=False
    )
    assert refused.returncode == USAGE
    error = one_line_error(refused)
    assert all(variable in error for variable in INDEX_VARIABLES), error
