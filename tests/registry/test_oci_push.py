"""The ``/v2/`` write side: raw requests, and skopeo pushing and reading back (one store)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from conftest import sha256_digest
from layerhoist.registry import EmbeddedRegistry
from layerhoist.registry.cli import configure_parser, settings_from_args
from layerhoist.testing.synthetic import write_oci_layout

pytestmark = pytest.mark.anyio

REPO = "mirror/app"
SKOPEO_TIMEOUT = 60
LAYER_SIZE = 4096


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client."""
    async with aiohttp.ClientSession() as session:
        yield session


async def run_skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run skopeo; fail the test with its stderr when ``check`` and it fails."""
    with anyio.fail_after(SKOPEO_TIMEOUT):
        result = await anyio.run_process(list(args), check=False)
    if check and result.returncode != 0:
        pytest.fail(f"skopeo {args[1]} failed: {result.stderr.decode()}")
    return result


def oci_layout(tmp_path: Path, *, multiarch: bool = False) -> Path:
    layout = tmp_path / ("multi" if multiarch else "single")
    write_oci_layout(
        layout, images=1, layers_per_image=2, layer_size=LAYER_SIZE, multiarch=multiarch
    )
    return layout


async def skopeo_push(
    skopeo: str, layout: Path, destination: str, *extra: str, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    return await run_skopeo(
        skopeo,
        "copy",
        "--quiet",
        "--preserve-digests",
        "--all",
        "--dest-tls-verify=false",
        *extra,
        f"oci:{layout}:v1",
        f"docker://{destination}",
        check=check,
    )


async def expect_error(response: aiohttp.ClientResponse, status: int, code: str) -> None:
    """The response is a distribution error document of ``code`` with ``status``."""
    assert response.status == status, await response.text()
    assert (await response.json())["errors"][0]["code"] == code


def config_only_manifest(config_digest: str, size: int) -> bytes:
    """An OCI image manifest of a config and no layers."""
    document = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": size,
        },
        "layers": [],
    }
    return json.dumps(document).encode()


def layout_digest(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    return str(index["manifests"][0]["digest"])


async def push_blob(
    http: aiohttp.ClientSession, base: str, repo: str, data: bytes, *, chunks: int = 2
) -> str:
    """POST, ``chunks`` PATCHes with Content-Range, and a PUT without a body."""
    async with http.post(f"{base}/v2/{repo}/blobs/uploads/") as response:
        assert response.status == 202, await response.text()
        location = response.headers["Location"]
        assert response.headers["Docker-Upload-UUID"] in location
    step = max(-(-len(data) // chunks), 1)
    for start in range(0, len(data), step):
        piece = data[start : start + step]
        headers = {"Content-Range": f"{start}-{start + len(piece) - 1}"}
        async with http.patch(base + location, data=piece, headers=headers) as response:
            assert response.status in (201, 202), await response.text()
            assert response.headers["Range"] == f"0-{start + len(piece) - 1}"
            location = response.headers["Location"]
    digest = sha256_digest(data)
    async with http.put(base + location, params={"digest": digest}) as response:
        assert response.status == 201, await response.text()
        assert response.headers["Docker-Content-Digest"] == digest
    return digest


async def test_skopeo_pushes_and_reads_back_through_v2(
    registry: EmbeddedRegistry, skopeo: str, tmp_path: Path, ecr_client: Any
) -> None:
    host = registry.endpoint_url.removeprefix("http://")
    for multiarch in (False, True):
        layout = oci_layout(tmp_path, multiarch=multiarch)
        repo = f"{REPO}-{int(multiarch)}"
        await skopeo_push(skopeo, layout, f"{host}/{repo}:v1")
        result = await run_skopeo(
            skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repo}:v1"
        )
        assert sha256_digest(result.stdout) == layout_digest(layout)
        copy = tmp_path / f"copy-{int(multiarch)}"
        await run_skopeo(
            skopeo,
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            f"docker://{host}/{repo}:v1",
            f"oci:{copy}:v1",
        )
        assert layout_digest(copy) == layout_digest(layout)
    # The same image through the ECR JSON API.
    async with ecr_client(registry.endpoint_url, "ecr") as client:
        answer = await client.batch_get_image(
            repositoryName=f"{REPO}-0", imageIds=[{"imageTag": "v1"}]
        )
        assert answer["images"][0]["imageId"]["imageDigest"] == layout_digest(tmp_path / "single")
        described = await client.describe_images(repositoryName=f"{REPO}-1")
        tagged = [d for d in described["imageDetails"] if d.get("imageTags")]
        assert [d["imageDigest"] for d in tagged] == [layout_digest(tmp_path / "multi")]


async def test_an_image_pushed_through_the_json_api_is_pullable_and_mountable(
    registry: EmbeddedRegistry, ecr_client: Any, ecr: Any, http: aiohttp.ClientSession
) -> None:
    base = registry.endpoint_url
    layers = [b"layer one\n" * 100]
    async with ecr_client(base) as client:
        await client.create_repository(repositoryName="json/src")
        pushed = await ecr.push_image(client, "json/src", layers=layers, tag="v1", part_size=2048)
    layer = sha256_digest(layers[0])
    async with http.head(f"{base}/v2/json/src/blobs/{layer}") as response:
        assert response.status == 200
    params = {"mount": layer, "from": "json/src"}
    async with http.post(f"{base}/v2/json/dst/blobs/uploads/", params=params) as response:
        assert response.status == 201
        assert response.headers["Docker-Content-Digest"] == layer
    # A blob missing from the source repository opens a normal session.
    params = {"mount": sha256_digest(b"nowhere"), "from": "json/src"}
    async with http.post(f"{base}/v2/json/dst/blobs/uploads/", params=params) as response:
        assert response.status == 202
    config = await push_blob(http, base, "json/dst", pushed.config)
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    url = f"{base}/v2/json/dst/manifests/v2"
    async with http.put(url, data=pushed.manifest, headers=headers) as response:
        assert response.status == 201, await response.text()
        assert response.headers["Docker-Content-Digest"] == pushed.digest
    assert config == sha256_digest(pushed.config)
    async with ecr_client(base) as client:
        images = await client.describe_images(repositoryName="json/dst")
        assert images["imageDetails"][0]["imageDigest"] == pushed.digest


async def test_upload_styles_and_refusals(
    registry: EmbeddedRegistry, http: aiohttp.ClientSession
) -> None:
    base = registry.endpoint_url
    data = bytes(range(256)) * 40
    digest = sha256_digest(data)
    # Monolithic POST with the body.
    url = f"{base}/v2/{REPO}/blobs/uploads/"
    async with http.post(url, params={"digest": digest}, data=data) as response:
        assert response.status == 201, await response.text()
    # POST then one PUT with the whole body.
    async with http.post(url) as response:
        location = response.headers["Location"]
    other = data[::-1] + b"x"
    async with http.put(base + location, params={"digest": sha256_digest(other)}, data=other) as r:
        assert r.status == 201
    # Chunked PATCHes, then an empty blob.
    await push_blob(http, base, REPO, b"chunked " * 999, chunks=3)
    await push_blob(http, base, REPO, b"", chunks=1)
    # A Content-Range that does not continue the upload.
    async with http.post(url) as response:
        location = response.headers["Location"]
    async with http.patch(base + location, data=b"abc", headers={"Content-Range": "5-7"}) as r:
        await expect_error(r, 416, "RANGE_INVALID")
    # A wrong digest.
    async with http.put(base + location, params={"digest": digest}, data=b"xyz") as r:
        await expect_error(r, 400, "DIGEST_INVALID")
    # A manifest referencing a missing blob, an unknown upload, a method nobody serves.
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "x", "digest": sha256_digest(b"none"), "size": 4},
        "layers": [],
    }
    async with http.put(f"{base}/v2/{REPO}/manifests/t", data=json.dumps(manifest)) as r:
        await expect_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    async with http.patch(
        f"{base}/v2/{REPO}/blobs/uploads/{'0' * 8}-0000-0000-0000-{'0' * 12}"
    ) as r:
        await expect_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    async with http.post(f"{base}/v2/{REPO}/tags/list") as r:
        await expect_error(r, 405, "UNSUPPORTED")


async def test_manifest_put_delete_and_tag_paging(
    registry: EmbeddedRegistry, http: aiohttp.ClientSession
) -> None:
    base = registry.endpoint_url
    config = b'{"architecture":"amd64","os":"linux"}'
    config_digest = await push_blob(http, base, REPO, config, chunks=1)
    manifest = config_only_manifest(config_digest, len(config))
    digest = f"sha256:{hashlib.sha256(manifest).hexdigest()}"
    for tag in ("a", "b", "c"):
        async with http.put(f"{base}/v2/{REPO}/manifests/{tag}", data=manifest) as response:
            assert response.status == 201
    async with http.put(f"{base}/v2/{REPO}/manifests/{digest}", data=manifest) as response:
        assert response.status == 201
    async with http.get(f"{base}/v2/{REPO}/tags/list", params={"n": "2"}) as response:
        assert (await response.json())["tags"] == ["a", "b"]
        assert 'rel="next"' in response.headers["Link"]
    async with http.get(f"{base}/v2/{REPO}/tags/list", params={"n": "2", "last": "b"}) as r:
        assert (await r.json())["tags"] == ["c"]
        assert "Link" not in r.headers
    async with http.delete(f"{base}/v2/{REPO}/manifests/a") as response:
        assert response.status == 202
    async with http.delete(f"{base}/v2/{REPO}/manifests/{digest}") as response:
        assert response.status == 202
    async with http.get(f"{base}/v2/{REPO}/manifests/b") as response:
        await expect_error(response, 404, "MANIFEST_UNKNOWN")


async def test_streamed_bodies_stay_within_the_limits(
    make_registry: Any, http: aiohttp.ClientSession
) -> None:
    async with make_registry(max_blob_size=1000, max_small_body_size=1024) as registry:
        base = registry.endpoint_url
        url = f"{base}/v2/{REPO}/blobs/uploads/"
        async with http.post(url, params={"digest": sha256_digest(b"")}, data=b"x" * 2000) as r:
            await expect_error(r, 413, "SIZE_INVALID")
        assert registry.body_bytes_held == 0


# Auth, the ECR flavors, the read side and the pull limit

USERS = {"alice": "wonderland-7"}
AUTH_REPO = "auth/app"
MOUNT_SOURCE, MOUNT_TARGET = "mount/source", "mount/target"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize("mode", ["basic", "token"])
async def test_skopeo_with_right_and_wrong_credentials(
    make_registry: Any, skopeo: str, tmp_path: Path, mode: str
) -> None:
    layout = oci_layout(tmp_path)
    async with make_registry(oci_auth=mode, oci_users=USERS) as registry:
        host = registry.endpoint_url.removeprefix("http://")
        wrong = await skopeo_push(
            skopeo, layout, f"{host}/{AUTH_REPO}:v1", "--dest-creds", "alice:nope", check=False
        )
        assert wrong.returncode != 0
        await skopeo_push(
            skopeo, layout, f"{host}/{AUTH_REPO}:v1", "--dest-creds", "alice:wonderland-7"
        )
        inspected = await run_skopeo(
            skopeo,
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            "alice:wonderland-7",
            f"docker://{host}/{AUTH_REPO}:v1",
        )
        assert sha256_digest(inspected.stdout) == layout_digest(layout)


async def test_challenges_and_token_scopes(make_registry: Any, http: aiohttp.ClientSession) -> None:
    async with make_registry(oci_auth="token", oci_users=USERS, oci_token_lifetime=60) as registry:
        base = registry.endpoint_url
        async with http.post(f"{base}/v2/{AUTH_REPO}/blobs/uploads/") as response:
            assert response.status == 401
            challenge = response.headers["WWW-Authenticate"]
            assert challenge.startswith(f'Bearer realm="{base}/_layerhoist/token"')
            assert f'scope="repository:{AUTH_REPO}:pull,push"' in challenge
            assert (await response.json())["errors"][0]["code"] == "UNAUTHORIZED"
        scope = {"service": "x", "scope": f"repository:{AUTH_REPO}:pull,push"}
        # Anonymous: pull only (push refused and left out of the token).
        async with http.get(f"{base}/_layerhoist/token", params=scope) as response:
            document = await response.json()
            assert set(document) == {"token", "access_token", "expires_in", "issued_at"}
        bearer = {"Authorization": f"Bearer {document['token']}"}
        async with http.post(f"{base}/v2/{AUTH_REPO}/blobs/uploads/", headers=bearer) as response:
            assert response.status == 401
        async with http.get(
            f"{base}/_layerhoist/token", params=scope, headers=basic("alice", "bad")
        ) as response:
            assert response.status == 401
        async with http.get(
            f"{base}/_layerhoist/token", params=scope, headers=basic(*next(iter(USERS.items())))
        ) as response:
            token = (await response.json())["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{base}/v2/{AUTH_REPO}/blobs/uploads/", headers=bearer) as response:
            assert response.status == 202
        async with http.post(f"{base}/v2/other/blobs/uploads/", headers=bearer) as response:
            assert response.status == 401


async def test_expired_tokens_are_refused(
    make_registry: Any, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    now = [1_000_000.0]
    settings_changes = {"oci_auth": "token", "oci_users": USERS, "oci_token_lifetime": 60.0}
    registry = make_registry(**settings_changes)
    registry = EmbeddedRegistry(registry.settings, wall_clock=lambda: now[0])
    async with registry:
        base = registry.endpoint_url
        params = {"scope": f"repository:{AUTH_REPO}:pull"}
        async with http.get(f"{base}/_layerhoist/token", params=params) as response:
            token = (await response.json())["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{base}/v2/{AUTH_REPO}/tags/list", headers=bearer) as response:
            assert response.status == 404  # admitted; the repository does not exist
        now[0] += 61
        async with http.get(f"{base}/v2/{AUTH_REPO}/tags/list", headers=bearer) as response:
            assert response.status == 401


async def test_tokens_revoked_before_the_expiry_they_announce(
    make_registry: Any, http: aiohttp.ClientSession
) -> None:
    now = [1_000_000.0]
    settings = make_registry(
        oci_auth="token", oci_users=USERS, oci_token_lifetime=300.0, oci_token_revoked_after=60.0
    ).settings
    async with EmbeddedRegistry(settings, wall_clock=lambda: now[0]) as registry:
        base = registry.endpoint_url
        params = {"scope": f"repository:{AUTH_REPO}:pull"}
        async with http.get(f"{base}/_layerhoist/token", params=params) as response:
            document = await response.json()
        assert document["expires_in"] == 300
        bearer = {"Authorization": f"Bearer {document['token']}"}
        url = f"{base}/v2/{AUTH_REPO}/tags/list"
        now[0] += 59
        async with http.get(url, headers=bearer) as response:
            assert response.status == 404  # admitted; the repository does not exist
        now[0] += 2
        async with http.get(url, headers=bearer) as response:
            await expect_error(response, 401, "UNAUTHORIZED")
            assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")
        stats = registry.stats()
        assert (stats["tokens_issued"], stats["tokens_refused"]) == (1, 1)


def test_serve_options_of_the_token_realm(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(
        ["--oci-token-lifetime", "5m", "--oci-token-revoked-after", "30s", "--blob-mounting"]
    )
    settings = settings_from_args(args, tmp_path)
    assert settings.oci_token_lifetime == 300.0
    assert settings.oci_token_revoked_after == 30.0
    assert settings.oci_token_validity == 30.0
    assert settings.blob_mounting
    defaults = settings_from_args(parser.parse_args([]), tmp_path)
    assert defaults.oci_token_validity == defaults.oci_token_lifetime
    assert not defaults.blob_mounting


async def mount(http: aiohttp.ClientSession, base: str, digest: str, source: str) -> int:
    """POST a mount of ``digest`` from ``source`` into MOUNT_TARGET; the status."""
    params = {"mount": digest, "from": source}
    url = f"{base}/v2/{MOUNT_TARGET}/blobs/uploads/"
    async with http.post(url, params=params) as response:
        if response.status == 202:
            assert "Location" in response.headers  # a session for the upload instead
        return response.status


@pytest.mark.parametrize("flavor", ["ecr", "ecr-public"])
async def test_ecr_flavors_mount_only_as_ecr_does(
    make_registry: Any, http: aiohttp.ClientSession, ecr_client: Any, ecr: Any, flavor: str
) -> None:
    async with make_registry(flavor=flavor) as registry:
        base = registry.endpoint_url
        layers = [b"shared layer\n" * 100]
        async with ecr_client(base, flavor) as client:
            for name in (MOUNT_SOURCE, MOUNT_TARGET):
                await client.create_repository(repositoryName=name)
            loose = await ecr.upload_layer(
                client, MOUNT_SOURCE, b"no manifest", part_size=LAYER_SIZE
            )
            if flavor == "ecr":
                setting = await client.get_account_setting(name="BLOB_MOUNTING")
                assert setting["value"] == "DISABLED"  # ECR's default
            pushed = await ecr.push_image(
                client, MOUNT_SOURCE, layers=layers, tag="v1", part_size=LAYER_SIZE
            )
            layer = sha256_digest(layers[0])
            # Mounting off: an upload session, never an error.
            assert await mount(http, base, layer, MOUNT_SOURCE) == 202
            if flavor == "ecr":
                await client.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")
                with pytest.raises(client.exceptions.InvalidParameterException):
                    await client.put_account_setting(name="BLOB_MOUNTING", value="MAYBE")
        expected = 201 if flavor == "ecr" else 202
        # Referenced by the source's manifest (layer and config): mounted on ECR, never on Public.
        assert await mount(http, base, layer, MOUNT_SOURCE) == expected
        assert await mount(http, base, sha256_digest(pushed.config), MOUNT_SOURCE) == expected
        # In the source repository but named by no manifest: not mounted (containers-roadmap#2860).
        assert await mount(http, base, loose, MOUNT_SOURCE) == 202
        requests: dict[str, int] = registry.stats()["requests"]
        assert requests.get("v2.mounts", 0) == (2 if flavor == "ecr" else 0)
        if flavor == "ecr":
            async with ecr_client(base, flavor) as client:
                await client.put_account_setting(name="BLOB_MOUNTING", value="DISABLED")
            assert await mount(http, base, layer, MOUNT_SOURCE) == 202


async def test_distribution_mounts_any_blob_the_source_holds(
    registry: EmbeddedRegistry, http: aiohttp.ClientSession
) -> None:
    base = registry.endpoint_url
    loose = await push_blob(http, base, MOUNT_SOURCE, b"no manifest names me")
    assert await mount(http, base, loose, MOUNT_SOURCE) == 201


@pytest.mark.parametrize("service", ["ecr", "ecr-public"])
async def test_ecr_flavor_quirks(
    make_registry: Any, http: aiohttp.ClientSession, ecr_client: Any, service: str
) -> None:
    part = 1024
    auth = "basic" if service == "ecr" else "token"
    async with make_registry(
        flavor=service, oci_auth=auth, min_part_size=part, part_size=part, max_part_size=part
    ) as registry:
        base = registry.endpoint_url
        async with ecr_client(base, service) as client:
            answer = await client.get_authorization_token()
            data = answer["authorizationData"]
            token = (data[0] if service == "ecr" else data)["authorizationToken"]
            if service == "ecr":
                assert data[0]["proxyEndpoint"] == base
            await client.create_repository(repositoryName=AUTH_REPO)
        user, _, password = base64.b64decode(token).decode().partition(":")
        assert user == "AWS"
        headers = basic(user, password)
        if service == "ecr-public":
            scope = {"scope": f"repository:{AUTH_REPO}:pull,push", "scope_": ""}
            async with http.get(
                f"{base}/_layerhoist/token", params=scope, headers=headers
            ) as response:
                headers = {"Authorization": f"Bearer {(await response.json())['token']}"}
        async with http.post(f"{base}/v2/missing/blobs/uploads/", headers=headers) as response:
            assert response.status in (401, 404)
        async with http.post(f"{base}/v2/{AUTH_REPO}/blobs/uploads/", headers=headers) as response:
            assert response.status == 202
            location = response.headers["Location"]
        async with http.patch(base + location, data=b"x" * 10, headers=headers) as response:
            assert response.status == 201  # ECR's 201 on PATCH
        async with http.patch(
            base + location, data=b"y", headers={**headers, "Content-Range": "0-0"}
        ) as response:
            await expect_error(response, 416, "BLOB_UPLOAD_INVALID")
        async with http.patch(base + location, data=b"z" * 10, headers=headers) as response:
            assert response.status == 201
        digest = sha256_digest(b"x" * 10 + b"z" * 10)
        async with http.put(base + location, params={"digest": digest}, headers=headers) as r:
            assert r.status == 400
            assert "at least" in (await r.json())["errors"][0]["message"]
        async with http.post(f"{base}/v2/{AUTH_REPO}/blobs/uploads/", headers=headers) as response:
            location = response.headers["Location"]
        wrong = sha256_digest(b"other")
        async with http.put(
            base + location, params={"digest": wrong}, data=b"abc", headers=headers
        ) as response:
            error = (await response.json())["errors"][0]
            assert error["code"] == "BLOB_UPLOAD_INVALID"
            assert error["message"].startswith("None of the provided layer digests match")


#: Bytes of a PATCH body sent before its connection is cut, of the length it declared.
CUT_SENT, CUT_DECLARED = 2048, 4096
#: Guards the waits for the registry to take in (or drop) a cut body.
CUT_GUARD_SECONDS = 10.0
CUT_POLL_SECONDS = 0.01


async def upload_range(http: aiohttp.ClientSession, url: str) -> str:
    """The ``Range`` an upload session's status GET answers."""
    async with http.get(url) as response:
        assert response.status == 204
        return response.headers["Range"]


