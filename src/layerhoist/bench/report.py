"""What ``layerhoist bench`` measured: one record per run, the limiting factor, table and JSON.

A run is one push in a client process of its own. Its record joins three views of it:

- the client's own report (:mod:`layerhoist.bench.cell`): bytes, seconds, requests and latency
  per operation, retries by cause, CPU of the push, what the pacer did;
- the kernel's, read by the parent (:mod:`layerhoist.bench.measure`): CPU of the whole
  process and peak RSS;
- the embedded registry's, when there is one: its counters (bytes received in parts,
  requests) and its CPU time, as deltas over the run.

``cpu_seconds_per_gib`` is the client's CPU over the push, less what generating synthetic
layers cost (a real source reads files instead), per GiB of layer bytes sent.

The limiting factor is named from *pressures*, each the fraction of a ceiling the run used:

- ``link``: layer bytes per second over what the connections in use can carry. The wire
  carries parts as base64, so a connection of ``B`` bytes/s moves ``B * 3/4`` of layer bytes.
- ``quota``: per paced operation, requests per second over the client's paced rate (a fraction
  of the published quota); any throttling by the service counts as full pressure.
- ``memory_budget``: when the budget of layer bytes in memory filled up (no room for one more
  part), the share of blob workers that were not sending a part on average: they were waiting
  for memory (``parts_on_wire`` is the average number of UploadLayerPart requests in flight).
- ``client_loop`` / ``server_loop``: CPU of the event-loop thread over one core (each side
  runs one event loop; hashing, encoding and decoding run in worker threads).
- ``machine``: busy time of every core of this machine over the push, whoever ran: the client,
  the embedded registry, and any other work (which the label calls "other": a busy machine
  skews every figure).

The largest pressure, each against its saturation point (:data:`SATURATED`; for the machine
:data:`MACHINE_SATURATED`), names the limit. When none is saturated, the run is bound by request
round trips at its concurrency (on a network without latency, by the turnaround of each
request), and the largest pressure is named as the next limit.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from rich.console import Console
from rich.table import Table

from layerhoist import __version__
from layerhoist.bench.measure import ProcessUsage, cpu_model, load_average, memory_total
from layerhoist.destinations.ecr.limits import BASE64_EXPANSION
from layerhoist.units import MB, GiB, MiB

MS_PER_SECOND = 1000.0
#: A pressure at least this high means that resource is what the run waited on.
SATURATED = 0.6
#: The whole machine counts as saturated only nearly full: work of other processes raises its
#: pressure without slowing a push that has cores to spare.
MACHINE_SATURATED = 0.9
#: Throttled requests make the quota pressure this high whatever the request rate.
THROTTLED_PRESSURE = 1.0
PART_OPERATION = "UploadLayerPart"
MACHINE = "machine CPU"
PERCENTILES = ("p50", "p95", "p99")
#: Packages whose versions go into the environment of a report.
REPORTED_PACKAGES = ("aioboto3", "aiobotocore", "botocore", "aiohttp", "anyio", "pybase64")


@dataclass(frozen=True, kw_only=True)
class ServerUsage:
    """Deltas of the embedded registry over one run; ``None`` fields were not measurable."""

    cpu_seconds: float | None
    loop_cpu_seconds: float | None
    part_bytes_received: int
    requests: Mapping[str, int]
    errors: Mapping[str, int]


def blobs_in_flight(concurrency: int) -> str:
    """``'1 blob in flight'``, ``'4 blobs in flight'``."""
    return f"{concurrency} blob{'' if concurrency == 1 else 's'} in flight"


def _connections(client: Mapping[str, Any], concurrency: int) -> int:
    """Blobs the run could have in flight at once: fewer than asked when it had fewer blobs."""
    return max(1, min(concurrency, int(client["blobs_uploaded"])))


def _share(numerator: float, denominator: float | None) -> float | None:
    if denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def pressures(
    client: Mapping[str, Any],
    *,
    concurrency: int,
    bandwidth: float | None,
    server: ServerUsage | None,
    cpus: int,
) -> dict[str, Any]:
    """The pressures of one run (see the module docstring); ``None`` where not measurable."""
    seconds = client["seconds"]
    connections = _connections(client, concurrency)
    link = _share(
        client["layer_bytes"] / seconds,
        None if bandwidth is None else connections * bandwidth / BASE64_EXPANSION,
    )
    quota: dict[str, float] = {}
    for operation, stats in client["pacing"].items():
        if stats["requests"] == 0:
            continue
        rate = stats["requests"] / seconds
        share = rate / stats["paced_rate"]
        quota[operation] = max(share, THROTTLED_PRESSURE) if stats["throttles"] else share
    server_cpu = None if server is None else server.cpu_seconds
    machine_cpu = client["machine_busy_seconds"]
    if machine_cpu is None:
        machine_cpu = client["cpu_seconds"] + (server_cpu or 0.0)
    memory = client["memory"]
    on_wire = client["requests"].get(PART_OPERATION, {}).get("seconds", 0.0) / seconds
    # A budget with no room left for one more part makes blob workers wait for memory.
    filled = memory["held_peak_bytes"] + memory["part_cost_bytes"] > memory["budget_bytes"]
    return {
        "link": link,
        "quota": quota,
        "parts_on_wire": on_wire,
        "memory_budget": max(0.0, 1.0 - on_wire / connections) if filled else 0.0,
        "client_loop": client["loop_cpu_seconds"] / seconds,
        "server_loop": (
            None
            if server is None or server.loop_cpu_seconds is None
            else server.loop_cpu_seconds / seconds
        ),
        "machine": machine_cpu / seconds / cpus,
    }


def limiting_factor(
    pressure: Mapping[str, Any],
    *,
    client: Mapping[str, Any],
    server: ServerUsage | None,
    concurrency: int,
    bandwidth: float | None,
    latency_ms: float | None,
    cpus: int,
) -> str:
    """Name the resource the run was bound by, with the figure that shows it."""
    seconds = client["seconds"]
    connections = _connections(client, concurrency)
    # (pressure, what, the figures that show it)
    candidates: list[tuple[float, str, str]] = []
    if pressure["link"] is not None and bandwidth is not None:
        candidates.append(
            (
                pressure["link"],
                "per-connection bandwidth",
                f"{pressure['link']:.0%} of {connections} x {bandwidth / MB:g} MB/s",
            )
        )
    if pressure["quota"]:
        operation = max(pressure["quota"], key=pressure["quota"].get)
        stats = client["pacing"][operation]
        throttled = f", {stats['throttles']} throttled" if stats["throttles"] else ""
        candidates.append(
            (
                pressure["quota"][operation],
                f"request-rate quota of {operation}",
                f"{stats['requests'] / seconds:.1f}/s, paced at {stats['paced_rate']:.0f}/s "
                f"of {stats['quota']:.0f}/s{throttled}",
            )
        )
    memory = client["memory"]
    candidates.append(
        (
            pressure["memory_budget"],
            "memory budget",
            f"{memory['held_peak_bytes'] / MiB:.0f} of {memory['budget_bytes'] / MiB:.0f} MiB "
            f"held; {pressure['parts_on_wire']:.1f} parts on the wire, "
            f"{blobs_in_flight(connections)}",
        )
    )
    candidates.append(
        (
            pressure["client_loop"],
            "client CPU",
            f"event loop {pressure['client_loop']:.0%} busy",
        )
    )
    if pressure["server_loop"] is not None:
        candidates.append(
            (
                pressure["server_loop"],
                "server CPU",
                f"event loop {pressure['server_loop']:.0%} busy",
            )
        )
    client_cores = client["cpu_seconds"] / seconds
    server_cores = (
        None if server is None or server.cpu_seconds is None else server.cpu_seconds / seconds
    )
    shares = f"client {client_cores:.1f}"
    if server_cores is not None:
        shares += f" + server {server_cores:.1f}"
    if client["machine_busy_seconds"] is not None:
        other = pressure["machine"] * cpus - client_cores - (server_cores or 0.0)
        shares += f" + other {max(0.0, other):.1f}"
    candidates.append((pressure["machine"], MACHINE, f"{shares} of {cpus} cores"))
    # Each pressure against its own saturation point: the machine's is higher.
    share, what, figures = max(
        candidates,
        key=lambda c: c[0] / (MACHINE_SATURATED if c[1] == MACHINE else SATURATED),
    )
    if share >= (MACHINE_SATURATED if what == MACHINE else SATURATED):
        return f"{what} ({figures})"
    in_flight = blobs_in_flight(concurrency)
    if latency_ms:
        bound = f"round trips ({in_flight}, {latency_ms:g} ms each)"
    elif latency_ms is None:
        bound = f"round trips ({in_flight})"
    else:
        bound = f"request turnaround ({in_flight})"
    return f"{bound}; next: {what} ({figures})"


def run_record(
    client: Mapping[str, Any],
    usage: ProcessUsage,
    *,
    server: ServerUsage | None,
    concurrency: int,
    part_size: int,
    repeat: int,
    bandwidth: float | None,
    latency_ms: float | None,
    cpus: int,
) -> dict[str, Any]:
    """The JSON record of one finished run."""
    seconds = client["seconds"]
    parts = client["requests"].get(PART_OPERATION, {})
    push_cpu = client["cpu_seconds"] - client["source_cpu_seconds"]
    pressure = pressures(
        client, concurrency=concurrency, bandwidth=bandwidth, server=server, cpus=cpus
    )
    received = None if server is None else server.part_bytes_received
    return {
        "concurrency": concurrency,
        "part_size": part_size,
        "repeat": repeat,
        "ok": client["ok"],
        "error": client["error"],
        "seconds": round(seconds, 4),
        "images_pushed": client["images_pushed"],
        "blobs_uploaded": client["blobs_uploaded"],
        "layer_bytes": client["layer_bytes"],
        "bytes_sent": client["bytes_sent"],
        "throughput_mb_s": round(client["layer_bytes"] / seconds / MB, 3),
        "blobs_per_s": round(client["blobs_uploaded"] / seconds, 3),
        "requests": client["requests"],
        "part_latency": {p: parts.get(p) for p in PERCENTILES},
        "retries": client["retries"],
        "client": {
            "cpu_seconds": round(client["cpu_seconds"], 4),
            "loop_cpu_seconds": round(client["loop_cpu_seconds"], 4),
            "source_cpu_seconds": round(client["source_cpu_seconds"], 4),
            "cpu_seconds_per_gib": round(push_cpu / (client["bytes_sent"] / GiB), 3)
            if client["bytes_sent"]
            else None,
            "machine_busy_seconds": client["machine_busy_seconds"],
            "process_cpu_seconds": round(usage.cpu_seconds, 4),
            "peak_rss_bytes": usage.peak_rss_bytes,
            "exit_code": usage.exit_code,
        },
        "memory": client["memory"],
        "pacing": client["pacing"],
        "server": None
        if server is None
        else {
            "cpu_seconds": server.cpu_seconds,
            "loop_cpu_seconds": server.loop_cpu_seconds,
            "part_bytes_received": server.part_bytes_received,
            "requests": dict(server.requests),
            "errors": dict(server.errors),
        },
        "bytes_check": None
        if received is None
        else {
            "registry_received": received,
            "bench_sent": client["bytes_sent"],
            "equal": received == client["bytes_sent"],
        },
        "pressure": pressure,
        "limit": limiting_factor(
            pressure,
            client=client,
            server=server,
            concurrency=concurrency,
            bandwidth=bandwidth,
            latency_ms=latency_ms,
            cpus=cpus,
        ),
    }


def failed_record(
    *, concurrency: int, part_size: int, repeat: int, error: str, usage: ProcessUsage
) -> dict[str, Any]:
    """The JSON record of a run whose client could not push."""
    return {
        "concurrency": concurrency,
        "part_size": part_size,
        "repeat": repeat,
        "ok": False,
        "error": error,
        "client": {
            "process_cpu_seconds": round(usage.cpu_seconds, 4),
            "peak_rss_bytes": usage.peak_rss_bytes,
            "exit_code": usage.exit_code,
        },
    }


def cells(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group runs by (concurrency, part size): each cell shows its median-throughput run.

    Every figure of a cell's row comes from that one real run; ``throughput_mb_s`` also
    gives the minimum and maximum over the cell's successful runs.
    """
    groups: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["concurrency"], run["part_size"]), []).append(run)
    result = []
    for (concurrency, part_size), members in sorted(groups.items()):
        good = sorted((r for r in members if r["ok"]), key=lambda r: r["throughput_mb_s"])
        cell: dict[str, Any] = {
            "concurrency": concurrency,
            "part_size": part_size,
            "runs": len(members),
            "failed_runs": len(members) - len(good),
        }
        if good:
            median = good[(len(good) - 1) // 2]
            speeds = [r["throughput_mb_s"] for r in good]
            cell.update(
                throughput_mb_s={
                    "median": statistics.median(speeds),
                    "min": speeds[0],
                    "max": speeds[-1],
                },
                median_run=median,
            )
        result.append(cell)
    return result


def environment() -> dict[str, Any]:
    """Versions, interpreter, operating system, CPU, memory and load of this machine."""
    versions: dict[str, str | None] = {
        "layerhoist": __version__,
        "python": platform.python_version(),
    }
    for package in REPORTED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": memory_total(),
        # Other work on the machine skews every figure: this says how busy it was.
        "load_average": load_average(),
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * MS_PER_SECOND:.0f}"


