"""Charts of ``layerhoist bench`` results, drawn with matplotlib's Agg backend (no display needed).

:func:`plot_sweep` draws what a sweep found: throughput and p99 part latency against
concurrency, one line per part size (the bars on the throughput line span the fastest and
slowest repeat). :func:`plot_comparison` draws the side-by-side bars of
``benchmarks/compare.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

# Before pyplot is imported: a chart is a file, never a window.
matplotlib.use("Agg")

import matplotlib.pyplot as plt

from layerhoist.units import MiB

MS_PER_SECOND = 1000.0
DPI = 120
SWEEP_SIZE = (11.0, 4.5)
COMPARISON_SIZE = (8.0, 3.5)
#: Error-bar cap width in points.
CAP_SIZE = 4
MARKER = "o"
BASE_2 = 2
#: Room to the right of the longest bar for its label, as a multiple of its length.
LABEL_ROOM = 1.25


def plot_sweep(report: Mapping[str, Any], path: Path) -> None:
    """Write a PNG of ``report`` (the bench's JSON form) to ``path``."""
    lines: dict[int, list[Mapping[str, Any]]] = {}
    for cell in report["cells"]:
        if "median_run" in cell:
            lines.setdefault(cell["part_size"], []).append(cell)
    figure, (speed, latency) = plt.subplots(1, 2, figsize=SWEEP_SIZE)
    for part_size, members in sorted(lines.items()):
        members = sorted(members, key=lambda cell: cell["concurrency"])
        x = [cell["concurrency"] for cell in members]
        median = [cell["throughput_mb_s"]["median"] for cell in members]
        low = [m - cell["throughput_mb_s"]["min"] for m, cell in zip(median, members, strict=True)]
        high = [cell["throughput_mb_s"]["max"] - m for m, cell in zip(median, members, strict=True)]
        label = f"{part_size / MiB:g} MiB parts"
        speed.errorbar(x, median, yerr=[low, high], marker=MARKER, capsize=CAP_SIZE, label=label)
        p99 = [cell["median_run"]["part_latency"]["p99"] for cell in members]
        latency.plot(
            x,
            [MS_PER_SECOND * v if v is not None else float("nan") for v in p99],
            marker=MARKER,
            label=label,
        )
    concurrency = sorted({cell["concurrency"] for cell in report["cells"]})
    for axes, ylabel in (
        (speed, "throughput (MB/s of layer bytes)"),
        (latency, "p99 UploadLayerPart latency (ms)"),
    ):
        axes.set_xscale("log", base=BASE_2)
        axes.set_xticks(concurrency, [str(c) for c in concurrency])
        axes.set_xlabel("blobs in flight (concurrency)")
        axes.set_ylabel(ylabel)
        axes.set_ylim(bottom=0)
        axes.grid(visible=True, alpha=0.3)
        if lines:
            axes.legend()
    settings = report["settings"]
    workload = report["workload"]["description"] if report.get("workload") else ""
    figure.suptitle(f"layerhoist bench — {settings['target']}\n{workload}", fontsize="medium")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_comparison(
    names: Sequence[str], throughput: Sequence[float], *, title: str, path: Path
) -> None:
    """Write a PNG of horizontal bars: the throughput (MB/s) of each named tool."""
    figure, axes = plt.subplots(figsize=COMPARISON_SIZE)
    positions = range(len(names))
    bars = axes.barh(positions, throughput)
    axes.bar_label(bars, labels=[f"{value:.1f} MB/s" for value in throughput], padding=3)
    axes.set_yticks(list(positions), list(names))
    axes.invert_yaxis()
    axes.set_xlabel("throughput (MB/s of layer bytes)")
    axes.set_xlim(right=max(throughput, default=1.0) * LABEL_ROOM)
    axes.set_title(title, fontsize="medium")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
