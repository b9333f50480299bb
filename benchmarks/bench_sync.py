"""``layerhoist sync`` measured: a warm run against ``skopeo sync``, a cold run under ECR
Public's quotas, and three shards against one (issue 11's benchmarks).

Every registry is the embedded registry in a process of its own (``layerhoist serve``), whose
counters (``GET /_layerhoist/stats``) count every request it receives by operation, so the
requests of each run are read at both ends without a proxy. The source is one registry
seeded once by skopeo (``skopeo copy --preserve-digests`` per tag, untimed). Each sync is a
child process measured with ``os.wait4``; wall time is the parent's, start-up included. Every
run is verified afterwards, untimed: each destination tag must hold the source's digest
(skopeo reads ``docker://`` destinations, DescribeImages the ECR Public ones).

1. Warm: :func:`warm_cell`. 2. Cold under quotas: :func:`cold_cell`. 3. Shards:
   :func:`shards_cell`.

Prints the results page and, unless ``--quick`` or ``--only``, writes it to
``benchmarks/results/sync.md``::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_sync.py [--quick] [--repeats 3]
        [--only warm|cold|shards ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import yaml

from bench_faults import registry_stats
from compare_skopeo import layout_digests, skopeo_loop, skopeo_version, verify, workload_label
from compare_transports import pushed_digests
from layerhoist.bench.measure import ProcessUsage, measure_child
from layerhoist.bench.options import PROFILES
from layerhoist.bench.report import environment
from layerhoist.registry.launcher import RegistryProcess, client_env
from layerhoist.registry.simulation import QUOTA_PROFILES
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.units import GiB, KiB

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results" / "sync.md"
CELLS = ("warm", "cold", "shards")
DEFAULT_REPEATS = 3
#: Issue 11's goals for a warm run of 50 unchanged tags: seconds and requests in all.
WARM_SECONDS_GOAL = 2.0
WARM_REQUESTS_GOAL = 60
WARM_GOAL_TAGS = 50
#: The networks the warm cell runs on (the bench's profiles).
WARM_NETWORKS = ("lan", "wan")
#: Issue 11's goal for the cold run: each held operation at this share of its quota.
QUOTA_HELD_GOAL = 0.9
HELD_OPERATIONS = ("PutImage", "CompleteLayerUpload")
QUOTA_PROFILE = "ecr-public"
THROTTLED = "ThrottlingException"
SHARDS = 3
#: How often the cold run's destination counters are read.
POLL_SECONDS = 0.25
#: skopeo copies at once while seeding the source (untimed).
SEED_AT_ONCE = 4
#: ECR Public's API answers in this region only; the embedded registry checks no signature.
REGION = "us-east-1"
LAYOUT_SEED = 1100
WARM_REPOSITORY = "upstream/warm"
SHARDS_REPOSITORY = "upstream/small"


@dataclass(frozen=True)
class Workload:
    """A synthetic set of images."""

    images: int
    layers: int
    layer_size: int

    @property
    def label(self) -> str:
        """``200 images x 5 layers x 256 KiB``."""
        return workload_label(self.images, self.layers, self.layer_size)

    def write(self, path: Path, seed: int) -> dict[str, str]:
        """Write it as an OCI layout at ``path``; its tags and their digests."""
        write_oci_layout(
            path,
            images=self.images,
            layers_per_image=self.layers,
            layer_size=self.layer_size,
            seed=seed,
        )
        return layout_digests(path)


@dataclass(frozen=True)
class Workloads:
    """The three cells' workloads."""

    warm: Workload
    cold: Workload
    shards: Workload


FULL = Workloads(
    warm=Workload(images=50, layers=2, layer_size=64 * KiB),
    cold=Workload(images=200, layers=5, layer_size=256 * KiB),
    shards=Workload(images=60, layers=3, layer_size=256 * KiB),
)
QUICK = Workloads(
    warm=Workload(images=10, layers=2, layer_size=64 * KiB),
    cold=Workload(images=20, layers=5, layer_size=256 * KiB),
    shards=Workload(images=12, layers=3, layer_size=256 * KiB),
)


