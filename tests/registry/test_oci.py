"""The OCI distribution read side: what the ECR API stored, served to pullers and to skopeo."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from yarl import URL

from layerhoist.registry import EmbeddedRegistry

pytestmark = pytest.mark.anyio

PART = 64 * 1024
REPO = "library/demo"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SKOPEO_TIMEOUT = 60


@pytest.fixture
async def small_registry(make_registry: Any) -> AsyncIterator[EmbeddedRegistry]:
    """A registry with small part limits."""
    async with make_registry(min_part_size=PART, part_size=PART, max_part_size=PART) as reg:
        yield reg


@pytest.fixture
async def pushed(small_registry: EmbeddedRegistry, ecr_client: Any, ecr: Any) -> Any:
    """An image of two gzip layers pushed as ``REPO:v1`` through the ECR Public API."""
    layers = [gzip.compress(bytes(range(256)) * 1000), gzip.compress(b"second layer\n" * 9000)]
    async with ecr_client(small_registry.endpoint_url) as client:
        await client.create_repository(repositoryName=REPO)
        return await ecr.push_image(client, REPO, layers=layers, tag="v1", part_size=PART)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client."""
    async with aiohttp.ClientSession() as session:
        yield session


async def test_version_check(small_registry: EmbeddedRegistry, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{small_registry.endpoint_url}/v2/") as response:
        assert response.status == 200
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_manifest_by_tag_and_digest(
    small_registry: EmbeddedRegistry, pushed: Any, http: aiohttp.ClientSession
) -> None:
    base = f"{small_registry.endpoint_url}/v2/{REPO}/manifests"
    for reference in ("v1", pushed.digest):
        async with http.get(f"{base}/{reference}") as response:
            assert response.status == 200
            assert await response.read() == pushed.manifest
            assert response.headers["Content-Type"] == OCI_MANIFEST
            assert response.headers["Docker-Content-Digest"] == pushed.digest
            assert int(response.headers["Content-Length"]) == len(pushed.manifest)
        async with http.head(f"{base}/{reference}") as response:
            assert response.status == 200
            assert await response.read() == b""
            assert response.headers["Docker-Content-Digest"] == pushed.digest
            assert int(response.headers["Content-Length"]) == len(pushed.manifest)


async def test_blobs_stream_back_with_their_digest(
    small_registry: EmbeddedRegistry, pushed: Any, http: aiohttp.ClientSession
) -> None:
    for blob in (pushed.config, *pushed.layers):
        digest = f"sha256:{hashlib.sha256(blob).hexdigest()}"
        url = f"{small_registry.endpoint_url}/v2/{REPO}/blobs/{digest}"
        async with http.get(url) as response:
            assert response.status == 200
            assert await response.read() == blob
            assert response.headers["Docker-Content-Digest"] == digest
        async with http.head(url) as response:
            assert response.status == 200
            assert int(response.headers["Content-Length"]) == len(blob)


async def test_tags_and_catalog(
    small_registry: EmbeddedRegistry, pushed: Any, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{small_registry.endpoint_url}/v2/{REPO}/tags/list") as response:
        assert await response.json() == {"name": REPO, "tags": ["v1"]}
    async with http.get(f"{small_registry.endpoint_url}/v2/_catalog?n=10") as response:
        assert await response.json() == {"repositories": [REPO]}


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"/v2/{REPO}/manifests/v2", 404, "MANIFEST_UNKNOWN"),
        (f"/v2/{REPO}/manifests/sha256:{'0' * 64}", 404, "MANIFEST_UNKNOWN"),
        (f"/v2/{REPO}/blobs/sha256:{'0' * 64}", 404, "BLOB_UNKNOWN"),
        (f"/v2/{REPO}/blobs/sha256:short", 400, "DIGEST_INVALID"),
        ("/v2/no/such/repo/tags/list", 404, "NAME_UNKNOWN"),
        ("/v2/Bad..Name/tags/list", 400, "NAME_INVALID"),
        ("/v2/%2e%2e/%2E%2E/etc/blobs/sha256:" + "0" * 64, 400, "NAME_INVALID"),
    ],
)
async def test_errors_are_oci_error_documents(
    small_registry: EmbeddedRegistry,
    pushed: Any,
    http: aiohttp.ClientSession,
    path: str,
    status: int,
    code: str,
) -> None:
    url = URL(f"{small_registry.endpoint_url}{path}", encoded=True)
    async with http.get(url) as response:
        assert response.status == status
        document = await response.json()
        assert document["errors"][0]["code"] == code


async def run_skopeo(*args: str) -> bytes:
    """Run skopeo, failing the test with its stderr when it fails."""
    with anyio.fail_after(SKOPEO_TIMEOUT):
        result = await anyio.run_process(list(args), check=False)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout


async def test_skopeo_reads_back_an_image_pushed_through_the_ecr_api(
    small_registry: EmbeddedRegistry, pushed: Any, skopeo: str, tmp_path: Path
) -> None:
    source = f"docker://{small_registry.endpoint_url.removeprefix('http://')}/{REPO}:v1"
    inspected = json.loads(await run_skopeo(skopeo, "inspect", "--tls-verify=false", source))
    assert inspected["Digest"] == pushed.digest
    assert inspected["RepoTags"] == ["v1"]
    raw = await run_skopeo(skopeo, "inspect", "--raw", "--tls-verify=false", source)
    assert raw == pushed.manifest

    layout = tmp_path / "layout"
    await run_skopeo(skopeo, "copy", "--src-tls-verify=false", source, f"oci:{layout}:v1")
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == pushed.digest
    blobs = layout / "blobs" / "sha256"
    assert (blobs / pushed.digest.removeprefix("sha256:")).read_bytes() == pushed.manifest
    for blob in (pushed.config, *pushed.layers):
        assert (blobs / hashlib.sha256(blob).hexdigest()).read_bytes() == blob