async def range_becomes(http: aiohttp.ClientSession, url: str, expected: str) -> None:
    """Wait until the session's ``Range`` is ``expected``."""
    with anyio.fail_after(CUT_GUARD_SECONDS):
        while True:
            if await upload_range(http, url) == expected:
                return
            await anyio.sleep(CUT_POLL_SECONDS)


@pytest.mark.parametrize("flavor", ["distribution", "ecr"])
async def test_a_patch_cut_off_midway(
    make_registry: Any, http: aiohttp.ClientSession, ecr_client: Any, flavor: str
) -> None:
    """distribution keeps what arrived of a PATCH cut off midway; ECR's PATCH is an
    UploadLayerPart, which adds nothing unless it completes."""
    first = 1000
    async with make_registry(
        flavor=flavor, oci_stream_piece=1024, min_part_size=first, part_size=first
    ) as registry:
        base = registry.endpoint_url
        if flavor == "ecr":
            async with ecr_client(base, "ecr") as client:
                await client.create_repository(repositoryName=AUTH_REPO)
        async with http.post(f"{base}/v2/{AUTH_REPO}/blobs/uploads/") as response:
            location = response.headers["Location"]
        url = base + location
        async with http.patch(url, data=b"a" * first) as response:
            assert response.status in (201, 202)
        host, port = base.removeprefix("http://").split(":")
        cut = await anyio.connect_tcp(host, int(port))
        await cut.send(
            f"PATCH {location} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Length: {CUT_DECLARED}\r\n"
            f"Content-Range: {first}-{first + CUT_DECLARED - 1}\r\n\r\n".encode()
            + b"b" * CUT_SENT
        )
        # The pieces that arrived are in the upload while the request lasts.
        await range_becomes(http, url, f"0-{first + CUT_SENT - 1}")
        await cut.aclose()
        held = first + CUT_SENT if flavor == "distribution" else first
        if flavor == "ecr":
            await range_becomes(http, url, f"0-{first - 1}")
        # The next PATCH waits for the cut one to end, and must continue what is held.
        async with http.patch(
            url, data=b"c" * 100, headers={"Content-Range": f"{held}-{held + 99}"}
        ) as response:
            assert response.status in (201, 202), await response.text()
        assert await upload_range(http, url) == f"0-{held + 99}"
        data = b"a" * first + (b"b" * CUT_SENT if flavor == "distribution" else b"") + b"c" * 100
        async with http.put(url, params={"digest": sha256_digest(data)}) as response:
            assert response.status == 201, await response.text()


