"""``layerhoist bench``: the synthetic source, and whole sweeps run as the user runs them.

Every bench here is the real command in a process of its own, pushing through real client
processes into an embedded registry over HTTP; sizes are the smallest that still exercise a
sweep, so the figures themselves are never asserted, only their structure and the byte counts
an outside observer (the registry) confirms.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest

from layerhoist.bench.synth import SyntheticPlan, SyntheticSource, make_plan
from layerhoist.registry import EmbeddedRegistry
from layerhoist.units import MiB

pytestmark = pytest.mark.anyio

ClientFactory = Callable[..., AbstractAsyncContextManager[Any]]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Layers smaller than one part: the sweep stays fast.
SMALL = "1MiB"
#: More than the bytes of one synthetic image config.
CONFIG_ROOM = 4096
BENCH = [sys.executable, "-m", "layerhoist", "bench"]
#: The pieces of a run every consumer of ``--json`` relies on.
RUN_KEYS = {
    "concurrency",
    "part_size",
    "repeat",
    "ok",
    "seconds",
    "layer_bytes",
    "bytes_sent",
    "throughput_mb_s",
    "blobs_per_s",
    "requests",
    "part_latency",
    "retries",
    "client",
    "memory",
    "pacing",
    "server",
    "bytes_check",
    "pressure",
    "limit",
}
PRESSURES = {"link", "quota", "memory_budget", "client_loop", "server_loop", "machine"}
CLIENT_KEYS = {"cpu_seconds", "cpu_seconds_per_gib", "peak_rss_bytes", "process_cpu_seconds"}


async def bench(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``layerhoist bench ARGS`` to the end (the caller checks the exit code)."""
    return await anyio.run_process([*BENCH, *args], check=False)


