"""layerhoist against skopeo as a mirroring client, side by side on Debian's docker-registry.

Three measurements in one run (issue 10's benchmarks 1, 2 and 4):

(a) OCI layout -> registry. ``layerhoist copy oci:LAYOUT docker://HOST/REPO`` copies every tag
    in one process; skopeo copies one image per invocation, so it runs as skopeo's own way of
    doing this: a loop of ``skopeo copy --preserve-digests oci:LAYOUT:TAG docker://HOST/REPO:TAG``.
(b) registry -> registry. A source repository is seeded once (not timed), then
    ``layerhoist copy docker://SRC docker://DST --all-tags`` against
    ``skopeo sync --src docker --dest docker --preserve-digests SRC DST``.
(c) the peak client RSS of ``layerhoist copy`` of one 1 GiB layer, registry -> registry.

Two workloads, 2 images x 4 layers x 64 MiB and 20 images x 5 layers x 1 MiB; each cell is the
median of ``--repeats`` runs. Every client is a child process measured with ``os.wait4`` (client
CPU, peak RSS); wall time is the parent's, start-up included, and MB/s is blob bytes over wall
time. Every run is verified afterwards (not timed): skopeo reads each destination tag and its
manifest digest must equal the source's, otherwise the run counts as failed.

Two things skopeo does would turn its pushes into no transfer at all, so the setup prevents them:

- skopeo mounts a blob from another repository of the same registry when it knows one holds it
  (``POST ?mount=&from=``). In (b) it would mount from the source repository, so the source is a
  second docker-registry instance; both tools copy from the same source instance into the same
  destination instance.
- skopeo remembers where it has seen blobs in a persistent blob-info cache, which under root
  lives in ``/var/lib/containers`` whatever the environment says. A later repeat would mount
  the previous repeat's blobs, so every (workload, measurement, repeat) gets a layout of its
  own, and the seeds change from one invocation of this script to the next.

Beside each run the script reads the registries' own CPU time (``/proc``) and how busy the
whole machine was, so that a missed goal can be told apart from a saturated machine.

Prints the results page and, unless ``--quick``, writes it to
``benchmarks/results/compare_skopeo.md``::

    .venv/bin/python benchmarks/compare_skopeo.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import anyio

from layerhoist.bench.measure import (
    machine_busy_seconds,
    measure_child,
    process_cpu,
)
from layerhoist.bench.report import environment
from layerhoist.registry.launcher import client_env
from layerhoist.testing.distribution import Distribution, distribution_process
from layerhoist.testing.synthetic import REF_NAME_ANNOTATION, write_oci_layout
from layerhoist.units import MB, GiB, KiB, MiB

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"
DEFAULT_REPEATS = 3
#: Goals of issue 10: layerhoist's MB/s as a multiple of skopeo's, per workload.
LARGE_GOAL = 1.2
SMALL_GOAL = 3.0
#: Goal of issue 10 for (c): the client's peak RSS copying one 1 GiB layer.
RSS_GOAL_BYTES = 150 * MB
RSS_LAYER = 1 * GiB
QUICK_RSS_LAYER = 64 * MiB
#: Largest random base seed (each run draws one so that no blob repeats across invocations).
SEED_BITS = 32
#: The default run should fit in this; the script says so when it does not.
TIME_BUDGET_SECONDS = 600.0
LAYERHOIST = "layerhoist copy"
SKOPEO_LOOP = "skopeo copy loop"
SKOPEO_SYNC = "skopeo sync"
LAYOUT_TO_REGISTRY = "(a) OCI layout -> registry"
REGISTRY_TO_REGISTRY = "(b) registry -> registry"
#: The repository skopeo sync's destination gets: it appends the source's last path component.
SOURCE_REPOSITORY = "mirror"


@dataclass(frozen=True)
class Workload:
    """A synthetic set of images and the speed-up layerhoist must reach on it."""

    images: int
    layers: int
    layer_size: int
    goal: float

    @property
    def label(self) -> str:
        """``20 images x 5 layers x 1 MiB``."""
        return workload_label(self.images, self.layers, self.layer_size)


def workload_label(images: int, layers: int, layer_size: int) -> str:
    """``20 images x 5 layers x 1 MiB``: a synthetic workload as the results pages name it."""
    size = f"{layer_size / MiB:g} MiB" if layer_size >= MiB else f"{layer_size / KiB:g} KiB"
    return f"{images} images x {layers} layers x {size}"


FULL_WORKLOADS = (
    Workload(images=2, layers=4, layer_size=64 * MiB, goal=LARGE_GOAL),
    Workload(images=20, layers=5, layer_size=1 * MiB, goal=SMALL_GOAL),
)
QUICK_WORKLOADS = (
    Workload(images=2, layers=2, layer_size=8 * MiB, goal=LARGE_GOAL),
    Workload(images=4, layers=2, layer_size=256 * KiB, goal=SMALL_GOAL),
)


@dataclass(frozen=True)
class Run:
    """One tool's run of one cell: what it cost, and whether its result verified."""

    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    #: CPU seconds both docker-registry processes spent during the run.
    registry_cpu_seconds: float
    #: CPU seconds the whole machine was busy during the run (every process).
    machine_busy_seconds: float
    error: str | None = None


