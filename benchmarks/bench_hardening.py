"""What hostile sockets and bodies cost the embedded registry (issue 9): memory and time.

The registry runs alone as ``python -m layerhoist.registry`` on loopback; its memory is read
from /proc/PID/status (VmRSS now, VmHWM the peak). Three figures, each from a fresh registry:

* RSS growth while ``--sockets`` connections each declare a 1 MiB UploadLayerPart body and
  send one byte (goal: under 64 MiB);
* the time the registry takes to close ``--half-header-sockets`` connections that sent half
  a request head, with ``--header-timeout`` configured (the timeout itself is most of it);
* RSS growth (peak) for a 28 MB ``[{},{},…]`` BatchCheckLayerAvailability body, sent with a
  Content-Length and sent chunked, ``--copies`` at once (goal: under 64 MiB).

    .venv/bin/python benchmarks/bench_hardening.py [--sockets 20] [--half-header-sockets 100]
        [--header-timeout 1] [--copies 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import anyio
from anyio.abc import SocketStream

from layerhoist.registry.launcher import RegistryProcess

KiB = 1024
MiB = 1024 * KiB
TARGET_PREFIX = "SpencerFrontendService."
#: The body each hostile socket declares, and the amplification body's size.
DECLARED_BODY = MiB
AMPLIFICATION_BODY = 28_000_000
#: Bytes of the amplification body sent per write.
SEND_CHUNK = 256 * KiB
#: Seconds the registry gets to take in what was sent before its memory is read.
SETTLE_SECONDS = 1.0
#: Seconds any one step may take before the benchmark gives up.
STEP_TIMEOUT = 120.0
GOAL_MIB = 64


def memory_kib(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of process ``pid``, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def head(operation: str, *, length: int | None) -> bytes:
    """The request line and headers of an ECR API POST (no body)."""
    lines = [
        "POST / HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/x-amz-json-1.1",
        f"X-Amz-Target: {TARGET_PREFIX}{operation}",
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked",
        # The answer is read to the end of the connection.
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def connect(registry: RegistryProcess) -> SocketStream:
    parts = urlsplit(registry.endpoint_url)
    assert parts.hostname is not None and parts.port is not None
    return await anyio.connect_tcp(parts.hostname, parts.port)


async def warm_up(registry: RegistryProcess) -> None:
    """One ordinary request, so the baseline includes what serving anything allocates."""
    async with await connect(registry) as stream:
        body = b"{}"
        await stream.send(head("DescribeRepositories", length=len(body)) + body)
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass


async def declared_sockets(data_dir: Path, *, sockets: int) -> tuple[float, float]:
    """RSS growth and peak growth (MiB) with ``sockets`` declaring a MiB and sending a byte."""
    async with RegistryProcess(data_dir=data_dir) as registry:
        await warm_up(registry)
        rss_before, peak_before = memory_kib(registry.pid)
        streams = []
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                for _ in range(sockets):
                    stream = await connect(registry)
                    streams.append(stream)
                    await stream.send(head("UploadLayerPart", length=DECLARED_BODY) + b"{")
            await anyio.sleep(SETTLE_SECONDS)
            rss_after, peak_after = memory_kib(registry.pid)
        finally:
            for stream in streams:
                await stream.aclose()
    return (rss_after - rss_before) / KiB, (peak_after - peak_before) / KiB


async def half_headers(data_dir: Path, *, sockets: int, header_timeout: float) -> float:
    """Seconds from sending half a request head on ``sockets`` connections to the last close."""
    args = ["--header-timeout", f"{header_timeout:g}"]
    async with RegistryProcess(data_dir=data_dir, args=args) as registry:
        streams = [await connect(registry) for _ in range(sockets)]
        started = time.perf_counter()
        for stream in streams:
            await stream.send(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Ta")

        async def closed(stream: SocketStream) -> None:
            try:
                while await stream.receive():
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
            finally:
                await stream.aclose()

        with anyio.fail_after(STEP_TIMEOUT):
            async with anyio.create_task_group() as tasks:
                for stream in streams:
                    tasks.start_soon(closed, stream)
        return time.perf_counter() - started


async def send_amplification(registry: RegistryProcess, *, chunked: bool) -> None:
    """Send the whole 28 MB ``[{},{},…]`` body, then read whatever answer comes."""
    item = b"{},"
    body = b"[" + item * ((AMPLIFICATION_BODY - 2) // len(item)) + b"{}]"
    async with await connect(registry) as stream:
        try:
            await stream.send(
                head("BatchCheckLayerAvailability", length=None if chunked else len(body))
            )
            for start in range(0, len(body), SEND_CHUNK):
                piece = body[start : start + SEND_CHUNK]
                if chunked:
                    piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
                await stream.send(piece)
            if chunked:
                await stream.send(b"0\r\n\r\n")
            while await stream.receive():
                pass
        # The registry refuses the body early and may close before all of it is sent.
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            pass


async def amplification(data_dir: Path, *, copies: int, chunked: bool) -> float:
    """Peak RSS growth (MiB) while ``copies`` amplification bodies arrive at once."""
    async with RegistryProcess(data_dir=data_dir) as registry:
        await warm_up(registry)
        _, peak_before = memory_kib(registry.pid)
        with anyio.fail_after(STEP_TIMEOUT):
            async with anyio.create_task_group() as tasks:
                for _ in range(copies):
                    tasks.start_soon(lambda: send_amplification(registry, chunked=chunked))
        await anyio.sleep(SETTLE_SECONDS)
        _, peak_after = memory_kib(registry.pid)
    return (peak_after - peak_before) / KiB


async def run(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """Every figure, as (what, value, goal) rows."""
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-hardening-") as scratch:
        root = Path(scratch)
        rss, peak = await declared_sockets(root / "declared", sockets=args.sockets)
        rows.append(
            (
                f"RSS growth, {args.sockets} sockets declaring 1 MiB bodies (peak growth)",
                f"{rss:.1f} MiB ({peak:.1f} MiB)",
                f"< {GOAL_MIB} MiB",
            )
        )
        seconds = await half_headers(
            root / "half", sockets=args.half_header_sockets, header_timeout=args.header_timeout
        )
        rows.append(
            (
                f"time to close {args.half_header_sockets} half-header sockets "
                f"(--header-timeout {args.header_timeout:g})",
                f"{seconds:.2f} s",
                "the timeout, plus little",
            )
        )
        for chunked in (False, True):
            for copies in (1, args.copies):
                growth = await amplification(
                    root / f"amplification-{chunked}-{copies}", copies=copies, chunked=chunked
                )
                framing = "chunked" if chunked else "with Content-Length"
                rows.append(
                    (
                        f"peak RSS growth, 28 MB [{{}},…] body {framing}, {copies} at once",
                        f"{growth:.1f} MiB",
                        f"< {GOAL_MIB} MiB",
                    )
                )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its figures as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sockets", type=int, default=20)
    parser.add_argument("--half-header-sockets", type=int, default=100)
    parser.add_argument("--header-timeout", type=float, default=1.0)
    parser.add_argument("--copies", type=int, default=4)
    args = parser.parse_args(argv)
    rows = anyio.run(run, args)
    print("| figure | value | goal |")
    print("|---|---|---|")
    for what, value, goal in rows:
        print(f"| {what} | {value} | {goal} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
