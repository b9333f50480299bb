"""ECR's two transports side by side: ``--transport api`` against ``--transport oci``.

Issue 10's benchmark 3. One embedded registry process per network profile, in its ECR Public
flavour with token auth on ``/v2/`` (``--flavor ecr-public --oci-auth token``): ``lan`` with no
simulation, ``wan`` with the bench's ``wan`` profile (``layerhoist.bench.options.PROFILES``:
40 ms per request, 25 MB/s per connection, ECR Public's request quotas). Synthetic layouts are
written before any timing. Each cell runs ``layerhoist push oci:LAYOUT ecr-public:REPO
--endpoint-url URL --create-repo --quiet --transport api|oci`` as a child process into a fresh
repository, ``--repeats`` times (the transports take turns going first), and reports the median:
wall time (start-up included), MB/s (blob bytes over wall time), client CPU seconds and peak RSS
(``os.wait4``). Every push is verified afterwards, not timed: DescribeImages through the JSON
API must give every tag of the layout its digest, or the run counts as failed.

Client CPU per GiB is measured as ``bench_push.py`` measures it: each push is followed by the
same command again, which finds everything present, and the pair's difference (the start-up
paid once per process taken out) is the cost of the bytes; the median pair is reported, as a
multiple of one in-memory sha256 pass over the same bytes measured in this run. The goal for
``--transport oci`` is at most 2.5x. Where it is missed, the parts of that cost are measured in
the same run, in this process, and what is left is printed: the sha256 pass, an xxh3 pass,
reading the layout, and sending the bytes through loopback TCP from a plain blocking socket.

Beside layerhoist, in the same registry and the same run, the floor of any client built on
aiohttp (``floor_aiohttp.py``): every blob of the layout as a POST and one streamed PUT,
read, sha256- and xxh3-hashed and handed to aiohttp in one pass, with no pipeline, retries or
pacing; its CPU seconds per GiB of the pushing alone (start-up and its one token left out),
the median of ``--repeats`` runs, as a multiple of the same sha256 pass. It runs twice per
cell: with chunked bodies, as layerhoist sends them, and with ``Content-Length`` framing.

Prints the results page and, unless ``--quick``, writes it to
``benchmarks/results/transports.md``::

    PYTHONPATH=src .venv/bin/python benchmarks/compare_transports.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aioboto3
import anyio
import xxhash

from bench_push import (
    CPU_REPEATS,
    Shape,
    hash_cpu_seconds,
    layout_bytes,
    loopback_send_cpu_seconds,
    sha256_cpu_seconds,
)
from layerhoist.allocator import tune_malloc
from layerhoist.bench.measure import measure_child
from layerhoist.bench.options import PROFILES
from layerhoist.bench.report import environment
from layerhoist.bench.targets import push_command
from layerhoist.destinations.ecr.limits import PREFERRED_MAX_PART_SIZE
from layerhoist.registry.launcher import RegistryProcess, client_env
from layerhoist.testing.synthetic import REF_NAME_ANNOTATION, write_oci_layout
from layerhoist.units import MB, GiB, MiB

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results" / "transports.md"
DEFAULT_REPEATS = 3
#: Issue 10's goal: ``--transport oci``'s client CPU per GiB, as a multiple of one sha256 pass.
OCI_CPU_GOAL = 2.5
TRANSPORTS = ("api", "oci")
NETWORK_PROFILES = ("lan", "wan")
#: The account the aiohttp floor fetches its token with (layerhoist uses GetAuthorizationToken).
FLOOR_USER = "floor:floor-secret"
#: The embedded registry as ECR Public: its quirks on ``/v2/``, and the token exchange there.
ECR_PUBLIC_ARGS = ("--flavor", "ecr-public", "--oci-auth", "token", "--oci-users", FLOOR_USER)
FLOOR_SCRIPT = BENCHMARKS / "floor_aiohttp.py"
#: The floor's two framings of a streamed body: layerhoist's, and the one without chunk heads.
FLOOR_FRAMINGS: dict[str, tuple[str, ...]] = {
    "chunked": (),
    "Content-Length": ("--content-length",),
}
SERVICE = "ecr-public"
#: ECR Public's API lives in this region only.
REGION = "us-east-1"
#: The embedded registry speaks plain HTTP; ``/v2/`` clients must be told so.
OCI_EXTRA = ("--dest-tls-verify=false",)
#: Images a DescribeImages answer can hold: more than any workload here has.
DESCRIBE_MAX_RESULTS = 1000
VERIFY_TIMEOUT = 60.0
#: The default workloads: 256 MiB each, small layers and large ones.
WORKLOADS: dict[str, Shape] = {
    "8 images x 4 layers x 8 MiB": {"images": 8, "layers_per_image": 4, "layer_size": 8 * MiB},
    "1 image x 4 layers x 64 MiB": {"images": 1, "layers_per_image": 4, "layer_size": 64 * MiB},
}
#: ``--quick``: one small workload, one run per cell, to see that everything works.
QUICK_WORKLOADS: dict[str, Shape] = {
    "2 images x 2 layers x 4 MiB": {"images": 2, "layers_per_image": 2, "layer_size": 4 * MiB},
}
LAYOUT_SEED = 310
#: Bytes per read when timing the read of the layout: the pipeline's part size.
READ_SLICE = PREFERRED_MAX_PART_SIZE


@dataclass(frozen=True)
class Run:
    """One client process: what it cost, and whether what it pushed reads back."""

    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    exit_code: int
    error: str | None = None


@dataclass
class Cell:
    """One profile, workload and transport: its pushes and the idle run after each."""

    profile: str
    workload: str
    transport: str
    nbytes: int
    pushes: list[Run] = field(default_factory=list)
    idles: list[Run] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        """Why runs failed, one line each."""
        return [run.error or f"exit {run.exit_code}" for run in self.pushes if not _ok(run)]

    def median(self, name: str) -> float:
        """The median of a figure over the pushes."""
        return statistics.median(float(getattr(run, name)) for run in self.pushes)

    @property
    def mb_per_second(self) -> float:
        """Blob bytes over the median wall time."""
        return self.nbytes / self.median("wall_seconds") / MB

    @property
    def cpu_per_gib(self) -> float:
        """Client CPU seconds per GiB with start-up taken out: the median push/idle pair."""
        pairs = zip(self.pushes, self.idles, strict=True)
        spent = [push.cpu_seconds - idle.cpu_seconds for push, idle in pairs]
        return statistics.median(spent) / (self.nbytes / GiB)

    @property
    def startup_cpu(self) -> float:
        """The median idle run's CPU seconds: start-up and a push that finds nothing to do."""
        return statistics.median(run.cpu_seconds for run in self.idles)