@dataclass
class Cell:
    """One tool on one workload of one measurement: its runs and their medians."""

    measurement: str
    workload: Workload
    tool: str
    nbytes: int
    runs: list[Run] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every run succeeded and verified."""
        return bool(self.runs) and all(run.error is None for run in self.runs)

    def median(self, attribute: str) -> float:
        """The median of one figure over the runs."""
        return statistics.median(float(getattr(run, attribute)) for run in self.runs)

    @property
    def throughput(self) -> float:
        """MB/s of blob bytes over the median wall time."""
        return self.nbytes / self.median("wall_seconds") / MB


@dataclass(frozen=True)
class Registries:
    """The two docker-registry instances and their process ids (for their CPU time)."""

    source: Distribution
    destination: Distribution
    pids: tuple[int, ...]

    def cpu_seconds(self) -> float:
        """CPU seconds both instances have spent so far."""
        return sum((times.total for pid in self.pids if (times := process_cpu(pid))), 0.0)


def layout_digests(layout: Path) -> dict[str, str]:
    """Tag -> manifest digest of every image of an OCI layout."""
    index = json.loads((layout / "index.json").read_bytes())
    return {
        entry["annotations"][REF_NAME_ANNOTATION]: entry["digest"] for entry in index["manifests"]
    }


def blob_bytes(layout: Path) -> int:
    """Bytes of every blob of a layout (layers, configs, manifests): what a copy moves."""
    return sum(blob.stat().st_size for blob in (layout / "blobs" / "sha256").iterdir())


def registry_pid(config: Path) -> int:
    """The pid of this process's ``docker-registry serve CONFIG`` child (read from /proc)."""
    wanted = str(config).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            parent = (entry / "stat").read_text().rpartition(")")[2].split()[1]
        except (OSError, IndexError):
            continue
        if wanted in arguments and int(parent) == os.getpid():
            return int(entry.name)
    raise RuntimeError(f"no docker-registry process serves {config}")


async def verify(skopeo: str, host: str, repository: str, expected: dict[str, str]) -> str | None:
    """Why ``host/repository`` does not hold ``expected`` (tag -> digest); None when it does."""
    for tag, digest in expected.items():
        reference = f"docker://{host}/{repository}:{tag}"
        command = [skopeo, "inspect", "--raw", "--tls-verify=false", reference]
        completed = await anyio.run_process(command, check=False)
        if completed.returncode != 0:
            return f"skopeo inspect {reference} failed: {completed.stderr.decode().strip()}"
        seen = "sha256:" + hashlib.sha256(completed.stdout).hexdigest()
        if seen != digest:
            return f"{reference} is {seen}, the source is {digest}"
    return None