def host_of(registry: RegistryProcess) -> str:
    """``127.0.0.1:PORT`` of a running registry."""
    return urlsplit(registry.endpoint_url).netloc


def requests_of(stats: Mapping[str, Any]) -> Counter[str]:
    """Requests per operation in a registry's counters."""
    return Counter({name: int(count) for name, count in stats["requests"].items()})


def sync_command(config: Path, state: Path, report: Path, *extra: str) -> list[str]:
    """``layerhoist sync`` of ``config`` with its own state file and JSON report."""
    return [
        *(sys.executable, "-m", "layerhoist", "sync", "--config", str(config)),
        *("--state", str(state), "--json", str(report), *extra),
    ]


def write_config(path: Path, document: Mapping[str, Any]) -> Path:
    """A sync file at ``path``."""
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False))
    return path


def report_totals(path: Path) -> dict[str, Any]:
    """The totals of a sync's JSON report."""
    totals: dict[str, Any] = json.loads(path.read_text())["totals"]
    return totals


def report_tags(path: Path) -> list[str]:
    """The tags a sync's JSON report names, one per work item."""
    return [entry["tag"] for entry in json.loads(path.read_text())["tags"]]


async def seed(skopeo: str, layout: Path, tags: Sequence[str], target: str) -> None:
    """Copy every tag of ``layout`` to ``target`` (``HOST/REPO``) with skopeo, a few at once."""
    limiter = anyio.CapacityLimiter(SEED_AT_ONCE)

    async def copy(command: list[str]) -> None:
        async with limiter:
            await anyio.run_process(command, check=True)

    async with anyio.create_task_group() as group:
        for command in skopeo_loop(skopeo, layout, tags, target):
            group.start_soon(copy, command)


async def child(command: Sequence[str]) -> ProcessUsage:
    """Run ``command`` as a measured child (its stderr shown only if it fails)."""
    _, usage = await measure_child(command, env=client_env(), stderr_on_failure=True)
    return usage


# --- 1. warm ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarmRun:
    """One warm run of one tool: its cost and the requests each registry received."""

    wall_seconds: float
    cpu_seconds: float
    source: Counter[str]
    destination: Counter[str]
    error: str | None = None

    @property
    def requests(self) -> int:
        """Requests at both registries."""
        return sum(self.source.values()) + sum(self.destination.values())


@dataclass
class WarmCell:
    """One tool's warm runs."""

    tool: str
    runs: list[WarmRun] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        """Why runs failed."""
        return [run.error for run in self.runs if run.error is not None]

    def median(self, figure: str) -> float:
        """The median of a figure over the runs."""
        return statistics.median(float(getattr(run, figure)) for run in self.runs)


async def warm_run(
    command: Sequence[str], source: RegistryProcess, destination: RegistryProcess
) -> WarmRun:
    """Run ``command`` once, with the requests it cost at each registry."""
    source_before = requests_of(await registry_stats(source.endpoint_url))
    destination_before = requests_of(await registry_stats(destination.endpoint_url))
    usage = await child(command)
    return WarmRun(
        wall_seconds=usage.wall_seconds,
        cpu_seconds=usage.cpu_seconds,
        source=requests_of(await registry_stats(source.endpoint_url)) - source_before,
        destination=(
            requests_of(await registry_stats(destination.endpoint_url)) - destination_before
        ),
        error=None if usage.exit_code == 0 else f"exit {usage.exit_code}",
    )


