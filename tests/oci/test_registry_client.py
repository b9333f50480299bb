"""The OCI client against docker-registry, directly or behind a proxy that misbehaves on purpose.

Auth (htpasswd Basic, the auth file, a credential helper, bearer tokens from a realm), refused
connections, TLS without TLS, refused manifests, and blob streams cut mid-body and resumed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from conftest import DISTRIBUTION_PASSWORD, DISTRIBUTION_USER
from fakes import FakeClock
from layerhoist.errors import CredentialsError, ManifestError, SourceError
from layerhoist.image import Image
from layerhoist.oci import (
    ClientSettings,
    Credentials,
    RegistryClient,
    get_manifest,
    head_manifest,
)
from layerhoist.refs import parse_source
from layerhoist.sources.registry import RegistrySource, RegistrySourceOptions
from layerhoist.testing.distribution import Distribution
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.pacing import TokenBucket
from registry_proxy import ProxyOptions, RegistryProxy

pytestmark = pytest.mark.anyio

#: Large enough that a blob spans many reads and a cut lands in its middle.
LAYER_SIZE = 256 * 1024
CUT_AFTER = 100_000
FAST = PushConfig(part_attempts=3, backoff_initial=0.01, backoff_max=0.02, retry_for=0.0)
INSECURE = ClientSettings(tls_verify=False)
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("layout") / "oci"
    write_oci_layout(path, images=1, layers_per_image=2, layer_size=LAYER_SIZE)
    return path


@pytest.fixture(scope="module")
def seeded(distribution: Distribution, layout: Path) -> str:
    """``app:v1`` in the open registry; its manifest digest."""
    return distribution.seed(layout, "v1", "app:v1")


@pytest.fixture(scope="module")
def seeded_auth(distribution_htpasswd: Distribution, layout: Path) -> str:
    """``private/app:v1`` in the htpasswd registry; its manifest digest."""
    return distribution_htpasswd.seed(layout, "v1", "private/app:v1")


def open_registry(
    host: str,
    reference: str,
    *,
    credentials: Credentials | None = None,
    auth_file: Path | None = None,
    client: ClientSettings = INSECURE,
) -> RegistrySource:
    options = RegistrySourceOptions(
        credentials=credentials, auth_file=auth_file, client=client, config=FAST
    )
    return RegistrySource(parse_source(f"docker://{host}/{reference}"), options)


async def load(
    host: str,
    reference: str,
    *,
    credentials: Credentials | None = None,
    auth_file: Path | None = None,
    client: ClientSettings = INSECURE,
) -> list[Image]:
    source = open_registry(
        host, reference, credentials=credentials, auth_file=auth_file, client=client
    )
    try:
        return await source.load()
    finally:
        await source.aclose()


async def read_blobs(source: RegistrySource, image: Image, chunk_size: int) -> None:
    """Stream every blob of ``image`` and check its bytes against its digest."""
    for descriptor in image.blobs():
        digest = hashlib.sha256()
        size = 0
        async for chunk in source.blob_chunks(descriptor, chunk_size=chunk_size):
            digest.update(chunk)
            size += len(chunk)
        assert size == descriptor.size
        assert "sha256:" + digest.hexdigest() == descriptor.digest


# ------------------------------------------------------------------------------------ auth


async def test_basic_auth_with_the_right_credentials(
    distribution_htpasswd: Distribution, seeded_auth: str
) -> None:
    credentials = Credentials(DISTRIBUTION_USER, DISTRIBUTION_PASSWORD)
    source = open_registry(distribution_htpasswd.host, "private/app:v1", credentials=credentials)
    try:
        [image] = await source.load()
        assert image.manifest.digest == seeded_auth
        await read_blobs(source, image, 64 * 1024)
        assert source.client.auth.scheme == "basic"
    finally:
        await source.aclose()


async def test_wrong_credentials_are_one_line(
    distribution_htpasswd: Distribution, seeded_auth: str
) -> None:
    with pytest.raises(CredentialsError) as info:
        await load(
            distribution_htpasswd.host,
            "private/app:v1",
            credentials=Credentials(DISTRIBUTION_USER, "not-the-password"),
        )
    message = str(info.value)
    assert "\n" not in message
    assert "UNAUTHORIZED" in message
    assert f"as {DISTRIBUTION_USER}" in message
    assert "--src-creds" in message
    assert "not-the-password" not in message


async def test_no_credentials_are_one_line(
    distribution_htpasswd: Distribution, seeded_auth: str, tmp_path: Path
) -> None:
    with pytest.raises(CredentialsError, match="anonymously") as info:
        await load(distribution_htpasswd.host, "private/app:v1", auth_file=_auth_file(tmp_path, {}))
    assert "\n" not in str(info.value)


def _auth_file(directory: Path, document: object) -> Path:
    path = directory / "auth.json"
    path.write_text(json.dumps(document))
    return path


async def test_credentials_from_the_auth_file(
    distribution_htpasswd: Distribution, seeded_auth: str, tmp_path: Path
) -> None:
    pair = base64.b64encode(f"{DISTRIBUTION_USER}:{DISTRIBUTION_PASSWORD}".encode()).decode()
    path = _auth_file(tmp_path, {"auths": {f"http://{distribution_htpasswd.host}": {"auth": pair}}})
    [image] = await load(distribution_htpasswd.host, "private/app:v1", auth_file=path)
    assert image.manifest.digest == seeded_auth


async def test_credentials_from_a_credential_helper(
    distribution_htpasswd: Distribution,
    seeded_auth: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    helper = tmp_path / "docker-credential-layerhoist-test"
    answer = json.dumps({"Username": DISTRIBUTION_USER, "Secret": DISTRIBUTION_PASSWORD})
    helper.write_text(f"#!/bin/sh\nread server\necho '{answer}'\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(
        "REGISTRY_AUTH_FILE", str(_auth_file(tmp_path, {"credsStore": "layerhoist-test"}))
    )
    [image] = await load(distribution_htpasswd.host, "private/app:v1")
    assert image.manifest.digest == seeded_auth


async def test_bearer_tokens_are_cached_per_scope_and_refreshed_before_expiry(
    distribution: Distribution, seeded: str
) -> None:
    lifetime = 1.0
    options = ProxyOptions(token_lifetime=lifetime, token_user=("bob", "builder"))
    async with RegistryProxy(distribution.host, options) as proxy:
        source = open_registry(proxy.host, "app:v1", credentials=Credentials("bob", "builder"))
        try:
            [image] = await source.load()
            assert source.client.auth.scheme == "bearer"
            assert proxy.token_scopes == ["repository:app:pull"]
            await anyio.sleep(lifetime)
            await read_blobs(source, image, 64 * 1024)
            # Refreshed before the proxy would refuse it: no request met a second 401.
            assert source.client.auth.tokens_fetched == 2
            refused = [s for s in proxy.seen if s.authorization is None and s.path != "/v2/"]
            assert len(refused) <= 1
        finally:
            await source.aclose()


async def test_a_token_realm_refusing_the_credentials_is_one_line(
    distribution: Distribution, seeded: str
) -> None:
    options = ProxyOptions(token_lifetime=60.0, token_user=("bob", "builder"))
    async with RegistryProxy(distribution.host, options) as proxy:
        with pytest.raises(CredentialsError) as info:
            await load(proxy.host, "app:v1", credentials=Credentials("bob", "wrong"))
    assert "\n" not in str(info.value)
    assert "token for repository:app:pull" in str(info.value)
    assert "wrong" not in str(info.value).replace("wrong credentials", "")


# ------------------------------------------------------------------------------ connections


async def test_refused_connection_is_one_line(unused_port: int) -> None:
    with pytest.raises(SourceError) as info:
        await load(f"127.0.0.1:{unused_port}", "app:v1")
    message = str(info.value)
    assert "\n" not in message
    assert f"127.0.0.1:{unused_port}/app" in message
    assert "ConnectFailed" in message


#: Every variable ``urllib.request.getproxies`` reads a proxy (or its exceptions) from.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


async def test_a_proxy_named_by_the_environment_carries_the_requests(
    unused_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        return web.Response(headers={"Docker-Distribution-API-Version": "registry/2.0"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    # Nothing listens on the registry's port: only the proxy can answer for it.
    endpoint = f"127.0.0.1:{unused_port}"
    async with TestServer(app, host="127.0.0.1") as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        async with RegistryClient(
            registry=endpoint, endpoint=endpoint, settings=INSECURE, scheme="http"
        ) as client:
            assert await client.ping() == URL(f"http://{endpoint}")
        assert seen == [f"http://{endpoint}/v2/"]
        direct = ClientSettings(tls_verify=False, proxy_from_environment=False)
        async with RegistryClient(
            registry=endpoint, endpoint=endpoint, settings=direct, scheme="http"
        ) as client:
            with pytest.raises(aiohttp.ClientConnectorError):
                await client.ping()
    assert len(seen) == 1


async def test_tls_against_a_plain_http_registry_hints_at_tls_verify(
    distribution: Distribution, seeded: str
) -> None:
    with pytest.raises(SourceError) as info:
        await load(distribution.host, "app:v1", client=ClientSettings())
    message = str(info.value)
    assert "\n" not in message
    assert "--src-tls-verify=false" in message


# -------------------------------------------------------------------------------- manifests


async def test_schema1_manifest_is_refused(distribution: Distribution) -> None:
    body = json.dumps({"schemaVersion": 1, "name": "old/app", "tag": "v1", "fsLayers": []})
    answers = {"/v2/old/app/manifests/v1": (200, {"Content-Type": SCHEMA1}, body.encode())}
    async with RegistryProxy(distribution.host, ProxyOptions(answers=answers)) as proxy:
        with pytest.raises(ManifestError) as info:
            await load(proxy.host, "old/app:v1")
    message = str(info.value)
    assert "\n" not in message
    assert "schema 1" in message
    assert f"{proxy.host}/old/app:v1" in message


async def test_unknown_media_type_and_oversized_manifests_are_refused(
    distribution: Distribution,
) -> None:
    limit = 1024
    answers = {
        "/v2/odd/app/manifests/v1": (200, {"Content-Type": "text/html"}, b"<html></html>"),
        "/v2/big/app/manifests/v1": (
            200,
            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
            b" " * (limit + 1),
        ),
    }
    async with RegistryProxy(distribution.host, ProxyOptions(answers=answers)) as proxy:
        with pytest.raises(ManifestError, match="unsupported media type 'text/html'"):
            await load(proxy.host, "odd/app:v1")
        settings = ClientSettings(tls_verify=False, max_manifest_size=limit)
        with pytest.raises(ManifestError, match=f"more than the {limit}"):
            await load(proxy.host, "big/app:v1", client=settings)


async def test_manifest_not_matching_its_digest_header_is_refused(
    distribution: Distribution,
) -> None:
    body = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
    )
    headers = {
        "Content-Type": "application/vnd.oci.image.index.v1+json",
        "Docker-Content-Digest": "sha256:" + "0" * 64,
        "ratelimit-limit": "100;w=21600",
        "ratelimit-remaining": "42;w=21600",
    }
    answers = {"/v2/lying/app/manifests/v1": (200, headers, body)}
    async with RegistryProxy(distribution.host, ProxyOptions(answers=answers)) as proxy:
        client = RegistryClient(registry=proxy.host, endpoint=proxy.host, settings=INSECURE)
        async with client:
            with pytest.raises(SourceError, match="hash to"):
                await get_manifest(client, "lying/app", "v1", where="lying")
    assert client.rate_limit is not None
    assert (client.rate_limit.remaining, client.rate_limit.limit) == (42, 100)
    assert client.rate_limit.window == 21600


# ------------------------------------------------------------------------------------ blobs


async def test_a_blob_cut_mid_stream_resumes_with_range(
    distribution: Distribution, seeded: str
) -> None:
    options = ProxyOptions(cut_blobs=1, cut_after=CUT_AFTER)
    async with RegistryProxy(distribution.host, options) as proxy:
        source = open_registry(proxy.host, "app:v1")
        try:
            [image] = await source.load()
            layer = image.manifest.layers[0]
            chunks = [c async for c in source.blob_chunks(layer, chunk_size=30_000)]
        finally:
            await source.aclose()
    data = b"".join(chunks)
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layer.digest
    assert all(len(chunk) == 30_000 for chunk in chunks[:-1])
    assert proxy.cuts == 1
    assert proxy.ranges() == [f"bytes={CUT_AFTER}-"]
    assert source.stats.resumed == 1
    assert source.stats.restarted == 0
    assert [event.cause for event in source.retry_events] == ["PayloadError"]


async def test_a_registry_ignoring_range_restarts_the_blob(
    distribution: Distribution, seeded: str
) -> None:
    options = ProxyOptions(cut_blobs=1, cut_after=CUT_AFTER, ignore_range=True)
    async with RegistryProxy(distribution.host, options) as proxy:
        source = open_registry(proxy.host, "app:v1")
        try:
            [image] = await source.load()
            await read_blobs(source, Image(None, image.manifest), 50_000)
        finally:
            await source.aclose()
    assert source.stats.resumed == 0
    assert source.stats.restarted == 1
    assert source.stats.bytes_discarded == CUT_AFTER


async def test_head_manifest_matches_get(distribution: Distribution, seeded: str) -> None:
    async with RegistryClient(
        registry=distribution.host, endpoint=distribution.host, settings=INSECURE
    ) as client:
        head = await head_manifest(client, "app", "v1", where="app:v1")
        manifest = await get_manifest(client, "app", head.digest, where="app@digest")
    assert head.digest == seeded == manifest.digest
    assert (head.media_type, head.size) == (manifest.media_type, manifest.size)
    assert client.base_url is not None
    assert client.base_url.scheme == "http"


# --------------------------------------------------------------------------------- pacing


async def test_a_rate_paces_every_request_of_a_source(
    distribution: Distribution, seeded: str
) -> None:
    clock = FakeClock()
    # One request per (fake) second and no burst beyond one: each request after the first
    # waits a whole second, so the clock counts the requests that went out.
    bucket = TokenBucket(rate=1.0, burst=1.0, clock=clock, sleep=clock.sleep)
    options = RegistrySourceOptions(client=INSECURE, config=FAST, rate=bucket)
    source = RegistrySource(parse_source(f"docker://{distribution.host}/app:v1"), options)
    try:
        [image] = await source.load()
        await read_blobs(source, image, chunk_size=LAYER_SIZE)
    finally:
        await source.aclose()
    # The manifest GET, then each blob's GET: the ping is not paced (one per client).
    requests = 1 + len(list(image.blobs()))
    assert clock.sleeps == [1.0] * (requests - 1)
    assert image.manifest.digest == seeded