async def timed(
    commands: Sequence[Sequence[str]], registries: Registries
) -> tuple[Run, list[bytes]]:
    """Run ``commands`` one after another as measured children; their summed cost."""
    wall = cpu = 0.0
    peak = 0
    failure = None
    outputs = []
    registry_before = registries.cpu_seconds()
    busy_before = machine_busy_seconds() or 0.0
    for command in commands:
        output, usage = await measure_child(command, env=client_env(), stderr_on_failure=True)
        wall += usage.wall_seconds
        cpu += usage.cpu_seconds
        peak = max(peak, usage.peak_rss_bytes)
        outputs.append(output)
        if usage.exit_code != 0:
            failure = f"{command[0]} exited with {usage.exit_code}"
            break
    run = Run(
        wall_seconds=wall,
        cpu_seconds=cpu,
        peak_rss_bytes=peak,
        registry_cpu_seconds=registries.cpu_seconds() - registry_before,
        machine_busy_seconds=(machine_busy_seconds() or 0.0) - busy_before,
        error=failure,
    )
    return run, outputs


def layerhoist_copy(source: str, destination: str, *extra: str) -> list[str]:
    """``layerhoist copy`` at its default settings, plain HTTP to every registry."""
    plain = ["--src-tls-verify=false"] if source.startswith("docker://") else []
    return [
        *(sys.executable, "-m", "layerhoist", "copy", source, destination),
        *(*plain, "--dest-tls-verify=false", "--quiet", *extra),
    ]


def skopeo_loop(skopeo: str, layout: Path, tags: Sequence[str], target: str) -> list[list[str]]:
    """One ``skopeo copy`` per tag: skopeo's way of copying a layout of several images."""
    return [
        [
            *(skopeo, "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"),
            *(f"oci:{layout}:{tag}", f"docker://{target}:{tag}"),
        ]
        for tag in tags
    ]


def skopeo_sync(skopeo: str, source: str, destination: str) -> list[str]:
    """``skopeo sync`` of every tag of ``source`` into the ``destination`` namespace."""
    return [
        *(skopeo, "sync", "--src", "docker", "--dest", "docker", "--preserve-digests"),
        *("--src-tls-verify=false", "--dest-tls-verify=false", source, destination),
    ]


async def measured(
    cell: Cell,
    commands: Sequence[Sequence[str]],
    registries: Registries,
    *,
    skopeo: str,
    repository: str,
    expected: dict[str, str],
) -> None:
    """Run one tool once, verify its result, and add the run to ``cell``."""
    run, _ = await timed(commands, registries)
    if run.error is None:
        host = registries.destination.host
        problem = await verify(skopeo, host, repository, expected)
        if problem is not None:
            run = dataclasses.replace(run, error=problem)
    if run.error is not None:
        print(f"  FAILED {cell.tool} ({cell.measurement}): {run.error}", file=sys.stderr)
    cell.runs.append(run)


def make_layouts(
    root: Path, workloads: Sequence[Workload], repeats: int, seed: int
) -> dict[tuple[int, str, int], Path]:
    """One layout per (workload, measurement, repeat), all written before any timing."""
    layouts: dict[tuple[int, str, int], Path] = {}
    for number, workload in enumerate(workloads):
        for measurement in (LAYOUT_TO_REGISTRY, REGISTRY_TO_REGISTRY):
            for repeat in range(repeats):
                key = (number, measurement, repeat)
                letter = "a" if measurement == LAYOUT_TO_REGISTRY else "b"
                path = root / f"workload{number}-{letter}-{repeat}"
                write_oci_layout(
                    path,
                    images=workload.images,
                    layers_per_image=workload.layers,
                    layer_size=workload.layer_size,
                    seed=seed + len(layouts),
                )
                layouts[key] = path
    return layouts


