"""layerhoist against the sequential boto3 baseline, side by side in one run.

Three measurements, each against the embedded registry running in its own process:

1. ``wan``: 20 images x 5 layers x 4 MiB with the registry simulating a WAN
   (40 ms per request, 25 MB/s per connection): wall time of the baseline
   (``baseline_boto3.py``) and of ``layerhoist push`` at its defaults, and the ratio.
2. ``cpu``: 256 MiB of layers, no simulation: layerhoist's client CPU-seconds per GiB
   pushed, as a multiple of one sha256 pass over the same bytes measured in this run.
   Beside it, the floor: the per-byte work every push must do whatever the pipeline
   (read each part, sha256 it for the digest, xxh3 it, base64 it into the request body
   and sha256 that body for SigV4), timed in one thread with no network; and what the
   kernel charges the sender for the request bodies' bytes over loopback TCP, sent from
   a plain blocking socket.
3. ``memory``: one 1 GiB layer, then 100 x 10 MiB layers, at the default settings:
   peak RSS of the client process in each.

Every client runs as a child process so its CPU time and peak RSS are its own
(``os.wait4``, read by :mod:`layerhoist.bench.measure`). Layouts are generated before any
timing starts.

    .venv/bin/python benchmarks/bench_push.py [--only wan,cpu,memory] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, TypedDict

import anyio
import xxhash

from layerhoist.allocator import tune_malloc
from layerhoist.bench.measure import measure_child
from layerhoist.bench.targets import push_command
from layerhoist.destinations.ecr.destination import EcrDestination
from layerhoist.destinations.ecr.limits import BASE64_EXPANSION, PREFERRED_MAX_PART_SIZE
from layerhoist.refs import parse_destination
from layerhoist.registry.launcher import RegistryProcess, client_env
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.transfer.config import PushConfig
from layerhoist.units import MB, GiB, MiB

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"
WAN_ARGS = ("--latency-ms", "40", "--bandwidth", "25MB/s")
#: Bytes read per call when hashing the sha256 yardstick.
HASH_CHUNK = 8 * MiB


class Hasher(Protocol):
    """What a hash pass needs of a hash object (hashlib's and xxhash's alike)."""

    def update(self, data: bytes, /) -> None:
        """Add ``data`` to the hash."""


#: Bytes per send() and recv() when timing the loopback socket (the pipeline's wire slice).
SOCKET_SLICE = 1 * MiB
#: Runs of the CPU benchmark: the least of the yardsticks, the median push.
CPU_REPEATS = 5


class Shape(TypedDict):
    """How many images, layers each and bytes per layer a generated layout has."""

    images: int
    layers_per_image: int
    layer_size: int


#: The layer shapes of the CPU benchmark, 256 MiB each.
CPU_SHAPES: dict[str, Shape] = {
    "8 images x 4 layers x 8 MiB": {"images": 8, "layers_per_image": 4, "layer_size": 8 * MiB},
    "1 image x 4 layers x 64 MiB": {"images": 1, "layers_per_image": 4, "layer_size": 64 * MiB},
}


@dataclass(frozen=True)
class Run:
    """One client process: what it cost."""

    name: str
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    exit_code: int


async def run_child(name: str, command: Sequence[str]) -> Run:
    """Run a client to completion and collect what it cost; its stderr only if it failed."""
    _, usage = await measure_child(command, env=client_env(), stderr_on_failure=True)
    return Run(
        name=name,
        wall_seconds=usage.wall_seconds,
        cpu_seconds=usage.cpu_seconds,
        peak_rss_bytes=usage.peak_rss_bytes,
        exit_code=usage.exit_code,
    )


def baseline_command(layout: Path, endpoint: str, repository: str) -> list[str]:
    """The sequential boto3 loop over the same layout."""
    return [
        sys.executable,
        str(BENCHMARKS / "baseline_boto3.py"),
        "--endpoint-url",
        endpoint,
        "--layout",
        str(layout),
        "--repository",
        repository,
    ]


def layout_bytes(layout: Path) -> int:
    """Bytes of every blob in a layout."""
    return sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())


def sha256_cpu_seconds(layout: Path) -> float:
    """CPU-seconds of one sha256 pass over every blob of ``layout`` (hashing only, not reading)."""
    return hash_cpu_seconds(layout, hashlib.sha256)


def hash_cpu_seconds(layout: Path, new_hash: Callable[[], Hasher]) -> float:
    """CPU-seconds of one pass of ``new_hash()`` over every blob (hashing only, not reading)."""
    spent = 0.0
    for blob in (layout / "blobs" / "sha256").iterdir():
        digest = new_hash()
        with blob.open("rb") as f:
            while chunk := f.read(HASH_CHUNK):
                started = time.process_time()
                digest.update(chunk)
                spent += time.process_time() - started
    return spent


def floor_cpu_seconds(layout: Path, part_size: int) -> float:
    """CPU-seconds of the per-byte work a push cannot avoid, in one thread, no network.

    Each part is read, added to the blob's sha256, fingerprinted with xxh3 and made
    into its UploadLayerPart body (base64 in JSON, and that body's sha256 for SigV4)
    by layerhoist's own encoder: everything but the HTTP requests and the pipeline.
    """
    destination = EcrDestination(parse_destination("ecr-public:bench/floor"), config=PushConfig())
    encode = destination.part_encoder("0" * 32)
    spent = 0.0
    for blob in (layout / "blobs" / "sha256").iterdir():
        fd = os.open(blob, os.O_RDONLY)
        try:
            started = time.process_time()
            digest = hashlib.sha256()
            offset = 0
            while data := os.pread(fd, part_size, offset):
                digest.update(data)
                xxhash.xxh3_64_intdigest(data)
                encode(offset, data)
                offset += len(data)
                del data  # as the pipeline does: the next read must not find it alive
            spent += time.process_time() - started
        finally:
            os.close(fd)
    return spent


def _drain(listener: socket.socket) -> None:
    connection, _ = listener.accept()
    with connection:
        buffer = bytearray(SOCKET_SLICE)
        while connection.recv_into(buffer):
            pass


def _send(port: int, nbytes: int) -> float:
    payload = memoryview(bytes(SOCKET_SLICE))
    with socket.create_connection(("127.0.0.1", port)) as sender:
        started = time.thread_time()
        sent = 0
        while sent < nbytes:
            sent += sender.send(payload[: nbytes - sent])
        return time.thread_time() - started


async def loopback_send_cpu_seconds(nbytes: int) -> float:
    """CPU-seconds the sending thread spends pushing ``nbytes`` through loopback TCP.

    Over loopback the kernel delivers each segment in the sender's context, so this is
    the share of a push's CPU that sending its request bodies costs here, whatever the
    HTTP client on top.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, _drain, listener)
            spent = await anyio.to_thread.run_sync(_send, listener.getsockname()[1], nbytes)
    return spent


