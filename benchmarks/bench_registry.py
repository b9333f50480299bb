"""How fast the embedded registry receives layer parts, and what each GiB costs it in CPU.

The registry runs alone in its own process; a lean client (JSON bodies built once with
pybase64, sent with aiohttp, no signing) pushes ``--total-mib`` of random layers in
``--part-mib`` parts, ``--concurrency`` layers at a time. Reported: decoded part bytes
received per second, the server's CPU-seconds per GiB (utime + stime from /proc, read by
:mod:`layerhoist.bench.measure`), the client's, and two yardsticks measured in the same run
over the same bytes: one sha256 pass, and one plain write of them to files on the registry's
filesystem (on a VM whose memory the host backs lazily, filling fresh page-cache pages costs
far more than the copy itself).

    .venv/bin/python benchmarks/bench_registry.py [--total-mib 512] [--part-mib 10]
        [--layer-mib 64] [--concurrency 4] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import anyio
import pybase64

from layerhoist.bench.measure import CpuTimes, process_cpu
from layerhoist.registry.launcher import RegistryProcess
from layerhoist.units import MB, GiB, MiB

REPOSITORY = "bench/registry"
TARGET_PREFIX = "SpencerFrontendService."
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
#: Bytes that end every layer and make it unique: the layer's index and a per-run nonce, so
#: the layers share all parts but the last (and their request bodies) yet differ in digest.
TAIL_BYTES = 16
NONCE_BYTES = TAIL_BYTES // 2
INDEX_BYTES = TAIL_BYTES - NONCE_BYTES
#: Seconds a single request may take before the benchmark gives up.
REQUEST_TIMEOUT = 300.0


@dataclass(frozen=True, kw_only=True)
class Result:
    """The figures of one run."""

    layers: int
    parts: int
    bytes_received: int
    wall_seconds: float
    mb_per_second: float
    server_cpu_seconds: float
    server_cpu_per_gib: float
    server_user_per_gib: float
    server_system_per_gib: float
    client_cpu_per_gib: float
    sha256_cpu_per_gib: float
    server_to_sha256: float
    write_cpu_per_gib: float


def registry_cpu(pid: int) -> CpuTimes:
    """User and system CPU time of the registry process (all its threads) so far."""
    times = process_cpu(pid)
    if times is None:
        raise RuntimeError(f"no CPU time of process {pid} in /proc: this benchmark needs Linux")
    return times


def part_sizes(layer_size: int, part_size: int) -> list[int]:
    """Sizes of the shared parts of a layer: full parts, then the remainder."""
    sizes = [part_size] * (layer_size // part_size)
    if layer_size % part_size:
        sizes.append(layer_size % part_size)
    return sizes


class Client:
    """Sends ECR Public JSON requests to the registry with bodies built beforehand."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: str) -> None:
        self._session = session
        self._endpoint = endpoint

    async def call(self, operation: str, body: bytes) -> dict[str, object]:
        """POST one operation; raise with the registry's answer unless it is 200."""
        headers = {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation}
        async with self._session.post(self._endpoint, data=body, headers=headers) as response:
            payload = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{operation}: HTTP {response.status}: {payload[:500]!r}")
            document: dict[str, object] = json.loads(payload)
            return document

    async def push_layer(self, layer: Layer, *, shared: Sequence[EncodedPart]) -> None:
        """Push one layer: the shared parts, then its own final part, then complete it."""
        start = json.dumps({"repositoryName": REPOSITORY}).encode()
        upload_id = str((await self.call("InitiateLayerUpload", start))["uploadId"])
        offset = 0
        for part in [*shared, layer.final]:
            head = json.dumps(
                {
                    "repositoryName": REPOSITORY,
                    "uploadId": upload_id,
                    "partFirstByte": offset,
                    "partLastByte": offset + part.size - 1,
                }
            ).encode()
            body = b"".join((head[:-1], b', "layerPartBlob": "', part.base64, b'"}'))
            await self.call("UploadLayerPart", body)
            offset += part.size
        complete = {
            "repositoryName": REPOSITORY,
            "uploadId": upload_id,
            "layerDigests": [layer.digest],
        }
        await self.call("CompleteLayerUpload", json.dumps(complete).encode())


