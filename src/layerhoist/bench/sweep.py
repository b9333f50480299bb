"""The sweep of ``layerhoist bench``: every cell pushed in a client process, and the report.

Each combination of concurrency and part size (a *cell*) is pushed ``--repeat`` times after
one unrecorded warm-up push, each push a ``layerhoist bench --cell`` process of its own
(:mod:`layerhoist.bench.cell`) into a fresh scratch repository of the target
(:mod:`layerhoist.bench.targets`). The kernel's figures for the process
(:mod:`layerhoist.bench.measure`), the client's own report and the registry's counters over
the push make one run record (:mod:`layerhoist.bench.report`).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from rich.console import Console

from layerhoist.bench.cell import SETUP_OPERATIONS, CellSpec
from layerhoist.bench.measure import load_average, measure_child, own_peak_rss
from layerhoist.bench.options import BenchSettings, mib_list
from layerhoist.bench.report import (
    ServerUsage,
    blobs_in_flight,
    cells,
    environment,
    failed_record,
    render_table,
    run_record,
)
from layerhoist.bench.synth import SyntheticPlan, make_plan
from layerhoist.bench.targets import Counters, EmbeddedTarget, RemoteTarget, Target
from layerhoist.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from layerhoist.refs import parse_source
from layerhoist.registry.launcher import RegistryProcess
from layerhoist.sources import open_source
from layerhoist.units import MiB, format_bytes

#: Registry counters of the repository set-up before each push (its DescribeRepositories finds
#: nothing, as expected): left out of the push's figures.
SETUP_COUNTERS = SETUP_OPERATIONS | {"RepositoryNotFoundException"}
#: The process of one measured push.
CELL_COMMAND = (sys.executable, "-m", "layerhoist", "bench", "--cell")
#: Seconds between a client's progress lines.
PROGRESS_INTERVAL = 2.0
#: Seconds to wait for the embedded registry's admin endpoint.
STATS_TIMEOUT = 10.0


class _Interrupted(Exception):
    """A client was stopped by SIGINT: the user pressed Ctrl-C."""


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


class Bench:
    """One sweep: its settings, the report it fills as runs finish, and where it says so."""

    def __init__(self, settings: BenchSettings, *, progress: Console | None) -> None:
        self.settings = settings
        self.progress = progress
        self.report: dict[str, Any] = {
            "layerhoist_bench": 1,
            "interrupted": False,
            "environment": environment(),
            "settings": settings.to_json() | {"target": None},
            "workload": None,
            "runs": [],
            "cells": [],
            "peak_rss_bytes": {},
        }

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.print(text, highlight=False)

    async def run(self) -> None:
        """Prepare the workload, open the target, warm up and sweep."""
        settings = self.settings
        plan = await self._workload()
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=STATS_TIMEOUT)
        ) as http:
            if settings.dest is None:
                assert settings.profile is not None
                with tempfile.TemporaryDirectory(prefix="layerhoist-bench-") as scratch:
                    args = settings.registry_args() or []
                    async with RegistryProcess(data_dir=Path(scratch), args=args) as registry:
                        target = EmbeddedTarget(registry, http, settings.profile, args)
                        try:
                            await self._sweep(target, plan)
                        finally:
                            self.report["peak_rss_bytes"]["registry"] = target.peak_rss()
            else:
                remote = RemoteTarget(settings, settings.dest, http)
                try:
                    await self._sweep(remote, plan)
                finally:
                    if not settings.keep and remote.created:
                        with anyio.CancelScope(shield=True):
                            failed = await remote.delete_scratch()
                        self.report["scratch_not_deleted"] = failed
                        for line in failed:
                            self._say(f"could not delete scratch repository {line}")

    async def _workload(self) -> SyntheticPlan | None:
        settings = self.settings
        if settings.source is not None:
            source = open_source(parse_source(settings.source))
            try:
                images = await source.load()
            finally:
                await source.aclose()
            blobs = {d.digest: d.size for image in images for d in image.blobs()}
            self.report["workload"] = {
                "description": f"{settings.source}: {len(images)} images, {len(blobs)} blobs, "
                f"{format_bytes(sum(blobs.values()))}",
                "images": len(images),
                "blobs": len(blobs),
                "bytes": sum(blobs.values()),
            }
            return None
        self._say(f"hashing {settings.images * settings.layers} synthetic layers ...")
        plan = await make_plan(
            seed=settings.seed,
            images=settings.images,
            layers=settings.layers,
            sizes=settings.sizes,
            workers=os.cpu_count() or 1,
        )
        self.report["workload"] = {
            "description": f"{_count(settings.images, 'image')} x "
            f"{_count(settings.layers, 'layer')} of "
            f"{mib_list(settings.sizes)} ({format_bytes(plan.layer_bytes)} of synthetic layers, "
            f"seed {settings.seed})",
            "images": settings.images,
            "blobs": plan.layer_count + settings.images,
            "bytes": plan.layer_bytes,
        }
        return plan

    async def _sweep(self, target: Target, plan: SyntheticPlan | None) -> None:
        settings = self.settings
        self.report["settings"]["target"] = target.description
        self._say(f"target: {target.description}")
        cells_ = list(itertools.product(settings.concurrency, settings.part_sizes))
        # Repeat 0 is the warm-up: pushed like the others, never recorded.
        warmup = [(max(settings.concurrency), settings.part_sizes[0], 0)] if settings.warmup else []
        todo = warmup + [
            (concurrency, part_size, repeat)
            for repeat in range(1, settings.repeat + 1)
            for concurrency, part_size in cells_
        ]
        total = len(cells_) * settings.repeat
        for concurrency, part_size, repeat in todo:
            shape = f"{blobs_in_flight(concurrency)}, {part_size / MiB:g} MiB parts"
            if repeat:
                number = len(self.report["runs"]) + 1
                self._say(f"run {number}/{total}: {shape}, repeat {repeat}/{settings.repeat}")
            else:
                self._say(f"warm-up push, not recorded: {shape}")
            record = await self._push(
                target,
                plan,
                concurrency=concurrency,
                part_size=part_size,
                name=f"c{concurrency}-p{part_size}-r{repeat}",
                repeat=repeat,
            )
            if record["ok"]:
                self._say(
                    f"  {record['throughput_mb_s']:.1f} MB/s in {record['seconds']:.1f}s; "
                    f"limited by {record['limit']}"
                )
            else:
                self._say(f"  FAILED: {record['error']}")
            started = "limit" in record
            if repeat or not started:
                self.report["runs"].append(record)
            if not started:
                self._say("stopping: the client could not start a push")
                return

    async def _push(
        self,
        target: Target,
        plan: SyntheticPlan | None,
        *,
        concurrency: int,
        part_size: int,
        name: str,
        repeat: int,
    ) -> dict[str, Any]:
        settings = self.settings
        spec = CellSpec(
            destination=target.destination(name),
            plan=None if plan is None else plan.to_json(),
            source=settings.source,
            blob_concurrency=concurrency,
            part_size=part_size,
            pacing=settings.pacing,
            memory_budget=settings.memory_budget,
            endpoint_url=target.endpoint_url,
            region=settings.region,
            profile=settings.aws_profile,
            registry_id=settings.registry_id,
            progress_interval=None if settings.quiet else PROGRESS_INTERVAL,
            label="    ",
        )
        before = await target.counters()
        output, usage = await measure_child(
            CELL_COMMAND,
            env=target.env,
            stdin=spec.to_json().encode(),
        )
        if usage.exit_code in (EXIT_INTERRUPTED, -signal.SIGINT):
            raise _Interrupted
        after = await target.counters()
        try:
            client = json.loads(output)
        except ValueError:
            client = {"error": f"the client exited with code {usage.exit_code} and no report"}
        if "ok" not in client:
            return failed_record(
                concurrency=concurrency,
                part_size=part_size,
                repeat=repeat,
                error=client["error"],
                usage=usage,
            )
        profile = settings.profile
        return run_record(
            client,
            usage,
            server=_server_usage(before, after),
            concurrency=concurrency,
            part_size=part_size,
            repeat=repeat,
            bandwidth=None if profile is None else profile.bandwidth,
            latency_ms=None if profile is None else profile.latency_ms,
            cpus=os.cpu_count() or 1,
        )

    def finish(self) -> None:
        """Group the runs into cells and record the peak RSS the kernel saw."""
        report = self.report
        report["cells"] = cells(report["runs"])
        report["environment"]["load_average_at_end"] = load_average()
        clients = [run["client"]["peak_rss_bytes"] for run in report["runs"]]
        report["peak_rss_bytes"].update(
            clients=max(clients, default=None),
            bench_process=own_peak_rss(),
            process_tree=max(own_peak_rss(), own_peak_rss(children=True)),
        )


def _delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {
        key: value - before.get(key, 0)
        for key, value in after.items()
        if value != before.get(key, 0)
    }


def _without_setup(counters: Mapping[str, int]) -> dict[str, int]:
    return {key: value for key, value in counters.items() if key not in SETUP_COUNTERS}


def _server_usage(
    before: Counters,
    after: Counters,
) -> ServerUsage | None:
    stats_before, cpu_before, loop_before = before
    stats_after, cpu_after, loop_after = after
    if stats_before is None or stats_after is None:
        return None
    return ServerUsage(
        cpu_seconds=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        loop_cpu_seconds=None
        if loop_before is None or loop_after is None
        else loop_after - loop_before,
        part_bytes_received=stats_after["part_bytes_received"]
        - stats_before["part_bytes_received"],
        requests=_without_setup(_delta(stats_after["requests"], stats_before["requests"])),
        errors=_without_setup(_delta(stats_after["errors"], stats_before["errors"])),
    )


def run_sweep(settings: BenchSettings) -> int:
    """Sweep as ``settings`` say, print the table, write the JSON and the chart; the exit code.

    A run that failed, or whose bytes the registry counted otherwise, makes it
    :data:`~layerhoist.exits.EXIT_FAILED`; Ctrl-C still reports the runs that finished.
    """
    stderr = Console(stderr=True, soft_wrap=True)
    bench = Bench(settings, progress=None if settings.quiet else stderr)
    try:
        anyio.run(bench.run, backend="asyncio")
    except (KeyboardInterrupt, _Interrupted):
        bench.report["interrupted"] = True
    bench.finish()
    report = bench.report
    render_table(report, Console(soft_wrap=False, width=max(Console().width, 150)))
    if settings.json is not None:
        settings.json.write_text(json.dumps(report, indent=2) + "\n")
    if settings.plot is not None:
        # matplotlib takes a second to import: only when a chart is asked for.
        from layerhoist.bench.plot import plot_sweep

        plot_sweep(report, settings.plot)
    if report["interrupted"]:
        return EXIT_INTERRUPTED
    failed = any(
        not r["ok"] or (r.get("bytes_check") or {}).get("equal") is False for r in report["runs"]
    )
    return EXIT_FAILED if failed else EXIT_OK