async def bench_wan(work: Path) -> dict[str, object]:
    """Benchmark 1: the WAN profile, baseline vs layerhoist."""
    layout = work / "wan-layout"
    write_oci_layout(layout, images=20, layers_per_image=5, layer_size=4 * MiB, seed=101)
    async with RegistryProcess(data_dir=work / "wan-registry", args=WAN_ARGS) as registry:
        baseline = await run_child(
            "baseline", baseline_command(layout, registry.endpoint_url, "bench/baseline")
        )
        hoist = await run_child(
            "layerhoist", push_command(layout, registry.endpoint_url, "bench/layerhoist")
        )
    return {
        "layout": "20 images x 5 layers x 4 MiB",
        "registry": " ".join(WAN_ARGS),
        "bytes": layout_bytes(layout),
        "baseline": asdict(baseline),
        "layerhoist": asdict(hoist),
        "speedup": baseline.wall_seconds / hoist.wall_seconds,
    }


async def bench_cpu(work: Path) -> dict[str, object]:
    """Benchmark 2: client CPU per GiB as a multiple of one sha256 pass, for two layer shapes.

    256 MiB either way; small layers cost more per GiB, each blob taking three requests.
    """
    return {
        label: await _cpu_case(work / f"cpu-{number}", shape)
        for number, (label, shape) in enumerate(CPU_SHAPES.items())
    }


