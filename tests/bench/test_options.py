"""``layerhoist bench`` options: a parser cheap to build, and ``--plot`` without matplotlib.

Both run in a fresh interpreter: this one has long imported everything the bench uses.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from layerhoist.exits import EXIT_USAGE

#: Packages that take a noticeable part of a second to import: never for building the parser.
HEAVY_PACKAGES = {"aiohttp", "aioboto3", "aiobotocore", "boto3", "botocore", "rich", "matplotlib"}
#: What runs a bench (the registry, the sweep and its parts, the pipeline): imported by ``run``.
RUN_ONLY_MODULES = (
    "layerhoist.registry",
    "layerhoist.transfer.pipeline",
    "layerhoist.destinations.ecr.destination",
    "layerhoist.bench.sweep",
    "layerhoist.bench.cell",
    "layerhoist.bench.targets",
    "layerhoist.bench.measure",
    "layerhoist.bench.report",
    "layerhoist.bench.plot",
)
#: Prints every module loaded, then those loaded by the bench alone (after the package root,
#: whose own start-up is the command line's concern), separated by a blank line.
IMPORTS_OF_THE_PARSER = """
import argparse, sys
import layerhoist
before = set(sys.modules)
import layerhoist.bench
layerhoist.bench.configure_parser(argparse.ArgumentParser())
print(*sorted(sys.modules), "", *sorted(set(sys.modules) - before), sep="\\n")
"""
#: The layerhoist command with matplotlib unimportable, as when it is not installed: a
#: ``None`` in ``sys.modules`` makes both ``import`` and ``importlib.util.find_spec`` fail.
WITHOUT_MATPLOTLIB = """
import sys
sys.modules["matplotlib"] = None
from layerhoist.cli import main
sys.exit(main())
"""


def test_building_the_parser_imports_nothing_heavy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_OF_THE_PARSER], capture_output=True, text=True, check=True
    )
    everything, _, by_bench = done.stdout.partition("\n\n")
    assert {name.split(".")[0] for name in everything.split()} & HEAVY_PACKAGES == set()
    assert [name for name in by_bench.split() if name.startswith(RUN_ONLY_MODULES)] == []


def test_plot_without_matplotlib_says_how_to_install_it_before_any_push(tmp_path: Path) -> None:
    chart = tmp_path / "chart.png"
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, "bench", "--plot", str(chart)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == EXIT_USAGE
    assert done.stderr.splitlines() == [
        "layerhoist: error: --plot needs matplotlib, which is not installed: "
        "pip install 'layerhoist[bench]'"
    ]
    # No table and no chart: no cell ran.
    assert done.stdout == ""
    assert not chart.exists()