@dataclass(frozen=True)
class Parts:
    """CPU seconds per GiB of the per-byte work, measured in this process."""

    sha256: float
    xxh3: float
    read: float
    loopback_send: float


@dataclass
class FloorCell:
    """The aiohttp floor in one profile and workload, with one framing: its pushing alone."""

    profile: str
    workload: str
    framing: str
    nbytes: int
    cpu_seconds: list[float] = field(default_factory=list)
    wall_seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def cpu_per_gib(self) -> float:
        """The median run's CPU seconds per GiB."""
        return statistics.median(self.cpu_seconds) / (self.nbytes / GiB)

    @property
    def mb_per_second(self) -> float:
        """Blob bytes over the median wall time of the pushing."""
        return self.nbytes / statistics.median(self.wall_seconds) / MB


def _ok(run: Run) -> bool:
    return run.exit_code == 0 and run.error is None


def tagged_digests(layout: Path) -> dict[str, str]:
    """Every tag of a layout and the digest of its manifest."""
    index = json.loads((layout / "index.json").read_bytes())
    return {
        entry["annotations"][REF_NAME_ANNOTATION]: entry["digest"] for entry in index["manifests"]
    }


async def pushed_digests(endpoint: str, repository: str) -> dict[str, str]:
    """Every tag of ``repository`` and its digest, read through the JSON API (DescribeImages)."""
    found: dict[str, str] = {}
    with anyio.fail_after(VERIFY_TIMEOUT):
        async with _session().client(SERVICE, endpoint_url=endpoint) as client:
            answer = await client.describe_images(
                repositoryName=repository, maxResults=DESCRIBE_MAX_RESULTS
            )
    for detail in answer["imageDetails"]:
        for tag in detail.get("imageTags", []):
            found[tag] = detail["imageDigest"]
    return found


