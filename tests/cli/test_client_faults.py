"""The client under outages, full disks and odd files: one line, the right exit code, no tag.

The registry here is real: in this process (with a write function that can fill its disk)
or a process of its own (killed and started again on the same port and data directory).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import anyio
import pytest

from commands import FAILED, OK, one_line_error, push_cli
from fakes import FullDisk
from layerhoist.registry import EmbeddedRegistry, RegistrySettings
from layerhoist.registry.admin import STATS_PATH
from layerhoist.registry.launcher import RegistryProcess, free_port
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.units import MiB

pytestmark = pytest.mark.anyio

#: Long enough that the client fails fast without --retry-for (it did in about 7 s).
OUTAGE_SECONDS = 10.0
#: How often the registry's counters are read while waiting for the push to start.
POLL_SECONDS = 0.05
#: Bounds a test that would otherwise hang on a regression.
GUARD_SECONDS = 120.0


async def test_a_full_disk_is_one_line_that_says_so(
    tmp_path: Path, aws_env: dict[str, str]
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, images=1, layers_per_image=2, layer_size=64 * 1024, seed=3)
    disk = FullDisk()
    disk.full = True
    settings = RegistrySettings(data_dir=tmp_path / "registry")
    async with EmbeddedRegistry(settings, write=disk) as registry:
        done = await push_cli(
            aws_env,
            f"oci:{layout}",
            "ecr-public:full",
            registry.endpoint_url,
            "--create-repo",
            "--retry-for",
            "0",
        )
        assert done.returncode == FAILED
        line = one_line_error(done)
        assert "out of space" in line
        assert "UploadNotFoundException" not in done.stderr.decode()
        assert registry.stats()["images_put"] == 0

        # Space is back: the same command lands everything.
        disk.full = False
        again = await push_cli(aws_env, f"oci:{layout}", "ecr-public:full", registry.endpoint_url)
        assert again.returncode == OK, again.stderr.decode()


async def test_a_blob_that_is_a_fifo_is_one_line_naming_it(
    tmp_path: Path, aws_env: dict[str, str], registry: EmbeddedRegistry
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, images=1, layers_per_image=1, layer_size=64 * 1024, seed=5)
    index = json.loads((layout / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_digest).read_text())
    blob = layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].removeprefix("sha256:")
    blob.unlink()
    os.mkfifo(blob)
    with anyio.fail_after(GUARD_SECONDS):
        done = await push_cli(
            aws_env, f"oci:{layout}", "ecr-public:fifo", registry.endpoint_url, "--create-repo"
        )
    assert done.returncode == FAILED
    assert f"{blob} is a FIFO, not a regular file" in one_line_error(done)
    assert registry.stats()["images_put"] == 0


@pytest.mark.slow
async def test_a_push_rides_out_a_registry_outage(tmp_path: Path, aws_env: dict[str, str]) -> None:
    layout = tmp_path / "layout"
    tags = write_oci_layout(layout, images=4, layers_per_image=2, layer_size=4 * MiB, seed=6)
    port = free_port()
    # Slow enough that every layer is still being sent when the registry goes away.
    registry_args = ["--port", str(port), "--bandwidth", "1MB/s"]
    data_dir = tmp_path / "registry"
    endpoint = f"http://127.0.0.1:{port}"
    with anyio.fail_after(GUARD_SECONDS):
        async with RegistryProcess(data_dir=data_dir, args=registry_args) as first:
            args = [sys.executable, "-m", "layerhoist", "push", f"oci:{layout}", "ecr-public:ride"]
            args += ["--endpoint-url", endpoint, "--create-repo", "--json", "--quiet"]
            async with await anyio.open_process(args, env=aws_env) as push:
                await _uploads_started(endpoint)
                assert push.returncode is None, "the push ended before the outage"
                os.kill(first.pid, signal.SIGKILL)
                await anyio.sleep(OUTAGE_SECONDS)
                async with RegistryProcess(data_dir=data_dir, args=registry_args):
                    assert push.stdout is not None
                    report = json.loads(b"".join([chunk async for chunk in push.stdout]))
                    await push.wait()
    assert push.returncode == OK
    assert report["ok"] is True
    assert len(report["images"]) == len(tags)
    assert report["retries"]["total"] > 0
    # Some request kept failing for most of the outage before it got through.
    assert report["retries"]["longest_seconds"] >= OUTAGE_SECONDS / 2


async def _uploads_started(endpoint: str) -> None:
    """Return once the registry has been asked to start a layer upload."""
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(endpoint + STATS_PATH) as response:
                stats = await response.json()
            if stats["requests"].get("InitiateLayerUpload", 0) > 0:
                return
            await anyio.sleep(POLL_SECONDS)