async def _cpu_case(work: Path, shape: Shape) -> dict[str, object]:
    layout = work / "layout"
    write_oci_layout(layout, seed=202, **shape)
    total = layout_bytes(layout)
    sha = min(sha256_cpu_seconds(layout) for _ in range(CPU_REPEATS))
    floor = min(floor_cpu_seconds(layout, PREFERRED_MAX_PART_SIZE) for _ in range(CPU_REPEATS))
    wire = min(
        [await loopback_send_cpu_seconds(int(total * BASE64_EXPANSION)) for _ in range(CPU_REPEATS)]
    )
    pushes: list[Run] = []
    idles: list[Run] = []
    async with RegistryProcess(data_dir=work / "registry") as registry:
        for attempt in range(CPU_REPEATS):
            command = push_command(layout, registry.endpoint_url, f"bench/cpu{attempt}")
            pushes.append(await run_child("layerhoist", command))
            # The interpreter and aioboto3 start-up is paid once per process, not per
            # GiB: the same push again finds every blob present and measures it.
            idles.append(await run_child("layerhoist (nothing to push)", command))
    # This VM's CPU accounting is noisy, start-up included (0.8 to 1.1 s): each push is
    # paired with the idle run right after it, and the median pair is the cost.
    pairs = sorted(
        zip(pushes, idles, strict=True), key=lambda p: p[0].cpu_seconds - p[1].cpu_seconds
    )
    hoist, idle = pairs[len(pairs) // 2]
    gib = total / GiB
    per_pair = [(push.cpu_seconds - nothing.cpu_seconds) / gib for push, nothing in pairs]
    per_gib = (hoist.cpu_seconds - idle.cpu_seconds) / gib
    return {
        "bytes": total,
        "repeats": CPU_REPEATS,
        "layerhoist": asdict(hoist),
        "startup_cpu_seconds": idle.cpu_seconds,
        "client_cpu_per_gib": per_gib,
        "client_cpu_per_gib_range": [per_pair[0], per_pair[-1]],
        "sha256_cpu_per_gib": sha / gib,
        "ratio_to_sha256": per_gib / (sha / gib),
        "floor_cpu_per_gib": floor / gib,
        "floor_ratio_to_sha256": floor / sha,
        "loopback_send_cpu_per_gib": wire / gib,
        "loopback_send_ratio_to_sha256": wire / sha,
    }


async def bench_memory(work: Path) -> dict[str, object]:
    """Benchmark 3: peak client RSS for one huge layer and for many medium ones."""
    results: dict[str, object] = {}
    cases: dict[str, Shape] = {
        "1 x 1 GiB layer": {"images": 1, "layers_per_image": 1, "layer_size": GiB},
        "100 x 10 MiB layers": {"images": 20, "layers_per_image": 5, "layer_size": 10 * MiB},
    }
    for number, (label, shape) in enumerate(cases.items()):
        layout = work / f"memory-layout-{number}"
        write_oci_layout(layout, seed=300 + number, **shape)
        async with RegistryProcess(data_dir=work / f"memory-registry-{number}") as registry:
            run = await run_child(
                label, push_command(layout, registry.endpoint_url, "bench/memory")
            )
        results[label] = asdict(run)
        await anyio.to_thread.run_sync(_remove_tree, layout)
    return results


def _remove_tree(path: Path) -> None:
    for blob in (path / "blobs" / "sha256").iterdir():
        blob.unlink()


def markdown(results: dict[str, dict[str, object]]) -> str:
    """The results as a Markdown table, one row per figure."""
    rows = ["| benchmark | figure | value |", "|---|---|---|"]
    if "wan" in results:
        wan = results["wan"]
        base, hoist = wan["baseline"], wan["layerhoist"]
        assert isinstance(base, dict) and isinstance(hoist, dict)
        rows.append(
            f"| wan ({wan['layout']}) | baseline boto3 loop | {base['wall_seconds']:.1f} s |"
        )
        rows.append(f"| | layerhoist | {hoist['wall_seconds']:.1f} s |")
        rows.append(f"| | speed-up | **{wan['speedup']:.1f}x** |")
    if "cpu" in results:
        for label, case in results["cpu"].items():
            assert isinstance(case, dict)
            per_gib, sha = case["client_cpu_per_gib"], case["sha256_cpu_per_gib"]
            low, high = case["client_cpu_per_gib_range"]
            rows.append(
                f"| cpu ({label}) | client CPU per GiB, median of {case['repeats']} "
                f"| {per_gib:.2f} s (pairs {low:.2f} to {high:.2f}) |"
            )
            rows.append(f"| | one sha256 pass per GiB | {sha:.2f} s |")
            rows.append(
                f"| | ratio | **{case['ratio_to_sha256']:.2f}x** "
                f"({low / sha:.2f}x to {high / sha:.2f}x) |"
            )
            rows.append(
                f"| | floor: read + sha256 + xxh3 + base64 + SigV4 body hash, no network "
                f"| {case['floor_cpu_per_gib']:.2f} s = {case['floor_ratio_to_sha256']:.2f}x |"
            )
            rows.append(
                "| | loopback TCP send of the request bodies, plain socket "
                f"| {case['loopback_send_cpu_per_gib']:.2f} s = "
                f"{case['loopback_send_ratio_to_sha256']:.2f}x |"
            )
    if "memory" in results:
        for label, run in results["memory"].items():
            assert isinstance(run, dict)
            rows.append(
                f"| memory | peak client RSS, {label} | {run['peak_rss_bytes'] / MB:.0f} MB |"
            )
    return "\n".join(rows) + "\n"


def _runs(tree: object) -> list[dict[str, object]]:
    """Every client run recorded anywhere in the results."""
    if not isinstance(tree, dict):
        return []
    if "exit_code" in tree:
        return [tree]
    return [run for value in tree.values() for run in _runs(value)]


async def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks and print (and save) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="wan,cpu,memory")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    # The floor is measured in this process: with the allocator set up as a push's is.
    tune_malloc()
    chosen = args.only.split(",")
    benches = {"wan": bench_wan, "cpu": bench_cpu, "memory": bench_memory}
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="layerhoist-bench-") as tmp:
        for name in chosen:
            results[name] = await benches[name](Path(tmp))
    table = markdown(results)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "push.md").write_text(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    failed = [run for run in _runs(results) if run["exit_code"] != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