def _mib(nbytes: float) -> str:
    return f"{nbytes / MiB:g}"


def render_table(report: Mapping[str, Any], console: Console) -> None:
    """Print one row per cell (its median run) and the outside checks below it."""
    title = f"layerhoist bench: {report['settings']['target'] or 'no target opened'}"
    table = Table(title=title, title_justify="left")
    for heading in (
        "blobs\nin flight",
        "part\nMiB",
        "MB/s",
        "blobs/s",
        "part ms\np50/p95/p99",
        "requests",
        "retries",
        "CPU s\n/GiB",
        "peak\nRSS MB",
        "held/bound\nMiB",
        "limited by",
    ):
        table.add_column(heading, justify="left" if heading == "limited by" else "right")
    for cell in report["cells"]:
        run = cell.get("median_run")
        if run is None:
            table.add_row(str(cell["concurrency"]), _mib(cell["part_size"]), *["-"] * 8, "failed")
            continue
        speed = cell["throughput_mb_s"]
        spread = f"\n{speed['min']:.1f}-{speed['max']:.1f}" if cell["runs"] > 1 else ""
        latency = "/".join(_ms(run["part_latency"][p]) for p in PERCENTILES)
        requests = sum(op["requests"] for op in run["requests"].values())
        retries = sum(run["retries"].values())
        cpu = run["client"]["cpu_seconds_per_gib"]
        memory = run["memory"]
        table.add_row(
            str(cell["concurrency"]),
            _mib(cell["part_size"]),
            f"{speed['median']:.1f}{spread}",
            f"{run['blobs_per_s']:.1f}",
            latency,
            str(requests),
            str(retries),
            "-" if cpu is None else f"{cpu:.2f}",
            f"{run['client']['peak_rss_bytes'] / MB:.0f}",
            f"{memory['held_peak_bytes'] / MiB:.0f}/{memory['bound_bytes'] / MiB:.0f}",
            run["limit"],
        )
    console.print(table)
    for line in summary_lines(report):
        console.print(line, highlight=False)


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """The lines printed under the table: workload, outside checks, interruption."""
    workload = report["workload"]
    lines = [
        f"workload: {workload['description']}; "
        f"each row is the run with the median MB/s of {report['settings']['repeat']}",
    ]
    env = report["environment"]
    load = env.get("load_average")
    end = env.get("load_average_at_end")
    if load and end:
        lines.append(
            f"machine: {env['cpu_model']}, {env['cpu_count']} cores; 1-minute load average "
            f"{load[0]:.2f} at start, {end[0]:.2f} at end"
        )
    runs = report["runs"]
    checked = [run["bytes_check"] for run in runs if run.get("bytes_check")]
    if checked:
        differing = [c for c in checked if not c["equal"]]
        sent = sum(c["bench_sent"] for c in checked)
        received = sum(c["registry_received"] for c in checked)
        verdict = "equal" if not differing else f"DIFFERENT in {len(differing)} runs"
        lines.append(
            f"outside check: the registry received {received} part bytes, the bench sent "
            f"{sent}: {verdict}"
        )
    peaks = report["peak_rss_bytes"]
    if peaks.get("clients"):
        registry = peaks.get("registry")
        server = f", embedded registry {registry / MB:.0f} MB" if registry else ""
        lines.append(
            f"peak RSS: clients {peaks['clients'] / MB:.0f} MB, bench process "
            f"{peaks['bench_process'] / MB:.0f} MB{server}"
        )
    failed = [run for run in runs if not run["ok"]]
    for run in failed:
        lines.append(
            f"FAILED run (concurrency {run['concurrency']}, part {_mib(run['part_size'])} MiB, "
            f"repeat {run['repeat']}): {run['error']}"
        )
    if report["interrupted"]:
        lines.append(f"interrupted: partial report of {len(runs)} finished runs")
    return lines