@dataclass(frozen=True)
class EncodedPart:
    """A part's bytes and their base64 text, encoded once before the clock starts."""

    data: bytes
    base64: bytes

    @property
    def size(self) -> int:
        """Bytes in the part."""
        return len(self.data)


@dataclass(frozen=True)
class Layer:
    """One layer's own final part and its digest."""

    final: EncodedPart
    digest: str


@dataclass(frozen=True, kw_only=True)
class Workload:
    """Layers that share every part but the last, whose final bytes make each one unique."""

    shared: Sequence[EncodedPart]
    layers: Sequence[Layer]
    #: CPU-seconds of the one sha256 pass over every byte that computed the digests.
    sha256_cpu: float

    @property
    def total_bytes(self) -> int:
        """Layer bytes the registry receives."""
        shared = sum(part.size for part in self.shared)
        return sum(shared + layer.final.size for layer in self.layers)

    @property
    def parts(self) -> int:
        """UploadLayerPart requests the push makes."""
        return len(self.layers) * (len(self.shared) + 1)


def prepare(*, layer_count: int, layer_size: int, part_size: int) -> Workload:
    """Draw random parts, encode them once, and hash every layer once (the yardstick)."""
    *shared_sizes, final_size = part_sizes(layer_size, part_size)
    shared = [os.urandom(size) for size in shared_sizes]
    final_body = os.urandom(final_size - TAIL_BYTES)
    nonce = secrets.token_bytes(NONCE_BYTES)
    finals = [
        final_body + index.to_bytes(INDEX_BYTES, "big") + nonce for index in range(layer_count)
    ]
    hash_start = time.process_time()
    digests = []
    for final in finals:
        layer_hash = hashlib.sha256()
        for data in shared:
            layer_hash.update(data)
        layer_hash.update(final)
        digests.append("sha256:" + layer_hash.hexdigest())
    sha256_cpu = time.process_time() - hash_start
    return Workload(
        shared=[EncodedPart(data, pybase64.b64encode(data)) for data in shared],
        layers=[
            Layer(EncodedPart(final, pybase64.b64encode(final)), digest)
            for final, digest in zip(finals, digests, strict=True)
        ],
        sha256_cpu=sha256_cpu,
    )


def write_pass_cpu(workload: Workload, directory: Path) -> float:
    """CPU-seconds to write every layer once to a new file in ``directory`` (no fsync)."""
    start = time.process_time()
    for index, layer in enumerate(workload.layers):
        with (directory / f"layer-{index}").open("wb") as file:
            for part in [*workload.shared, layer.final]:
                file.write(part.data)
    return time.process_time() - start


async def push_all(client: Client, workload: Workload, *, concurrency: int) -> None:
    """Push every layer of ``workload``, ``concurrency`` layers at a time."""
    limiter = anyio.CapacityLimiter(concurrency)

    async def push(layer: Layer) -> None:
        async with limiter:
            await client.push_layer(layer, shared=workload.shared)

    async with anyio.create_task_group() as group:
        for layer in workload.layers:
            group.start_soon(push, layer)