def _session() -> aioboto3.Session:
    env = client_env()
    return aioboto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )


async def create_repository(endpoint: str, repository: str) -> None:
    """CreateRepository through the JSON API (the floor pushes into an existing one)."""
    with anyio.fail_after(VERIFY_TIMEOUT):
        async with _session().client(SERVICE, endpoint_url=endpoint) as client:
            await client.create_repository(repositoryName=repository)


async def floor_once(
    layout: Path, endpoint: str, repository: str, framing: str
) -> dict[str, float]:
    """``floor_aiohttp.py`` into a fresh repository: what its pushing cost (its own JSON)."""
    await create_repository(endpoint, repository)
    command = [
        sys.executable,
        str(FLOOR_SCRIPT),
        "--endpoint",
        endpoint,
        "--repository",
        repository,
        "--layout",
        str(layout),
        "--user",
        FLOOR_USER,
        *FLOOR_FRAMINGS[framing],
    ]
    stdout, usage = await measure_child(command, env=client_env(), stderr_on_failure=True)
    if usage.exit_code != 0:
        raise RuntimeError(f"exit {usage.exit_code}")
    figures: dict[str, float] = json.loads(stdout)
    return figures


async def push_once(layout: Path, endpoint: str, repository: str, transport: str) -> Run:
    """``layerhoist push`` of the whole layout in a child process."""
    extra = ("--transport", transport, *(OCI_EXTRA if transport == "oci" else ()))
    command = push_command(layout, endpoint, repository, *extra)
    # Its stderr is shown (on this script's stderr) only if it fails.
    _, usage = await measure_child(command, env=client_env(), stderr_on_failure=True)
    error = None if usage.exit_code == 0 else f"exit {usage.exit_code}"
    return Run(usage.wall_seconds, usage.cpu_seconds, usage.peak_rss_bytes, usage.exit_code, error)


async def verified(run: Run, layout: Path, endpoint: str, repository: str) -> Run:
    """``run``, marked failed unless every tag of the layout reads back with its digest."""
    if not _ok(run):
        return run
    expected = tagged_digests(layout)
    try:
        found = await pushed_digests(endpoint, repository)
    except Exception as exc:  # any failure to read back fails the run, and says why
        return Run(run.wall_seconds, run.cpu_seconds, run.peak_rss_bytes, 0, f"verify: {exc}")
    if found != expected:
        wrong = sorted(tag for tag in expected if found.get(tag) != expected[tag])
        error = f"verify: tags {wrong} missing or with another digest"
        return Run(run.wall_seconds, run.cpu_seconds, run.peak_rss_bytes, 0, error)
    return run