async def compare(
    registries: Registries,
    layouts: dict[tuple[int, str, int], Path],
    workloads: Sequence[Workload],
    repeats: int,
    skopeo: str,
) -> list[Cell]:
    """Both measurements on every workload; the tools take turns going first."""
    source, destination = registries.source, registries.destination
    cells: list[Cell] = []
    for number, workload in enumerate(workloads):
        nbytes = blob_bytes(layouts[number, LAYOUT_TO_REGISTRY, 0])
        ours_a = Cell(LAYOUT_TO_REGISTRY, workload, LAYERHOIST, nbytes)
        theirs_a = Cell(LAYOUT_TO_REGISTRY, workload, SKOPEO_LOOP, nbytes)
        ours_b = Cell(REGISTRY_TO_REGISTRY, workload, LAYERHOIST, nbytes)
        theirs_b = Cell(REGISTRY_TO_REGISTRY, workload, SKOPEO_SYNC, nbytes)
        cells += [ours_a, theirs_a, ours_b, theirs_b]
        for repeat in range(repeats):
            print(f"{workload.label}: repeat {repeat + 1}/{repeats}", file=sys.stderr)
            layout = layouts[number, LAYOUT_TO_REGISTRY, repeat]
            expected = layout_digests(layout)
            tags = list(expected)
            ours = f"a-layerhoist-{number}-{repeat}"
            theirs = f"a-skopeo-{number}-{repeat}"
            target = destination.host
            runs_a = [
                (ours_a, [layerhoist_copy(f"oci:{layout}", f"docker://{target}/{ours}")], ours),
                (theirs_a, skopeo_loop(skopeo, layout, tags, f"{target}/{theirs}"), theirs),
            ]
            # The source repository is seeded once per repeat, untimed, through skopeo.
            layout_b = layouts[number, REGISTRY_TO_REGISTRY, repeat]
            expected_b = layout_digests(layout_b)
            origin = f"src-{number}-{repeat}/{SOURCE_REPOSITORY}"
            for tag, digest in expected_b.items():
                seeded = await anyio.to_thread.run_sync(
                    source.seed, layout_b, tag, f"{origin}:{tag}"
                )
                if seeded != digest:
                    raise RuntimeError(f"seeding {origin}:{tag} gave {seeded}, not {digest}")
            src = f"docker://{source.host}/{origin}"
            ours = f"b-layerhoist-{number}-{repeat}"
            namespace = f"b-skopeo-{number}-{repeat}"
            runs_b = [
                (
                    ours_b,
                    [layerhoist_copy(src, f"docker://{target}/{ours}", "--all-tags")],
                    ours,
                ),
                (
                    theirs_b,
                    [skopeo_sync(skopeo, src.removeprefix("docker://"), f"{target}/{namespace}")],
                    f"{namespace}/{SOURCE_REPOSITORY}",
                ),
            ]
            for runs, wanted in ((runs_a, expected), (runs_b, expected_b)):
                order = runs if repeat % 2 == 0 else runs[::-1]
                for cell, commands, repository in order:
                    await measured(
                        cell,
                        commands,
                        registries,
                        skopeo=skopeo,
                        repository=repository,
                        expected=wanted,
                    )
    return cells


async def large_layer_rss(registries: Registries, layout: Path, skopeo: str) -> tuple[Run, int]:
    """(c): seed one large layer (untimed), copy it with layerhoist, return the child's cost."""
    expected = layout_digests(layout)
    (tag,) = expected
    origin = f"rss/{SOURCE_REPOSITORY}"
    await anyio.to_thread.run_sync(registries.source.seed, layout, tag, f"{origin}:{tag}")
    command = layerhoist_copy(
        f"docker://{registries.source.host}/{origin}",
        f"docker://{registries.destination.host}/rss-layerhoist",
        "--all-tags",
    )
    run, _ = await timed([command], registries)
    if run.error is None:
        problem = await verify(skopeo, registries.destination.host, "rss-layerhoist", expected)
        run = dataclasses.replace(run, error=problem)
    return run, blob_bytes(layout)