async def run(*, total_mib: int, part_mib: int, layer_mib: int, concurrency: int) -> Result:
    """Start a registry, push the layers, and measure."""
    workload = prepare(
        layer_count=max(1, total_mib // layer_mib),
        layer_size=layer_mib * MiB,
        part_size=part_mib * MiB,
    )
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as data_dir:
        async with RegistryProcess(data_dir=Path(data_dir)) as registry:
            connector = aiohttp.TCPConnector(limit=concurrency)
            timeout = aiohttp.ClientTimeout(total=None, sock_read=REQUEST_TIMEOUT)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                client = Client(session, registry.endpoint_url + "/")
                create = json.dumps({"repositoryName": REPOSITORY}).encode()
                await client.call("CreateRepository", create)
                server_before = registry_cpu(registry.pid)
                client_before = time.process_time()
                wall_start = time.perf_counter()
                await push_all(client, workload, concurrency=concurrency)
                wall = time.perf_counter() - wall_start
                client_cpu = time.process_time() - client_before
                server_after = registry_cpu(registry.pid)
                async with session.get(registry.endpoint_url + "/_layerhoist/stats") as response:
                    stats = await response.json()
        # Measured while the registry's files still hold their pages, on the same filesystem:
        # what merely writing these bytes into the page cache costs on this machine.
        with tempfile.TemporaryDirectory(prefix="bench-write-", dir=data_dir) as write_dir:
            write_cpu = write_pass_cpu(workload, Path(write_dir))
    total_bytes = workload.total_bytes
    if stats["part_bytes_received"] != total_bytes:
        counted = stats["part_bytes_received"]
        raise RuntimeError(f"registry counted {counted} of {total_bytes} bytes")
    gibs = total_bytes / GiB
    server_user = server_after.user - server_before.user
    server_system = server_after.system - server_before.system
    server_cpu = server_user + server_system
    return Result(
        layers=len(workload.layers),
        parts=workload.parts,
        bytes_received=total_bytes,
        wall_seconds=wall,
        mb_per_second=total_bytes / MB / wall,
        server_cpu_seconds=server_cpu,
        server_cpu_per_gib=server_cpu / gibs,
        server_user_per_gib=server_user / gibs,
        server_system_per_gib=server_system / gibs,
        client_cpu_per_gib=client_cpu / gibs,
        sha256_cpu_per_gib=workload.sha256_cpu / gibs,
        server_to_sha256=server_cpu / workload.sha256_cpu,
        write_cpu_per_gib=write_cpu / gibs,
    )


def markdown(result: Result, *, part_mib: int, concurrency: int) -> str:
    """The figures as a small Markdown table."""
    rows = [
        (
            "received",
            f"{result.bytes_received / MiB:.0f} MiB in {result.parts} parts "
            f"({result.layers} layers, {part_mib} MiB parts, {concurrency} at once)",
        ),
        ("wall time", f"{result.wall_seconds:.2f} s"),
        ("throughput", f"{result.mb_per_second:.0f} MB/s"),
        (
            "server CPU",
            f"{result.server_cpu_per_gib:.2f} s/GiB (user {result.server_user_per_gib:.2f}, "
            f"system {result.server_system_per_gib:.2f})",
        ),
        ("client CPU", f"{result.client_cpu_per_gib:.2f} s/GiB"),
        ("one sha256 pass", f"{result.sha256_cpu_per_gib:.2f} s/GiB"),
        ("server CPU / sha256", f"{result.server_to_sha256:.2f}x"),
        ("one file write pass (page cache)", f"{result.write_cpu_per_gib:.2f} s/GiB"),
    ]
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mib", type=int, default=512, help="layer bytes to push")
    parser.add_argument("--part-mib", type=int, default=10, help="UploadLayerPart size")
    parser.add_argument("--layer-mib", type=int, default=64, help="size of each layer")
    parser.add_argument("--concurrency", type=int, default=4, help="layers pushed at once")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if min(args.total_mib, args.part_mib, args.layer_mib, args.concurrency) < 1:
        parser.error("sizes and concurrency must be positive")
    result = anyio.run(
        lambda: run(
            total_mib=args.total_mib,
            part_mib=args.part_mib,
            layer_mib=args.layer_mib,
            concurrency=args.concurrency,
        )
    )
    print(markdown(result, part_mib=args.part_mib, concurrency=args.concurrency))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