async def bench_profile(
    profile: str, layouts: dict[str, Path], work: Path, repeats: int
) -> tuple[list[Cell], list[FloorCell]]:
    """Every workload, transport and floor against one registry process simulating
    ``profile``."""
    args = [*ECR_PUBLIC_ARGS, *(PROFILES[profile].registry_args() if profile != "lan" else [])]
    cells: list[Cell] = []
    floors: list[FloorCell] = []
    async with RegistryProcess(data_dir=work / f"registry-{profile}", args=args) as registry:
        endpoint = registry.endpoint_url
        for number, (workload, layout) in enumerate(layouts.items()):
            nbytes = layout_bytes(layout)
            by_transport = {
                transport: Cell(profile, workload, transport, nbytes) for transport in TRANSPORTS
            }
            by_framing = {
                framing: FloorCell(profile, workload, framing, nbytes) for framing in FLOOR_FRAMINGS
            }
            for attempt in range(repeats):
                order = TRANSPORTS if attempt % 2 == 0 else TRANSPORTS[::-1]
                for transport in order:
                    repository = f"bench/{profile}-w{number}-{transport}-{attempt}"
                    push = await push_once(layout, endpoint, repository, transport)
                    # The same push again finds every blob present: what start-up costs.
                    idle = await push_once(layout, endpoint, repository, transport)
                    cell = by_transport[transport]
                    cell.pushes.append(await verified(push, layout, endpoint, repository))
                    cell.idles.append(idle)
                    print(
                        f"{profile} {workload} {transport} #{attempt + 1}: "
                        f"{push.wall_seconds:.2f} s, CPU {push.cpu_seconds:.2f} s "
                        f"(idle {idle.cpu_seconds:.2f} s)"
                        + (f" FAILED: {cell.pushes[-1].error}" if not _ok(cell.pushes[-1]) else ""),
                        file=sys.stderr,
                    )
                for index, (framing, floor) in enumerate(by_framing.items()):
                    repository = f"bench/{profile}-w{number}-floor{index}-{attempt}"
                    try:
                        figures = await floor_once(layout, endpoint, repository, framing)
                    except Exception as exc:  # a failed floor run is reported, not fatal
                        floor.errors.append(str(exc))
                        print(
                            f"{profile} {workload} floor ({framing}) FAILED: {exc}", file=sys.stderr
                        )
                        continue
                    floor.cpu_seconds.append(figures["cpu_seconds"])
                    floor.wall_seconds.append(figures["wall_seconds"])
                    print(
                        f"{profile} {workload} floor ({framing}) #{attempt + 1}: "
                        f"{figures['wall_seconds']:.2f} s, CPU {figures['cpu_seconds']:.2f} s",
                        file=sys.stderr,
                    )
            cells.extend(by_transport.values())
            floors.extend(by_framing.values())
    return cells, floors


def read_cpu_seconds(layout: Path) -> float:
    """CPU-seconds of reading every blob in part-sized ``pread`` calls (from the page cache)."""
    spent = 0.0
    for blob in (layout / "blobs" / "sha256").iterdir():
        fd = os.open(blob, os.O_RDONLY)
        try:
            started = time.process_time()
            offset = 0
            while data := os.pread(fd, READ_SLICE, offset):
                offset += len(data)
                del data
            spent += time.process_time() - started
        finally:
            os.close(fd)
    return spent


async def measure_parts(layout: Path) -> Parts:
    """The per-byte parts, each the least of several runs, per GiB."""
    gib = layout_bytes(layout) / GiB
    runs = range(CPU_REPEATS)
    send = min([await loopback_send_cpu_seconds(layout_bytes(layout)) for _ in runs])
    return Parts(
        sha256=min(sha256_cpu_seconds(layout) for _ in runs) / gib,
        xxh3=min(hash_cpu_seconds(layout, xxhash.xxh3_64) for _ in runs) / gib,
        read=min(read_cpu_seconds(layout) for _ in runs) / gib,
        loopback_send=send / gib,
    )