def ratio_rows(cells: Sequence[Cell]) -> list[str]:
    """The table: one row per tool and cell, with layerhoist's multiple of skopeo."""
    rows = [
        "| measurement | workload | tool | wall s | MB/s | client CPU s | peak RSS MB "
        "| registries CPU s | machine busy CPU s | layerhoist / skopeo | goal |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for ours, theirs in zip(cells[::2], cells[1::2], strict=True):
        ratio = ""
        if ours.ok and theirs.ok:
            multiple = ours.throughput / theirs.throughput
            verdict = "met" if multiple >= ours.workload.goal else "MISSED"
            ratio = f"{multiple:.2f}x"
            goal = f">= {ours.workload.goal:g}x: {verdict}"
        else:
            goal = "not comparable (a run failed)"
        for cell in (ours, theirs):
            if not cell.ok:
                rows.append(
                    f"| {cell.measurement} | {cell.workload.label} | {cell.tool} | FAILED "
                    "| | | | | | | |"
                )
                continue
            first = cell is ours
            rows.append(
                f"| {cell.measurement} | {cell.workload.label} | {cell.tool} "
                f"| {cell.median('wall_seconds'):.2f} | {cell.throughput:.0f} "
                f"| {cell.median('cpu_seconds'):.2f} | {cell.median('peak_rss_bytes') / MB:.0f} "
                f"| {cell.median('registry_cpu_seconds'):.2f} "
                f"| {cell.median('machine_busy_seconds'):.2f} "
                f"| {ratio if first else ''} | {goal if first else ''} |"
            )
    return rows


def floor_notes(cells: Sequence[Cell]) -> list[str]:
    """For each missed goal: where the cores went, so the note can say what the floor is."""
    cores = os.cpu_count() or 1
    notes = []
    for ours, theirs in zip(cells[::2], cells[1::2], strict=True):
        if not (ours.ok and theirs.ok) or ours.throughput / theirs.throughput >= ours.workload.goal:
            continue
        for cell in (ours, theirs):
            wall = cell.median("wall_seconds")
            client = cell.median("cpu_seconds")
            registry = cell.median("registry_cpu_seconds")
            busy = cell.median("machine_busy_seconds")
            notes.append(
                f"- {cell.measurement}, {cell.workload.label}, {cell.tool}: of {wall * cores:.1f} "
                f"core-seconds ({cores} cores x {wall:.2f} s wall), the client used {client:.2f}, "
                f"docker-registry {registry:.2f}, everything else on the machine "
                f"{max(busy - client - registry, 0.0):.2f}."
            )
    return notes


def markdown(
    cells: Sequence[Cell],
    rss: tuple[Run, int],
    *,
    command: str,
    repeats: int,
    elapsed: float,
    skopeo: str,
) -> str:
    """The results page: what ran, on what machine, the table, and the notes."""
    env = environment()
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    rss_run, rss_bytes = rss
    if rss_run.error is None:
        verdict = "met" if rss_run.peak_rss_bytes < RSS_GOAL_BYTES else "MISSED"
        rss_line = (
            f"(c) registry -> registry, one layer of {rss_bytes / MB:.0f} MB: layerhoist's peak "
            f"client RSS {rss_run.peak_rss_bytes / MB:.0f} MB (goal < {RSS_GOAL_BYTES / MB:.0f} "
            f"MB: {verdict}), {rss_run.wall_seconds:.1f} s, "
            f"{rss_bytes / rss_run.wall_seconds / MB:.0f} MB/s."
        )
    else:
        rss_line = f"(c) one large layer: FAILED: {rss_run.error}"
    lines = [
        "# layerhoist against skopeo, mirroring into Debian's docker-registry",
        "",
        f"Made by `{command}` on {datetime.now(UTC):%Y-%m-%d} in {elapsed:.0f} s.",
        "",
        f"- Machine: {env['cpu_model']}, {env['cpu_count']} cores, "
        f"{(env['memory_bytes'] or 0) / GiB:.0f} GiB RAM, {env['platform']}; load average "
        f"at the end {env['load_average']}",
        f"- Software: {versions}, {skopeo_version(skopeo)}",
        "- Registries: two `docker-registry serve` processes on loopback, plain HTTP: the "
        "destination of every run, and the source of (b) and (c) (a second instance, so that "
        "skopeo cannot mount blobs from the source repository instead of copying them).",
        f"- Each cell: the median of {repeats} run(s), tools taking turns going first, each "
        "run into a fresh repository with blobs of its own. Wall time: the whole client, "
        "start-up included (the sum over the loop for skopeo copy); MB/s: blob bytes over "
        "wall time. Every run verified by skopeo (each tag's manifest digest equals the "
        "source's); a run that does not verify counts as FAILED.",
        "- (a) skopeo copies one image per invocation, so its side is skopeo's own way of "
        "copying a layout: a `skopeo copy --preserve-digests oci:LAYOUT:TAG` loop over the tags.",
        "- Machine busy CPU: every process on the machine during the run; above client plus "
        "registries it is other work competing for the 2 cores.",
        "",
        *ratio_rows(cells),
        "",
        rss_line,
    ]
    notes = floor_notes(cells)
    if notes:
        lines += ["", "Where the cores went in the cells that missed their goal:", "", *notes]
    return "\n".join(lines) + "\n"


def skopeo_version(skopeo: str) -> str:
    """``skopeo 1.x.y``, as ``skopeo --version`` says."""
    completed = subprocess.run([skopeo, "--version"], capture_output=True, text=True, check=True)
    return completed.stdout.strip().replace(" version", "")


async def main(argv: Sequence[str] | None = None) -> int:
    """Run (a), (b) and (c); print and write the results page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="runs per cell (default 3)")
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(arguments)
    skopeo = shutil.which("skopeo")
    binary = shutil.which("docker-registry")
    if skopeo is None or binary is None:
        print("compare_skopeo: needs skopeo and docker-registry on PATH", file=sys.stderr)
        return 1
    workloads = QUICK_WORKLOADS if args.quick else FULL_WORKLOADS
    repeats = args.repeats or (1 if args.quick else DEFAULT_REPEATS)
    command = " ".join([".venv/bin/python benchmarks/compare_skopeo.py", *arguments])
    began = time.monotonic()
    seed = secrets.randbits(SEED_BITS)
    with tempfile.TemporaryDirectory(prefix="layerhoist-compare-skopeo-") as tmp:
        root = Path(tmp)
        print("writing the layouts (untimed)", file=sys.stderr)
        layouts = make_layouts(root / "layouts", workloads, repeats, seed)
        big = root / "layouts" / "one-large-layer"
        write_oci_layout(
            big,
            images=1,
            layers_per_image=1,
            layer_size=QUICK_RSS_LAYER if args.quick else RSS_LAYER,
            seed=seed - 1,
        )
        (root / "source").mkdir()
        (root / "destination").mkdir()
        with (
            distribution_process(root / "source", binary=binary, skopeo=skopeo) as source,
            distribution_process(root / "destination", binary=binary, skopeo=skopeo) as target,
        ):
            pids = (
                registry_pid(root / "source" / "config.yml"),
                registry_pid(root / "destination" / "config.yml"),
            )
            registries = Registries(source, target, pids)
            cells = await compare(registries, layouts, workloads, repeats, skopeo)
            print("(c) one large layer, registry -> registry", file=sys.stderr)
            rss = await large_layer_rss(registries, big, skopeo)
    elapsed = time.monotonic() - began
    page = markdown(cells, rss, command=command, repeats=repeats, elapsed=elapsed, skopeo=skopeo)
    if not args.quick and elapsed > TIME_BUDGET_SECONDS:
        page += (
            f"\nThis run took {elapsed:.0f} s, over the {TIME_BUDGET_SECONDS:.0f} s budget: "
            "try `--repeats 1`.\n"
        )
    print(page)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "compare_skopeo.md").write_text(page)
    return 0 if all(cell.ok for cell in cells) and rss[0].error is None else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main))