def sha256(chunks: list[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return "sha256:" + digest.hexdigest()


async def collect(source: SyntheticSource, digest: str, **kwargs: Any) -> list[bytes]:
    descriptor = next(
        d for image in await source.load() for d in image.blobs() if d.digest == digest
    )
    return [chunk async for chunk in source.blob_chunks(descriptor, **kwargs)]


async def test_synthetic_source_streams_the_bytes_its_plan_promises() -> None:
    odd = MiB + 3
    plan = await make_plan(seed=7, images=2, layers=2, sizes=[odd, 2 * MiB], workers=2)
    assert SyntheticPlan.from_json(plan.to_json()) == plan
    assert plan.layer_bytes == 2 * (odd + 2 * MiB)
    layer = plan.images[0].layers[0]
    source = SyntheticSource(plan)
    chunk_size = MiB // 2
    chunks = await collect(source, layer.digest, chunk_size=chunk_size)
    assert sha256(chunks) == layer.digest
    assert [len(c) for c in chunks] == [chunk_size, chunk_size, 3]
    whole = b"".join(chunks)
    offset = 3 * chunk_size // 2 + 1
    tail = await collect(source, layer.digest, offset=offset, chunk_size=chunk_size)
    assert b"".join(tail) == whole[offset:]
    assert source.generation_cpu_seconds > 0
    # Layers differ from one image to the next, and configs stream like layers.
    assert len({lay.digest for image in plan.images for lay in image.layers}) == 4
    image = (await source.load())[1]
    config = image.manifest.config
    assert config is not None
    assert sha256(await collect(source, config.digest, chunk_size=chunk_size)) == config.digest


@pytest.mark.slow
async def test_bench_writes_a_table_json_and_png(tmp_path: Path) -> None:
    report, chart = tmp_path / "bench.json", tmp_path / "bench.png"
    done = await bench(
        *f"--profile lan --images 1 --layers 3 --size {SMALL} --concurrency 1,2".split(),
        *("--part-size", "5MiB", "--quiet", "--json", str(report), "--plot", str(chart)),
    )
    assert done.returncode == 0, done.stderr.decode()
    table = done.stdout.decode()
    assert "limited by" in table and "outside check" in table and ": equal" in table
    assert chart.read_bytes().startswith(PNG_SIGNATURE)
    figures = json.loads(report.read_text())
    assert figures["interrupted"] is False
    assert {"versions", "cpu_count", "cpu_model", "platform"} <= figures["environment"].keys()
    assert figures["settings"]["concurrency"] == [1, 2]
    assert figures["settings"]["profile"]["name"] == "lan"
    runs = figures["runs"]
    assert [(run["concurrency"], run["part_size"]) for run in runs] == [(1, 5 * MiB), (2, 5 * MiB)]
    for run in runs:
        assert run.keys() >= RUN_KEYS
        assert run["client"].keys() >= CLIENT_KEYS
        assert run["pressure"].keys() >= PRESSURES
        assert run["memory"]["held_peak_bytes"] <= run["memory"]["budget_bytes"]
        # Three layers and one config (ECR uploads both through the layer API).
        assert run["ok"] and 3 * MiB < run["layer_bytes"] < 3 * MiB + CONFIG_ROOM
        assert set(run["part_latency"]) == {"p50", "p95", "p99"}
        assert run["requests"]["UploadLayerPart"]["requests"] == 4
        assert run["server"]["part_bytes_received"] == run["bytes_sent"] >= run["layer_bytes"]
        assert run["bytes_check"]["equal"] is True
    assert [cell["median_run"] for cell in figures["cells"]] == runs
    assert figures["peak_rss_bytes"]["clients"] == max(r["client"]["peak_rss_bytes"] for r in runs)


@pytest.mark.slow
async def test_bench_against_a_destination_counts_what_the_registry_received(
    make_registry: Callable[..., EmbeddedRegistry],
    ecr_client: ClientFactory,
    tmp_path: Path,
    aws_credentials: None,
) -> None:
    # With --dest the clients use the normal credential chain: the environment here.
    report = tmp_path / "bench.json"
    async with make_registry() as registry:
        done = await bench(
            *("--dest", "ecr-public:mirror", "--endpoint-url", registry.endpoint_url),
            *f"--images 2 --layers 2 --size {SMALL} --concurrency 4 --part-size 5MiB".split(),
            *("--repeat", "2", "--no-warmup", "--quiet", "--json", str(report)),
        )
        assert done.returncode == 0, done.stderr.decode()
        stats = registry.stats()
        async with ecr_client(registry.endpoint_url) as client:
            left = (await client.describe_repositories())["repositories"]
    runs = json.loads(report.read_text())["runs"]
    assert len(runs) == 2
    assert stats["part_bytes_received"] == sum(run["bytes_sent"] for run in runs)
    assert all(4 * MiB < run["bytes_sent"] < 4 * MiB + 2 * CONFIG_ROOM for run in runs)
    assert stats["images_put"] == 4
    # One scratch repository per run, deleted at the end with everything in it.
    requests = stats["requests"]
    assert isinstance(requests, dict)
    assert requests["CreateRepository"] == requests["DeleteRepository"] == 2
    assert left == []


@pytest.mark.slow
async def test_ctrl_c_leaves_a_partial_report(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    process = await anyio.open_process(
        [
            *BENCH,
            *f"--profile lan --images 1 --layers 1 --size {SMALL} --part-size 5MiB".split(),
            *("--concurrency", "1,2,3,4,5,6,7,8", "--no-warmup", "--json", str(report)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None and process.stdout is not None
    said = b""
    async for chunk in process.stderr:
        said += chunk
        if b"MB/s in" in said:
            break
    process.send_signal(signal.SIGINT)
    table = b"".join([chunk async for chunk in process.stdout])
    assert await process.wait() == 130
    figures = json.loads(report.read_text())
    assert figures["interrupted"] is True
    assert 1 <= len(figures["runs"]) < 8
    assert b"interrupted: partial report" in table


@pytest.mark.parametrize(
    "args",
    [
        ["--dest", "ecr-public:mirror", "--profile", "wan"],
        ["--keep"],
        ["--part-size", "1MiB"],
        ["--concurrency", "0"],
        ["--size", "many"],
    ],
)
async def test_bad_options_are_usage_errors(args: list[str]) -> None:
    done = await bench(*args)
    assert done.returncode == 2
    assert done.stderr.decode().count("\n") == 1


@pytest.mark.slow
async def test_a_client_that_cannot_start_stops_the_sweep(
    registry: EmbeddedRegistry, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No credentials at all: the client's start fails.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    done = await bench(
        *("--dest", "ecr-public:mirror", "--endpoint-url", registry.endpoint_url),
        *f"--images 1 --layers 1 --size {SMALL} --concurrency 1,2 --part-size 5MiB".split(),
    )
    assert done.returncode == 1
    assert b"stopping: the client could not start" in done.stderr
    assert done.stdout.count(b"FAILED run") == 1
    assert b"credentials" in done.stdout
