"""The client under faults, timed: a push riding out a registry outage, and Ctrl-C to exit.

1. ``outage``: ``layerhoist push`` of 4 images x 2 layers x 4 MiB to the embedded registry (a
   process of its own, 1 MB/s per connection so the push is still sending); once uploads have
   started the registry is killed (SIGKILL) and started again on the same port and data
   directory after ``--outage`` seconds. Reported: the push's exit code, its wall time, its
   retries and the longest stretch a request kept failing.
2. ``interrupt``: the same push against a registry that holds every request for its longest
   latency, so each worker waits on a stuck request; SIGINT once uploads have started.
   Reported: seconds from SIGINT to the process's exit, its exit code (130), and whether the
   registry holds any image afterwards (it must not).

    .venv/bin/python benchmarks/bench_faults.py [--outage SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from layerhoist.bench.targets import push_command
from layerhoist.registry.admin import STATS_PATH
from layerhoist.registry.launcher import RegistryProcess, client_env, free_port
from layerhoist.registry.simulation import MAX_LATENCY_MS
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.units import MiB

#: The outage the issue asks a push to ride out.
DEFAULT_OUTAGE_SECONDS = 20.0
IMAGES, LAYERS, LAYER_SIZE = 4, 2, 4 * MiB
#: Per-connection bandwidth of the registry: slow enough that every layer is in flight.
BANDWIDTH = "1MB/s"
POLL_SECONDS = 0.05
#: Bounds every wait of this script.
GUARD_SECONDS = 600.0


async def registry_stats(endpoint: str) -> dict[str, Any]:
    """The embedded registry's counters (``GET /_layerhoist/stats``): requests per operation,
    errors per code."""
    async with aiohttp.ClientSession() as session, session.get(endpoint + STATS_PATH) as answer:
        stats: dict[str, Any] = await answer.json()
        return stats


async def _uploads_started(endpoint: str) -> None:
    """Return once the registry (another process) has been asked to start a layer upload."""
    while True:
        if (await registry_stats(endpoint))["requests"].get("InitiateLayerUpload", 0) > 0:
            return
        await anyio.sleep(POLL_SECONDS)


async def outage(layout: Path, workdir: Path, seconds: float) -> dict[str, Any]:
    """Kill the registry mid-push for ``seconds``; the push's outcome."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    args = ["--port", str(port), "--bandwidth", BANDWIDTH]
    data_dir = workdir / "outage"
    started = time.monotonic()
    async with RegistryProcess(data_dir=data_dir, args=args) as first:
        command = push_command(layout, endpoint, "outage", "--json")
        async with await anyio.open_process(command, env=client_env()) as push:
            await _uploads_started(endpoint)
            os.kill(first.pid, signal.SIGKILL)
            await anyio.sleep(seconds)
            async with RegistryProcess(data_dir=data_dir, args=args):
                assert push.stdout is not None
                report = json.loads(b"".join([chunk async for chunk in push.stdout]))
                await push.wait()
    return {
        "outage_seconds": seconds,
        "exit_code": push.returncode,
        "wall_seconds": round(time.monotonic() - started, 1),
        "images_pushed": sum(image["status"] == "pushed" for image in report["images"]),
        "images": len(report["images"]),
        "retries": report["retries"]["total"],
        "retry_causes": report["retries"]["by_cause"],
        "longest_failing_seconds": report["retries"]["longest_seconds"],
    }


async def interrupt(layout: Path, workdir: Path) -> dict[str, Any]:
    """SIGINT while every request is held by the registry; the time to exit."""
    args = ["--bandwidth", BANDWIDTH]
    async with RegistryProcess(data_dir=workdir / "interrupt", args=args) as registry:
        endpoint = registry.endpoint_url
        command = push_command(layout, endpoint, "interrupt", "--json")
        async with await anyio.open_process(command, env=client_env()) as push:
            await _uploads_started(endpoint)
            # From now on every request waits the longest latency the registry allows.
            async with aiohttp.ClientSession() as session:
                update = {"latency_ms": MAX_LATENCY_MS}
                async with session.post(endpoint + "/_layerhoist/simulation", json=update):
                    pass
            await anyio.sleep(1.0)
            sent = time.monotonic()
            push.send_signal(signal.SIGINT)
            await push.wait()
            exit_seconds = time.monotonic() - sent
        stats = await registry_stats(endpoint)
    return {
        "exit_code": push.returncode,
        "sigint_to_exit_seconds": round(exit_seconds, 2),
        "images_put": stats["images_put"],
    }


async def main(argv: Sequence[str] | None = None) -> int:
    """Run both measurements and print their figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--outage", type=float, default=DEFAULT_OUTAGE_SECONDS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        layout = workdir / "layout"
        write_oci_layout(layout, images=IMAGES, layers_per_image=LAYERS, layer_size=LAYER_SIZE)
        with anyio.fail_after(GUARD_SECONDS):
            figures = {
                "outage": await outage(layout, workdir, args.outage),
                "interrupt": await interrupt(layout, workdir),
            }
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
