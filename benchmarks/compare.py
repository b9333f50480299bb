"""layerhoist at its defaults against the sequential boto3 baseline and skopeo, in one go.

All of them push the same OCI layout (20 images x 5 layers x 4 MiB by default, as in issue 3's
first benchmark) into the same embedded registry, which runs in its own process and simulates
the ``wan`` network of ``layerhoist bench`` (40 ms per request, 25 MB/s per connection) without
request-rate quotas, so that every tool meets the same network and nothing else. Each tool
pushes into a repository of its own, so every push is cold. Every client is a child process
measured with ``os.wait4`` (CPU time, peak RSS); wall time is the parent's, start-up included.

skopeo pushes through the OCI distribution API (``POST /v2/<name>/blobs/uploads/``): it runs
when the registry accepts such uploads and is skipped, with the registry's answer, otherwise.

Writes ``benchmarks/results/compare.md`` (the command, the machine, the table) and
``benchmarks/results/compare.png``::

    .venv/bin/python benchmarks/compare.py [--images 20] [--layers 5] [--layer-size 4MiB]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import anyio

from layerhoist.bench.measure import measure_child
from layerhoist.bench.options import PROFILES
from layerhoist.bench.plot import plot_comparison
from layerhoist.bench.report import environment
from layerhoist.registry.launcher import RegistryProcess, client_env
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.units import MB, GiB, MiB, parse_size

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"
REGISTRY_ARGS = PROFILES["wan"].registry_args(quotas=None)
DEFAULT_IMAGES = 20
DEFAULT_LAYERS = 5
DEFAULT_LAYER_SIZE = 4 * MiB
SEED = 404
#: What a registry answers to the start of an OCI blob upload it accepts.
UPLOAD_ACCEPTED = 202
#: Seconds allowed for the upload probe.
PROBE_TIMEOUT = 10.0
BASELINE = "sequential boto3 loop (baseline)"


@dataclass(frozen=True)
class Outcome:
    """One tool's push of the whole layout."""

    tool: str
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    ok: bool
    #: The tool's own timer of the push, when it reports one.
    push_seconds: float | None = None

    def throughput(self, nbytes: int) -> float:
        """MB/s of ``nbytes`` over the push time (the wall time when the tool has no timer)."""
        seconds = self.push_seconds if self.push_seconds is not None else self.wall_seconds
        return nbytes / seconds / MB


async def timed(tool: str, commands: Sequence[Sequence[str]]) -> tuple[Outcome, list[bytes]]:
    """Run ``commands`` one after another; their summed cost and their outputs."""
    wall = cpu = 0.0
    peak = 0
    ok = True
    outputs = []
    for command in commands:
        output, usage = await measure_child(command, env=client_env())
        wall += usage.wall_seconds
        cpu += usage.cpu_seconds
        peak = max(peak, usage.peak_rss_bytes)
        ok = ok and usage.exit_code == 0
        outputs.append(output)
    return Outcome(tool, wall, cpu, peak, ok), outputs


async def own_timer(tool: str, command: Sequence[str]) -> Outcome:
    """Run a tool that prints a JSON report with its ``seconds``."""
    outcome, (output,) = await timed(tool, [command])
    if not outcome.ok:
        return outcome
    return dataclasses.replace(outcome, push_seconds=json.loads(output)["seconds"])


def layerhoist_push(layout: Path, endpoint: str) -> list[str]:
    """``layerhoist push`` of the whole layout at its default settings."""
    return [
        *(sys.executable, "-m", "layerhoist", "push", f"oci:{layout}"),
        *("ecr-public:compare/layerhoist", "--endpoint-url", endpoint),
        *("--create-repo", "--quiet", "--json"),
    ]


def baseline_push(layout: Path, endpoint: str) -> list[str]:
    """The sequential boto3 loop of ``baseline_boto3.py``."""
    return [
        *(sys.executable, str(BENCHMARKS / "baseline_boto3.py"), "--endpoint-url", endpoint),
        *("--layout", str(layout), "--repository", "compare/baseline"),
    ]


def skopeo_pushes(layout: Path, tags: Sequence[str], endpoint: str) -> list[list[str]]:
    """``skopeo copy`` of each tag: skopeo copies one image per invocation."""
    host = endpoint.removeprefix("http://")
    return [
        [
            *("skopeo", "copy", "--quiet", "--dest-tls-verify=false"),
            *(f"oci:{layout}:{tag}", f"docker://{host}/compare/skopeo:{tag}"),
        ]
        for tag in tags
    ]