async def warm_cell(
    source: RegistryProcess,
    work: Path,
    expected: dict[str, str],
    *,
    skopeo: str,
    repeats: int,
    network: str,
) -> list[WarmCell]:
    """(1) A warm sync of unchanged tags, layerhoist against ``skopeo sync``.

    ``network`` is the bench's profile the destination registries simulate (``source`` was
    started with the same): on ``lan`` start-up dominates, on ``wan`` each request's round
    trip does, as it does between a job and Docker Hub or ECR.

    Both tools copy the source repository (``Workloads.warm``) into a destination registry
    of their own once, untimed; then each runs again ``repeats`` times, taking turns going
    first, and each of those runs is measured: wall seconds and the requests both registries
    received. layerhoist keeps its state file between runs (its warm runs must report every
    tag up to date, nothing copied); skopeo has no state and checks the destination again.
    Goal (issue 11): layerhoist under 2 s and at most 60 requests in all for 50 tags.
    """
    ours, theirs = WarmCell("layerhoist sync"), WarmCell("skopeo sync")
    args = PROFILES[network].registry_args(quotas=None)
    async with (
        RegistryProcess(data_dir=work / f"warm-layerhoist-{network}", args=args) as our_destination,
        RegistryProcess(data_dir=work / f"warm-skopeo-{network}", args=args) as their_destination,
    ):
        origin, target = host_of(source), host_of(our_destination)
        config = write_config(
            work / f"warm-{network}.yaml",
            {
                "registries": {origin: {"tls_verify": False}, target: {"tls_verify": False}},
                "mappings": [
                    {"from": f"{origin}/{WARM_REPOSITORY}", "to": f"docker://{target}/mirror/warm"}
                ],
            },
        )
        report = work / f"warm-report-{network}.json"
        ours_command = sync_command(config, work / f"warm-state-{network}.sqlite", report)
        theirs_command = [
            *(skopeo, "sync", "--src", "docker", "--dest", "docker", "--preserve-digests"),
            *("--src-tls-verify=false", "--dest-tls-verify=false"),
            *(f"{origin}/{WARM_REPOSITORY}", f"{host_of(their_destination)}/mirror"),
        ]
        for command in (ours_command, theirs_command):
            usage = await child(command)
            if usage.exit_code != 0:
                raise RuntimeError(f"the first, cold run of {command[:4]} failed")
        for repeat in range(repeats):
            order = [(ours, ours_command, our_destination)]
            order.append((theirs, theirs_command, their_destination))
            for cell, command, destination in order if repeat % 2 == 0 else order[::-1]:
                run = await warm_run(command, source, destination)
                if cell is ours and run.error is None:
                    totals = report_totals(report)
                    if totals["copied"] or totals["up_to_date"] != len(expected):
                        run = dataclasses.replace(run, error=f"not warm: {totals}")
                cell.runs.append(run)
                print(
                    f"warm ({network}) {cell.tool} #{repeat + 1}: {run.wall_seconds:.2f} s, "
                    f"{run.requests} requests" + (f" FAILED: {run.error}" if run.error else ""),
                    file=sys.stderr,
                )
        for cell, destination, repository in (
            (ours, our_destination, "mirror/warm"),
            (theirs, their_destination, "mirror/warm"),
        ):
            problem = await verify(skopeo, host_of(destination), repository, expected)
            if problem is not None:
                cell.runs.append(WarmRun(0.0, 0.0, Counter(), Counter(), f"verify: {problem}"))
    return [ours, theirs]


def by_operation(requests: Counter[str]) -> str:
    """``HEAD manifest 50, ListImages 1``: requests per operation, most first."""
    return ", ".join(f"{name} {count}" for name, count in requests.most_common())