def table(cells: list[Cell], floors: list[FloorCell], parts: dict[str, Parts]) -> list[str]:
    """The side-by-side table: one row per transport, the ratio and the goal on the oci row,
    the aiohttp floor's rows after it."""
    rows = [
        "| profile | workload | transport | wall s | MB/s | client CPU s | CPU s/GiB "
        "| x sha256 | peak RSS MB | oci / api MB/s | goal (oci <= 2.5x sha256) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for cell in cells:
        sha = parts[cell.workload].sha256
        if cell.failed:
            rows.append(
                f"| {cell.profile} | {cell.workload} | {cell.transport} "
                f"| FAILED: {'; '.join(cell.failed)} | | | | | | | |"
            )
            continue
        ratio, goal = "", ""
        if cell.transport == "oci":
            api = next(
                c
                for c in cells
                if (c.profile, c.workload, c.transport) == (cell.profile, cell.workload, "api")
            )
            if not api.failed:
                ratio = f"{cell.mb_per_second / api.mb_per_second:.2f}x"
            goal = "met" if cell.cpu_per_gib / sha <= OCI_CPU_GOAL else "MISSED"
        rows.append(
            f"| {cell.profile} | {cell.workload} | --transport {cell.transport} "
            f"| {cell.median('wall_seconds'):.2f} | {cell.mb_per_second:.0f} "
            f"| {cell.median('cpu_seconds'):.2f} | {cell.cpu_per_gib:.2f} "
            f"| {cell.cpu_per_gib / sha:.2f}x | {cell.median('peak_rss_bytes') / MB:.0f} "
            f"| {ratio} | {goal} |"
        )
        if cell.transport == "oci":
            rows += [floor_row(f, sha) for f in floors_of(floors, cell.profile, cell.workload)]
    return rows


def floors_of(floors: list[FloorCell], profile: str, workload: str) -> list[FloorCell]:
    """The floor's cells of one profile and workload."""
    return [f for f in floors if (f.profile, f.workload) == (profile, workload)]


def floor_row(floor: FloorCell, sha: float) -> str:
    """A table row of the aiohttp floor: the pushing alone, one blob at a time."""
    name = f"aiohttp floor, {floor.framing}"
    if not floor.cpu_seconds:
        failed = "; ".join(floor.errors)
        return f"| {floor.profile} | {floor.workload} | {name} | FAILED: {failed} | | | | | | | |"
    return (
        f"| {floor.profile} | {floor.workload} | {name} "
        f"| {statistics.median(floor.wall_seconds):.2f} | {floor.mb_per_second:.0f} "
        f"| {statistics.median(floor.cpu_seconds):.2f} | {floor.cpu_per_gib:.2f} "
        f"| {floor.cpu_per_gib / sha:.2f}x | | | |"
    )


def left_over(cells: list[Cell], floors: list[FloorCell], parts: dict[str, Parts]) -> list[str]:
    """For each oci cell that missed the goal: its CPU per GiB part by part, the rest, and
    how far above the aiohttp floor (chunked, as layerhoist sends) it is."""
    lines: list[str] = []
    for cell in cells:
        if cell.transport != "oci" or cell.failed:
            continue
        p = parts[cell.workload]
        if cell.cpu_per_gib / p.sha256 <= OCI_CPU_GOAL:
            continue
        floor = p.sha256 + p.xxh3 + p.read + p.loopback_send
        rest = cell.cpu_per_gib - floor

        def x(seconds: float, sha: float = p.sha256) -> str:
            return f"{seconds:.2f} s ({seconds / sha:.2f}x)"

        line = (
            f"- {cell.profile}, {cell.workload}: {x(cell.cpu_per_gib)} per GiB = sha256 "
            f"{x(p.sha256)} + xxh3 {x(p.xxh3)} + reading the layout {x(p.read)} + loopback "
            f"send from a plain socket {x(p.loopback_send)} (together {x(floor)}) + "
            f"**left: {x(rest)}**: the HTTP client, the pipeline and the event loop."
        )
        chunked = [
            f
            for f in floors_of(floors, cell.profile, cell.workload)
            if f.framing == "chunked" and f.cpu_seconds
        ]
        if chunked:
            above = cell.cpu_per_gib - chunked[0].cpu_per_gib
            line += (
                f" The aiohttp floor is {x(chunked[0].cpu_per_gib)}: layerhoist's pipeline "
                f"and requests above it, {x(above)}."
            )
        lines.append(line)
    return lines


def page(
    cells: list[Cell],
    floors: list[FloorCell],
    parts: dict[str, Parts],
    repeats: int,
    command: str,
    elapsed: float,
) -> str:
    """The results page: what ran, on what machine, the table, and what is left."""
    env = environment()
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    wan = " ".join(PROFILES["wan"].registry_args())
    lines = [
        "# ECR transports side by side: --transport api against --transport oci",
        "",
        f"Made by `{command}` on {datetime.now(UTC):%Y-%m-%d} in {elapsed:.0f} s.",
        "",
        f"- Machine: {env['cpu_model']}, {env['cpu_count']} cores, "
        f"{(env['memory_bytes'] or 0) / GiB:.0f} GiB RAM, {env['platform']}; load average "
        f"at the end {env['load_average']}",
        f"- Software: {versions}",
        "- Registry: the embedded registry on loopback, one process per profile, "
        f"`{' '.join(ECR_PUBLIC_ARGS)}`; `lan`: no simulation; `wan`: `{wan}`.",
        f"- Each cell: the median of {repeats} run(s) of `layerhoist push oci:LAYOUT "
        "ecr-public:REPO --create-repo --quiet --transport api|oci` into a fresh repository, "
        "the transports taking turns going first. Wall time: the whole client, start-up "
        "included; MB/s: blob bytes over wall time. Every run verified through the JSON API "
        "(DescribeImages: every tag's digest equals the layout's); a run that does not verify "
        "counts as FAILED.",
        "- CPU s/GiB: each push minus the same command run again right after it (which finds "
        "everything present: start-up and the existence checks), the median pair, per GiB. "
        "x sha256: that as a multiple of one in-memory sha256 pass over the same bytes, "
        "measured in this run: "
        + ", ".join(f"{p.sha256:.2f} s/GiB ({name})" for name, p in parts.items())
        + ".",
        f"- aiohttp floor: `{FLOOR_SCRIPT.name}` after each pair of pushes, into a fresh "
        "repository of the same registry: every blob of the layout, one after the other, as "
        "a POST and one PUT whose body is read, hashed (sha256 and xxh3) and handed to "
        "aiohttp in one pass, 1 MiB at a time; no pipeline, retries, pacing or manifests. "
        "Wall s, MB/s and CPU are of the pushing alone (start-up and its token left out), the "
        "median of the runs; `chunked` frames the body as layerhoist does, `Content-Length` "
        "shows what that framing would save.",
        "",
        *table(cells, floors, parts),
        "",
    ]
    rest = left_over(cells, floors, parts)
    if rest:
        lines += [
            "Where `--transport oci`'s CPU goes where it missed the goal (the parts measured "
            "in this run, in one thread, each the least of several runs):",
            "",
            *rest,
            "",
        ]
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> int:
    """Generate the layouts, run every cell, print (and save) the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small workload, one run")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    workloads = QUICK_WORKLOADS if args.quick else WORKLOADS
    # The parts are measured in this process: with the allocator set up as a push's is.
    tune_malloc()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="layerhoist-transports-") as tmp:
        work = Path(tmp)
        layouts: dict[str, Path] = {}
        for number, (label, shape) in enumerate(workloads.items()):
            layouts[label] = work / f"layout-{number}"
            write_oci_layout(layouts[label], seed=LAYOUT_SEED + number, **shape)
        parts = {label: await measure_parts(layout) for label, layout in layouts.items()}
        cells: list[Cell] = []
        floors: list[FloorCell] = []
        for profile in NETWORK_PROFILES:
            profile_cells, profile_floors = await bench_profile(profile, layouts, work, repeats)
            cells += profile_cells
            floors += profile_floors
    command = "PYTHONPATH=src .venv/bin/python benchmarks/compare_transports.py" + (
        " " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""
    )
    text = page(cells, floors, parts, repeats, command, time.monotonic() - started)
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(text)
    failed = any(cell.failed for cell in cells) or any(floor.errors for floor in floors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
