"""The registry as a process (``python -m layerhoist.registry``), and restarts on one data dir."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

pytestmark = pytest.mark.anyio

PART = 2048
REPO = "keep/me"
START_TIMEOUT = 30
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))\n")


async def test_process_prints_one_line_serves_and_exits_cleanly_on_sigterm(
    tmp_path: Path, ecr_client: Any
) -> None:
    command = [
        sys.executable,
        "-m",
        "layerhoist.registry",
        "--data-dir",
        str(tmp_path / "data"),
        "--part-size",
        "6MiB",
        "--seed",
        "1",
    ]
    process = await anyio.open_process(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    async with process:
        assert process.stdout is not None
        line = b""
        with anyio.fail_after(START_TIMEOUT):
            while not line.endswith(b"\n"):
                line += await process.stdout.receive(1)
        match = LISTENING.fullmatch(line.decode())
        assert match is not None, line
        async with ecr_client(match[1]) as client:
            await client.create_repository(repositoryName=REPO)
            initiated = await client.initiate_layer_upload(repositoryName=REPO)
            assert initiated["partSize"] == 6 * 1024 * 1024
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(START_TIMEOUT):
            assert await process.wait() == 0
        rest = b""
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                rest += await process.stdout.receive()
        assert rest == b"", "stdout holds exactly the one line"
    assert (tmp_path / "data" / "catalog.sqlite3").exists()


def test_bad_options_exit_with_an_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "layerhoist.registry", "--bandwidth", "fast", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "not a transfer rate" in result.stderr


async def test_restart_keeps_everything_pushed(
    make_registry: Any, ecr_client: Any, ecr: Any
) -> None:
    layers = [os.urandom(3 * PART + 5), os.urandom(PART)]
    settings = {"min_part_size": PART, "part_size": PART}
    async with make_registry(**settings) as first, ecr_client(first.endpoint_url) as client:
        await client.create_repository(repositoryName=REPO)
        pushed = await ecr.push_image(client, REPO, layers=layers, tag="v1", part_size=PART)
        abandoned = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        await client.upload_layer_part(
            repositoryName=REPO,
            uploadId=abandoned,
            partFirstByte=0,
            partLastByte=PART - 1,
            layerPartBlob=b"p" * PART,
        )

    async with make_registry(**settings) as second, ecr_client(second.endpoint_url) as client:
        described = await client.describe_images(repositoryName=REPO)
        (detail,) = described["imageDetails"]
        assert (detail["imageDigest"], detail["imageTags"]) == (pushed.digest, ["v1"])
        digests = [f"sha256:{hashlib.sha256(b).hexdigest()}" for b in (pushed.config, *layers)]
        checked = await client.batch_check_layer_availability(
            repositoryName=REPO, layerDigests=digests
        )
        assert {layer["layerAvailability"] for layer in checked["layers"]} == {"AVAILABLE"}
        # Uploads in progress do not survive a restart: the client starts again.
        with pytest.raises(client.exceptions.UploadNotFoundException):
            await client.complete_layer_upload(
                repositoryName=REPO, uploadId=abandoned, layerDigests=[digests[0]]
            )
        with pytest.raises(client.exceptions.ImageAlreadyExistsException):
            await client.put_image(
                repositoryName=REPO, imageManifest=pushed.manifest.decode(), imageTag="v1"
            )
        async with aiohttp.ClientSession() as http:
            base = f"{second.endpoint_url}/v2/{REPO}"
            async with http.get(f"{base}/manifests/v1") as response:
                assert await response.read() == pushed.manifest
            for digest in digests:
                async with http.get(f"{base}/blobs/{digest}") as response:
                    body = await response.read()
                assert f"sha256:{hashlib.sha256(body).hexdigest()}" == digest
        assert second.stats()["uploads_in_progress"] == 0