def warm_lines(cells: Sequence[WarmCell], tags: int) -> list[str]:
    """The warm cell's table and where each tool's requests went."""
    lines = [
        "| tool | wall s | client CPU s | requests at the source | at the destination "
        "| in all | goal (< 2 s, <= 60 requests for 50 tags) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    detail = []
    for cell in cells:
        if cell.failed:
            lines.append(f"| {cell.tool} | FAILED: {'; '.join(cell.failed)} | | | | | |")
            continue
        middle = cell.runs[len(cell.runs) // 2]
        goal = ""
        if cell.tool.startswith("layerhoist") and tags != WARM_GOAL_TAGS:
            goal = f"not judged: {tags} tags"
        elif cell.tool.startswith("layerhoist"):
            met = (
                cell.median("wall_seconds") < WARM_SECONDS_GOAL
                and cell.median("requests") <= WARM_REQUESTS_GOAL
            )
            goal = "met" if met else "MISSED"
        lines.append(
            f"| {cell.tool} | {cell.median('wall_seconds'):.2f} | {cell.median('cpu_seconds'):.2f} "
            f"| {sum(middle.source.values())} | {sum(middle.destination.values())} "
            f"| {cell.median('requests'):.0f} | {goal} |"
        )
        detail.append(
            f"- {cell.tool}, {tags} tags: source: {by_operation(middle.source) or 'none'}; "
            f"destination: {by_operation(middle.destination) or 'none'}."
        )
    return [*lines, "", *detail]


# --- 2. cold under quotas -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """The destination's counters at one moment of the run."""

    at: float
    requests: Counter[str]
    errors: Counter[str]


@dataclass(frozen=True)
class Held:
    """How close to its quota one operation was held while it was in use."""

    operation: str
    count: int
    quota: float
    #: From the last reading before its first request to the first reading after its last.
    active_seconds: float

    @property
    def rate(self) -> float:
        """Requests per second over its active time."""
        return self.count / self.active_seconds if self.active_seconds > 0 else 0.0

    @property
    def share(self) -> float:
        """Its rate as a share of its quota."""
        return self.rate / self.quota

    @property
    def met(self) -> bool:
        """Held at :data:`QUOTA_HELD_GOAL` of its quota or more."""
        return self.share >= QUOTA_HELD_GOAL


@dataclass(frozen=True)
class ColdResult:
    """The cold run: its cost, the destination's readings, and what went wrong."""

    usage: ProcessUsage
    samples: list[Sample]
    error: str | None

    @property
    def throttled(self) -> int:
        """ThrottlingException answers the destination gave during the run."""
        return self.samples[-1].errors[THROTTLED] - self.samples[0].errors[THROTTLED]

    def requests(self) -> Counter[str]:
        """Requests per operation during the run."""
        return self.samples[-1].requests - self.samples[0].requests

    def held(self, quotas: Mapping[str, float]) -> list[Held]:
        """Every quota-bound operation the run used, and how close to its quota it was held."""
        counts = self.requests()
        return [
            Held(name, counts[name], quota, self._active_seconds(name))
            for name, quota in sorted(quotas.items())
            if counts[name]
        ]

    def floor_seconds(self, quotas: Mapping[str, float]) -> float:
        """The least time the quotas allow for the run's requests: its most constrained
        operation's requests at its quota."""
        counts = self.requests()
        return max(counts[name] / quota for name, quota in quotas.items())

    def quota_bound_seconds(self, quotas: Mapping[str, float]) -> float:
        """From the first to the last request of any quota-bound operation."""
        return max(self._active_seconds(name) for name in quotas if self.requests()[name])

    def _active_seconds(self, operation: str) -> float:
        first = self.samples[0].requests[operation]
        last = self.samples[-1].requests[operation]
        began = max(s.at for s in self.samples if s.requests[operation] == first)
        ended = min(s.at for s in self.samples if s.requests[operation] == last)
        return ended - began


async def sample(endpoint: str) -> Sample:
    """The destination's counters now."""
    stats = await registry_stats(endpoint)
    errors = Counter({name: int(count) for name, count in stats["errors"].items()})
    return Sample(time.monotonic(), requests_of(stats), errors)


async def cold_cell(work: Path, layout: Path, expected: dict[str, str]) -> ColdResult:
    """(2) A cold sync of many small images into ECR Public's quotas.

    The source is the OCI layout (``Workloads.cold``), so that the destination alone bounds
    the run; the destination is the embedded registry enforcing ECR Public's published
    request quotas (``--quotas ecr-public``: CompleteLayerUpload, InitiateLayerUpload and
    PutImage at 10/s), and the sync paces to them (``--pacing published``). The
    destination's counters are read every :data:`POLL_SECONDS` during the run.
    Goal (issue 11): no ThrottlingException, and PutImage and CompleteLayerUpload held at
    90 % or more of their quotas, each over the time it is in use (from its first request
    to its last). Each image has six blobs (five layers and its config) for one PutImage,
    both at 10/s: when images are put as they complete, PutImage is in use all through the
    run at a sixth of its quota at most, so its figure says how images are scheduled more
    than how well requests are paced. The page also gives the least time the quotas allow
    for the whole run against the time its quota-bound requests took.
    """
    async with RegistryProcess(
        data_dir=work / "cold-destination", args=["--quotas", QUOTA_PROFILE]
    ) as destination:
        endpoint = destination.endpoint_url
        config = write_config(
            work / "cold.yaml",
            {
                "defaults": {"endpoint_url": endpoint, "region": REGION},
                "mappings": [
                    {
                        "from": f"oci:{layout}",
                        "to": "ecr-public:cold/app",
                        "create_repositories": True,
                    }
                ],
            },
        )
        command = sync_command(
            config, work / "cold-state.sqlite", work / "cold-report.json", "--pacing", "published"
        )
        samples = [await sample(endpoint)]
        async with anyio.create_task_group() as group:

            async def poll() -> None:
                while True:
                    await anyio.sleep(POLL_SECONDS)
                    samples.append(await sample(endpoint))

            group.start_soon(poll)
            usage = await child(command)
            group.cancel_scope.cancel()
        samples.append(await sample(endpoint))
        error = None if usage.exit_code == 0 else f"exit {usage.exit_code}"
        if error is None:
            found = await pushed_digests(endpoint, "cold/app")
            if found != expected:
                error = f"verify: {len(set(expected) - set(found))} tags missing or wrong"
    print(
        f"cold: {usage.wall_seconds:.1f} s" + (f" FAILED: {error}" if error else ""),
        file=sys.stderr,
    )
    return ColdResult(usage, samples, error)


def cold_lines(result: ColdResult, workload: Workload) -> list[str]:
    """The cold cell's summary and its table: one row per quota-bound operation."""
    if result.error is not None:
        return [f"FAILED: {result.error}"]
    quotas = QUOTA_PROFILES[QUOTA_PROFILE]
    throttle = "met" if result.throttled == 0 else "MISSED"
    floor, spent = result.floor_seconds(quotas), result.quota_bound_seconds(quotas)
    lines = [
        f"{workload.label}: {result.usage.wall_seconds:.1f} s, client CPU "
        f"{result.usage.cpu_seconds:.1f} s, {result.throttled} ThrottlingException "
        f"(goal 0: {throttle}). The quotas allow its requests in {floor:.1f} s at least; "
        f"they took {spent:.1f} s ({100 * floor / spent:.0f} % of the quota-bound pace).",
        "",
        "| operation | requests | quota /s | active s | rate /s | % of quota | goal (>= 90 %) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for entry in result.held(quotas):
        goal = ("met" if entry.met else "MISSED") if entry.operation in HELD_OPERATIONS else ""
        lines.append(
            f"| {entry.operation} | {entry.count} | {entry.quota:g} | {entry.active_seconds:.1f} "
            f"| {entry.rate:.2f} | {100 * entry.share:.0f} % | {goal} |"
        )
    return lines


# --- 3. shards ----------------------------------------------------------------------------------


@dataclass
class ShardsCell:
    """Wall times of one process against three shards at once, on the same work."""

    one: list[float] = field(default_factory=list)
    three: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def shards_cell(
    source: RegistryProcess, work: Path, expected: dict[str, str], *, repeats: int
) -> ShardsCell:
    """(3) Three shards at once against one process, wall time on the same work.

    The source repository (``Workloads.shards``) is synced into a fresh ECR Public repository
    of the embedded registry simulating the bench's ``wan`` network without quotas (40 ms per
    request, 25 MB/s per connection), once by one process and once by three processes
    started together, ``--shard 0/3``, ``1/3`` and ``2/3``, each with its own state file;
    their wall time runs from the start until the last one ends. The two take turns going
    first. Checked: the shards' reports are disjoint and together name every tag, and both
    destinations hold every tag with its digest. On one machine the shards share its cores,
    so this measures what sharding costs and gains there, not across machines.
    """
    cell = ShardsCell()
    args = PROFILES["wan"].registry_args(quotas=None)
    async with RegistryProcess(data_dir=work / "shards-destination", args=args) as destination:
        endpoint = destination.endpoint_url

        def config(name: str) -> Path:
            return write_config(
                work / f"{name}.yaml",
                {
                    "defaults": {"endpoint_url": endpoint, "region": REGION},
                    "registries": {host_of(source): {"tls_verify": False}},
                    "mappings": [
                        {
                            "from": f"{host_of(source)}/{SHARDS_REPOSITORY}",
                            "to": f"ecr-public:shards/{name}",
                            "create_repositories": True,
                        }
                    ],
                },
            )

        async def one(repeat: int) -> None:
            name = f"one-{repeat}"
            usage = await child(
                sync_command(config(name), work / f"{name}.sqlite", work / f"{name}.json")
            )
            if usage.exit_code != 0:
                cell.errors.append(f"{name}: exit {usage.exit_code}")
            cell.one.append(usage.wall_seconds)
            await check(name)

        async def three(repeat: int) -> None:
            name = f"three-{repeat}"
            path = config(name)
            reports = [work / f"{name}-{index}.json" for index in range(SHARDS)]
            codes: list[int] = []

            async def shard(index: int) -> None:
                state = work / f"{name}-{index}.sqlite"
                usage = await child(
                    sync_command(path, state, reports[index], "--shard", f"{index}/{SHARDS}")
                )
                codes.append(usage.exit_code)

            began = time.monotonic()
            async with anyio.create_task_group() as group:
                for index in range(SHARDS):
                    group.start_soon(shard, index)
            cell.three.append(time.monotonic() - began)
            if any(codes):
                cell.errors.append(f"{name}: exit codes {codes}")
                return
            named = [tag for report in reports for tag in report_tags(report)]
            if sorted(named) != sorted(expected):
                cell.errors.append(f"{name}: the shards' reports do not partition the tags")
            await check(name)

        async def check(name: str) -> None:
            found = await pushed_digests(endpoint, f"shards/{name}")
            if found != expected:
                cell.errors.append(f"{name}: verify: tags missing or with another digest")

        for repeat in range(repeats):
            runs = [one, three] if repeat % 2 == 0 else [three, one]
            for run in runs:
                await run(repeat)
            print(
                f"shards #{repeat + 1}: one {cell.one[-1]:.2f} s, three {cell.three[-1]:.2f} s",
                file=sys.stderr,
            )
    return cell


def shards_lines(cell: ShardsCell, workload: Workload) -> list[str]:
    """The shards cell's table."""
    if cell.errors:
        return [f"FAILED: {'; '.join(cell.errors)}"]
    one, three = statistics.median(cell.one), statistics.median(cell.three)
    return [
        "| work | one process s | three shards at once s | one / three |",
        "|---|---:|---:|---:|",
        f"| {workload.label} | {one:.2f} | {three:.2f} | {one / three:.2f}x |",
    ]


# --- the page -----------------------------------------------------------------------------------


@dataclass
class Results:
    """What the cells measured (``None``: the cell did not run)."""

    #: The warm cell's runs per network profile.
    warm: dict[str, list[WarmCell]] | None = None
    cold: ColdResult | None = None
    shards: ShardsCell | None = None

    @property
    def ok(self) -> bool:
        """Every cell that ran succeeded and verified."""
        return (
            not any(cell.failed for cells in (self.warm or {}).values() for cell in cells)
            and (self.cold is None or self.cold.error is None)
            and (self.shards is None or not self.shards.errors)
        )


def page(
    results: Results,
    workloads: Workloads,
    *,
    skopeo: str,
    repeats: int,
    command: str,
    elapsed: float,
) -> str:
    """The results page: what ran, on what machine, and each cell's table."""
    env = environment()
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    lines = [
        "# layerhoist sync: warm, cold under quotas, sharded",
        "",
        f"Made by `{command}` on {datetime.now(UTC):%Y-%m-%d} in {elapsed:.0f} s.",
        "",
        f"- Machine: {env['cpu_model']}, {env['cpu_count']} cores, "
        f"{(env['memory_bytes'] or 0) / GiB:.0f} GiB RAM, {env['platform']}; load average "
        f"at the end {env['load_average']}",
        f"- Software: {versions}, {skopeo_version(skopeo)}",
        "- Registries: the embedded registry on loopback, one process each, plain HTTP; "
        "requests counted by the registries themselves. Wall time: the whole client, start-up "
        "included. Every run verified (each destination tag holds the source's digest).",
        "",
    ]
    if results.warm is not None:
        lines += [
            f"## 1. Warm sync of {workloads.warm.images} unchanged tags",
            "",
            f"Median of {repeats} warm run(s) per tool, each after one untimed cold run into "
            "its own destination registry; layerhoist keeps its state file. `lan`: the "
            "registries as they are on loopback; `wan`: every registry adds "
            f"{PROFILES['wan'].latency_ms:g} ms to each request, as a remote one would.",
            "",
        ]
        for network, cells in results.warm.items():
            lines += [f"### {network}", "", *warm_lines(cells, workloads.warm.images), ""]
    if results.cold is not None:
        lines += [
            "## 2. Cold sync under ECR Public's quotas",
            "",
            "From an OCI layout into the embedded registry with `--quotas ecr-public`, "
            "`--pacing published`. Each operation's rate is over the time it was in use, from "
            "its first request to its last, read from the registry's counters every "
            f"{POLL_SECONDS:g} s.",
            "",
            *cold_lines(results.cold, workloads.cold),
            "",
        ]
    if results.shards is not None:
        lines += [
            "## 3. Three shards against one",
            "",
            f"Median of {repeats} run(s) each, into the embedded registry simulating `wan` "
            "without quotas; the shards share this machine's cores.",
            "",
            *shards_lines(results.shards, workloads.shards),
            "",
        ]
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> int:
    """Seed the source, run the chosen cells, print (and save) the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads, one run each")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--only", action="append", choices=CELLS, help="run this cell (repeatable)")
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(arguments)
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        print("bench_sync: needs skopeo on PATH", file=sys.stderr)
        return 1
    repeats = 1 if args.quick else args.repeats
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    workloads = QUICK if args.quick else FULL
    chosen = set(args.only or CELLS)
    command = " ".join(["PYTHONPATH=src .venv/bin/python benchmarks/bench_sync.py", *arguments])
    began = time.monotonic()
    results = Results()
    with tempfile.TemporaryDirectory(prefix="layerhoist-bench-sync-") as tmp:
        work = Path(tmp)
        warm_expected = workloads.warm.write(work / "warm-layout", LAYOUT_SEED)
        shards_expected = workloads.shards.write(work / "shards-layout", LAYOUT_SEED + 1)
        cold_expected = workloads.cold.write(work / "cold-layout", LAYOUT_SEED + 2)
        if "warm" in chosen:
            results.warm = {}
            for network in WARM_NETWORKS:
                async with RegistryProcess(
                    data_dir=work / f"warm-source-{network}",
                    args=PROFILES[network].registry_args(quotas=None),
                ) as warm_source:
                    print(f"seeding the {network} source with skopeo (untimed)", file=sys.stderr)
                    await seed(
                        skopeo,
                        work / "warm-layout",
                        list(warm_expected),
                        f"{host_of(warm_source)}/{WARM_REPOSITORY}",
                    )
                    results.warm[network] = await warm_cell(
                        warm_source,
                        work,
                        warm_expected,
                        skopeo=skopeo,
                        repeats=repeats,
                        network=network,
                    )
        async with RegistryProcess(data_dir=work / "source") as source:
            print("seeding the source with skopeo (untimed)", file=sys.stderr)
            target = host_of(source)
            if "cold" in chosen:
                results.cold = await cold_cell(work, work / "cold-layout", cold_expected)
            if "shards" in chosen:
                await seed(
                    skopeo,
                    work / "shards-layout",
                    list(shards_expected),
                    f"{target}/{SHARDS_REPOSITORY}",
                )
                results.shards = await shards_cell(source, work, shards_expected, repeats=repeats)
    text = page(
        results,
        workloads,
        skopeo=skopeo,
        repeats=repeats,
        command=command,
        elapsed=time.monotonic() - began,
    )
    print(text)
    if not args.quick and chosen == set(CELLS):
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(text)
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main))