async def skopeo_refusal(endpoint: str) -> str | None:
    """Why skopeo cannot push to ``endpoint`` (``None`` when it can)."""
    if shutil.which("skopeo") is None:
        return "skopeo is not installed"
    url = f"{endpoint}/v2/compare/skopeo/blobs/uploads/"
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.post(url) as response:
        if response.status == UPLOAD_ACCEPTED:
            return None
        return (
            "the embedded registry's OCI endpoint is read-only (POST /v2/<name>/blobs/uploads/ "
            f"answered HTTP {response.status})"
        )


def markdown(
    outcomes: Sequence[Outcome], *, nbytes: int, workload: str, skipped: str | None, command: str
) -> str:
    """The results page: what ran, on what machine, and the table."""
    env = environment()
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    baseline = next(o for o in outcomes if o.tool == BASELINE)
    rows = [
        "| tool | wall s | push s | MB/s | client CPU s | peak RSS MB | faster than baseline |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for o in outcomes:
        push = "-" if o.push_seconds is None else f"{o.push_seconds:.1f}"
        rate = f"{o.throughput(nbytes):.1f}" if o.ok else "FAILED"
        rows.append(
            f"| {o.tool} | {o.wall_seconds:.1f} | {push} | {rate} | {o.cpu_seconds:.1f} | "
            f"{o.peak_rss_bytes / MB:.0f} | {baseline.wall_seconds / o.wall_seconds:.1f}x |"
        )
    lines = [
        "# layerhoist against the sequential boto3 baseline and skopeo",
        "",
        f"Made by `{command}` on {datetime.now(UTC):%Y-%m-%d}.",
        "",
        f"- Machine: {env['cpu_model']}, {env['cpu_count']} cores, "
        f"{(env['memory_bytes'] or 0) / GiB:.0f} GiB RAM, {env['platform']}",
        f"- Software: {versions}",
        f"- Registry: the embedded registry in its own process, `{' '.join(REGISTRY_ARGS)}`",
        f"- Workload: {workload}",
        "- Wall time: the whole client process, start-up included. Push time: the tool's own "
        "timer. MB/s: blob bytes over push time (over wall time for a tool without a timer).",
        "",
        *rows,
    ]
    if skipped:
        lines += ["", f"skopeo copy: skipped: {skipped}."]
    return "\n".join(lines) + "\n"


async def main(argv: Sequence[str] | None = None) -> int:
    """Push the layout with each tool; print and write the table, draw the chart."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES)
    parser.add_argument("--layers", type=int, default=DEFAULT_LAYERS)
    parser.add_argument("--layer-size", type=parse_size, default=DEFAULT_LAYER_SIZE)
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(arguments)
    command = " ".join([".venv/bin/python benchmarks/compare.py", *arguments])
    with tempfile.TemporaryDirectory(prefix="layerhoist-compare-") as tmp:
        layout = Path(tmp) / "layout"
        tags = write_oci_layout(
            layout,
            images=args.images,
            layers_per_image=args.layers,
            layer_size=args.layer_size,
            seed=SEED,
        )
        nbytes = sum(blob.stat().st_size for blob in (layout / "blobs" / "sha256").iterdir())
        workload = (
            f"{args.images} images x {args.layers} layers x {args.layer_size / MiB:g} MiB "
            f"(an OCI layout of {nbytes / MB:.0f} MB of blobs)"
        )
        async with RegistryProcess(data_dir=Path(tmp) / "registry", args=REGISTRY_ARGS) as reg:
            endpoint = reg.endpoint_url
            outcomes = [
                await own_timer(BASELINE, baseline_push(layout, endpoint)),
                await own_timer("layerhoist push (defaults)", layerhoist_push(layout, endpoint)),
            ]
            skipped = await skopeo_refusal(endpoint)
            if skipped is None:
                outcome, _ = await timed("skopeo copy", skopeo_pushes(layout, tags, endpoint))
                outcomes.append(outcome)
    page = markdown(outcomes, nbytes=nbytes, workload=workload, skipped=skipped, command=command)
    print(page)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compare.md").write_text(page)
    plot_comparison(
        [o.tool for o in outcomes],
        [o.throughput(nbytes) if o.ok else 0.0 for o in outcomes],
        title=f"{workload}\nembedded registry {' '.join(REGISTRY_ARGS)}",
        path=RESULTS / "compare.png",
    )
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main))