async def test_ecr_flavor_refuses_a_missing_repository(
    make_registry: Any, http: aiohttp.ClientSession
) -> None:
    async with (
        make_registry(flavor="ecr") as registry,
        http.post(f"{registry.endpoint_url}/v2/nowhere/blobs/uploads/") as response,
    ):
        await expect_error(response, 404, "NAME_UNKNOWN")


async def test_accept_negotiation_and_ranges_while_paced(
    make_registry: Any, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with make_registry() as registry:
        base = registry.endpoint_url
        data = bytes(range(256)) * 64
        digest = await push_blob(http, base, AUTH_REPO, data)
        manifest = config_only_manifest(digest, len(data))
        async with http.put(f"{base}/v2/{AUTH_REPO}/manifests/v1", data=manifest) as response:
            assert response.status == 201
        docker_only = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        async with http.get(f"{base}/v2/{AUTH_REPO}/manifests/v1", headers=docker_only) as response:
            await expect_error(response, 404, "MANIFEST_UNKNOWN")
        oci = {"Accept": "application/vnd.oci.image.manifest.v1+json, " + docker_only["Accept"]}
        async with http.get(f"{base}/v2/{AUTH_REPO}/manifests/v1", headers=oci) as response:
            assert response.status == 200
        registry.simulator.update({"bandwidth": "1GB/s"})
        blob = f"{base}/v2/{AUTH_REPO}/blobs/{digest}"
        async with http.get(blob, headers={"Range": "bytes=100-"}) as response:
            assert response.status == 206
            assert await response.read() == data[100:]
            assert response.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
        # A dropped connection in the middle of a blob, then the rest by Range.
        registry.simulator.update({"drop_rate": 1.0})
        with pytest.raises(aiohttp.ClientPayloadError):
            async with http.get(blob) as response:
                await response.read()
        registry.simulator.update({"drop_rate": 0.0})
        async with http.get(blob, headers={"Range": "bytes=0-99"}) as response:
            assert await response.read() == data[:100]


async def test_pull_limit(make_registry: Any, http: aiohttp.ClientSession) -> None:
    async with make_registry(pull_limit=2, pull_limit_window=3600.0) as registry:
        base = registry.endpoint_url
        config = await push_blob(http, base, AUTH_REPO, b"{}")
        manifest = config_only_manifest(config, 2)
        async with http.put(f"{base}/v2/{AUTH_REPO}/manifests/v1", data=manifest) as response:
            assert response.status == 201
        url = f"{base}/v2/{AUTH_REPO}/manifests/v1"
        for remaining in (1, 0):
            async with http.get(url) as response:
                assert response.status == 200
                assert response.headers["ratelimit-limit"] == "2;w=3600"
                assert response.headers["ratelimit-remaining"] == f"{remaining};w=3600"
        async with http.head(url) as response:
            assert response.status == 200  # HEAD is free
        async with http.get(url) as response:
            await expect_error(response, 429, "TOOMANYREQUESTS")
            assert "Retry-After" not in response.headers
