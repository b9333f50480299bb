"""Start-up cost of the ``layerhoist`` command, timed by hyperfine, for one tree or two.

Three commands, each run as a fresh process:

- ``layerhoist --version`` and ``layerhoist --help``: what every invocation pays before work;
- a one-blob push of a tiny image to the embedded registry, each run into a repository of its
  own (so every run initiates, uploads, completes and puts the image): the fixed cost of a push,
  its transfer being a few hundred bytes.

Beside them, once, the floor part by part: the interpreter starting with nothing imported,
importing aioboto3 alone, aioboto3 importing, opening a client and making one call (the least
a push through the AWS SDK pays before any work of its own), layerhoist copying the same
image into an OCI layout (its own fixed cost, no SDK), and the sequential boto3 baseline
(``baseline_boto3.py``) pushing the same image.

``--tree DIR`` (repeatable) runs the same commands with ``DIR/src`` first on ``PYTHONPATH``,
so an older checkout (``git worktree add ../before REV``) is measured in the same run as this
one; hyperfine is Debian's package of that name. Python writes no bytecode when
``PYTHONDONTWRITEBYTECODE`` is set, so each tree's sources are compiled once up front, as the
Makefile's install step does for this one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from layerhoist.registry.launcher import RegistryProcess, client_env
from layerhoist.testing.synthetic import write_oci_layout

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
#: Runs per command after the warm-up ones.
RUNS = 15
WARMUP = 2
#: The one layer of the pushed image (the smallest synthetic one): its transfer is negligible.
LAYER_SIZE = 1536


def _hyperfine(options: Sequence[str], *, env: dict[str, str]) -> list[dict[str, Any]]:
    """hyperfine's results for ``options`` (its command line less the export)."""
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "results.json"
        subprocess.run(
            ["hyperfine", "--shell=none", "--style=none", f"--export-json={export}", *options],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        results: list[dict[str, Any]] = json.loads(export.read_text())["results"]
    return results


def _label(tree: Path) -> str:
    """A tree as its commit (and whether its work tree has changes), never as a path."""
    head = subprocess.run(
        ["git", "-C", str(tree), "describe", "--always", "--dirty"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{head} (this tree)" if tree == REPO else head


def _compile(tree: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(tree / "src")],
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
    )


def _per_run(command: str, *, env: dict[str, str], runs: int) -> float:
    """Median seconds of ``command``, whose ``{run}`` is numbered afresh for every run."""
    # hyperfine numbers the runs through a parameter list, one run per value; the first
    # WARMUP runs are left out as warm-up.
    scan = ",".join(str(n) for n in range(runs + WARMUP))
    results = _hyperfine(["--runs=1", "--parameter-list", "run", scan, command], env=env)
    times = sorted(float(result["median"]) for result in results[WARMUP:])
    return times[len(times) // 2]


#: A one-call client of the embedded registry through aioboto3 and nothing else: the least a
#: push through the AWS SDK must pay before its own work (interpreter, SDK import, client).
SDK_CALL = """
import asyncio, sys, aioboto3
async def call():
    async with aioboto3.Session().client(
        "ecr-public", endpoint_url=sys.argv[1], region_name="us-east-1"
    ) as client:
        await client.describe_repositories()
asyncio.run(call())
"""


def _medians(commands: dict[str, str], *, env: dict[str, str], runs: int) -> dict[str, float]:
    named = [arg for name, cmd in commands.items() for arg in (f"--command-name={name}", cmd)]
    results = _hyperfine([f"--warmup={WARMUP}", f"--runs={runs}", *named], env=env)
    return {result["command"]: float(result["median"]) for result in results}


async def measure(
    trees: Sequence[Path], runs: int
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Median seconds of each command per tree, and of each part of the floor."""
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        layout = Path(tmp) / "layout"
        write_oci_layout(layout, images=1, layers_per_image=1, layer_size=LAYER_SIZE)
        async with RegistryProcess(data_dir=Path(tmp) / "registry") as registry:
            endpoint = registry.endpoint_url
            for index, tree in enumerate(trees):
                _compile(tree)
                env = {**client_env(), "PYTHONPATH": str(tree / "src")}
                layerhoist = f"{sys.executable} -m layerhoist"
                medians = _medians(
                    {"--version": f"{layerhoist} --version", "--help": f"{layerhoist} --help"},
                    env=env,
                    runs=runs,
                )
                # A repository per run, so that every run uploads.
                push = (
                    f"{layerhoist} push oci:{layout} ecr-public:startup-{index}-"
                    f"{{run}} --create-repo --quiet --endpoint-url {endpoint}"
                )
                medians["one-blob push"] = _per_run(push, env=env, runs=runs)
                figures[_label(tree)] = medians
            env = client_env()
            sdk_call = Path(tmp) / "sdk_call.py"
            sdk_call.write_text(SDK_CALL)
            floor = _medians(
                {
                    "the interpreter alone (python -c pass)": f"{sys.executable} -c pass",
                    "importing aioboto3": f"{sys.executable} -c 'import aioboto3'",
                    "aioboto3: import, client, one call": f"{sys.executable} {sdk_call} {endpoint}",
                },
                env=env,
                runs=runs,
            )
            layerhoist = f"{sys.executable} -m layerhoist"
            floor["layerhoist copy of the image into an OCI layout (no SDK)"] = _per_run(
                f"{layerhoist} copy oci:{layout} oci:{tmp}/copy-{{run}} --quiet", env=env, runs=runs
            )
            floor["the boto3 baseline's push of the image"] = _per_run(
                f"{sys.executable} {BENCHMARKS / 'baseline_boto3.py'} --layout {layout} "
                f"--endpoint-url {endpoint} --repository startup-baseline-{{run}}",
                env=env,
                runs=runs,
            )
    return figures, floor


def main(argv: Sequence[str] | None = None) -> int:
    """Print a table of median start-up seconds per command and tree, and the floor's parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tree", type=Path, action="append", help="another checkout to time")
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args(argv)
    if shutil.which("hyperfine") is None:
        print("hyperfine is not installed (apt-get install hyperfine)", file=sys.stderr)
        return 1
    trees = [*(args.tree or []), REPO]
    figures, floor = anyio.run(measure, trees, args.runs)
    commands = list(next(iter(figures.values())))
    print("| tree | " + " | ".join(commands) + " |")
    print("|---|" + "---:|" * len(commands))
    for tree, medians in figures.items():
        cells = " | ".join(f"{medians[name] * 1000:.0f} ms" for name in commands)
        print(f"| {tree} | {cells} |")
    print()
    print("| the floor, part by part | median |")
    print("|---|---:|")
    for name, seconds in floor.items():
        print(f"| {name} | {seconds * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
