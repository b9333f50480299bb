"""``layerhoist copy docker://… oci:…``: the skopeo-named options against a real registry.

Debian's docker-registry (CNCF distribution) is seeded by skopeo; skopeo reads the layouts
written back. The proxy of :mod:`registry_proxy` plays what distribution will not: Docker
Hub's pull-limit headers and a schema 1 manifest.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

import layerhoist
from commands import FAILED, OK, USAGE, one_line_error
from conftest import DISTRIBUTION_PASSWORD, DISTRIBUTION_USER, sha256_digest
from layerhoist.oci import ClientSettings
from layerhoist.oci.manifest import MANIFEST_ACCEPT
from layerhoist.sources.registry import PULL_LIMIT_RESERVE, RegistrySourceOptions
from layerhoist.testing.distribution import Distribution
from layerhoist.testing.synthetic import REF_NAME_ANNOTATION, write_oci_layout
from registry_proxy import ProxyOptions, RegistryProxy

pytestmark = pytest.mark.anyio

LAYER_SIZE = 4096
INSECURE = "--src-tls-verify=false"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"
FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: Docker Hub's window, as its ``ratelimit-*`` headers announce it.
HUB_WINDOW = 21600


async def layerhoist_cli(*args: str) -> Any:
    """Run the command in a real process, in this process's environment."""
    return await anyio.run_process([sys.executable, "-m", "layerhoist", *args], check=False)


@pytest.fixture(scope="module")
def seeded(distribution: Distribution, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``app:v1``, ``app:v2`` (single) and ``multi:v1`` (amd64 + arm64): name -> digest."""
    root = tmp_path_factory.mktemp("layouts")
    single = root / "single"
    write_oci_layout(single, images=2, layers_per_image=2, layer_size=LAYER_SIZE)
    digests = {f"app:{tag}": distribution.seed(single, tag, f"app:{tag}") for tag in ("v1", "v2")}
    multi = root / "multi"
    write_oci_layout(multi, images=1, layers_per_image=1, layer_size=LAYER_SIZE, multiarch=True)
    digests["multi:v1"] = distribution.seed(multi, "v1", "multi:v1", all_platforms=True)
    return digests


def layout_tags(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_bytes())
    return {e["annotations"][REF_NAME_ANNOTATION]: e["digest"] for e in index["manifests"]}


async def skopeo_raw(skopeo: str, reference: str) -> bytes:
    done = await anyio.run_process([skopeo, "inspect", "--raw", reference])
    raw: bytes = done.stdout
    return raw


@pytest.mark.parametrize(("command", "name"), [("copy", "app:v1"), ("push", "multi:v1")])
async def test_copy_single_and_multiarch_keep_digests(
    distribution: Distribution,
    seeded: dict[str, str],
    skopeo: str,
    tmp_path: Path,
    command: str,
    name: str,
) -> None:
    dest = tmp_path / "dest"
    done = await layerhoist_cli(
        command, f"docker://{distribution.host}/{name}", f"oci:{dest}:v1", INSECURE, "--json"
    )
    assert done.returncode == OK, done.stderr.decode()
    raw = await skopeo_raw(skopeo, f"oci:{dest}:v1")
    assert sha256_digest(raw) == seeded[name]
    report = json.loads(done.stdout)
    assert report["source_streams"] == {"resumed": 0, "restarted": 0}
    assert report["images"][0]["source_digest"] is None


async def test_platform_writes_a_one_child_index_and_names_both_digests(
    distribution: Distribution, seeded: dict[str, str], skopeo: str, tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    done = await layerhoist_cli(
        "copy",
        f"docker://{distribution.host}/multi:v1",
        f"oci:{dest}:arm",
        INSECURE,
        "--platform",
        "linux/arm64",
    )
    assert done.returncode == OK, done.stderr.decode()
    index = json.loads(await skopeo_raw(skopeo, f"oci:{dest}:arm"))
    assert [child["platform"]["architecture"] for child in index["manifests"]] == ["arm64"]
    new_digest = layout_tags(dest)["arm"]
    assert new_digest != seeded["multi:v1"]
    summary = done.stderr.decode().strip().splitlines()[-1]
    assert new_digest in summary and seeded["multi:v1"] in summary
    # The child is the source's, bytes and digest.
    source_index = json.loads((await _manifest_answer(distribution.host, "multi", "v1"))[0])
    assert index["manifests"] == [
        child for child in source_index["manifests"] if child["platform"]["architecture"] == "arm64"
    ]


@pytest.mark.parametrize(
    ("name", "platform", "fragment"),
    [
        ("multi:v1", "linux/s390x", "linux/amd64, linux/arm64"),
        ("app:v1", "linux/arm64", "single linux/amd64 image"),
        ("app:v1", "linux", "OS/ARCH"),
    ],
)
async def test_a_platform_not_there_is_a_usage_error(
    distribution: Distribution,
    seeded: dict[str, str],
    tmp_path: Path,
    name: str,
    platform: str,
    fragment: str,
) -> None:
    dest = tmp_path / "dest"
    done = await layerhoist_cli(
        "copy",
        f"docker://{distribution.host}/{name}",
        f"oci:{dest}:x",
        INSECURE,
        f"--platform={platform}",
    )
    assert done.returncode == USAGE
    assert fragment in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()
    assert not (dest / "index.json").exists()


async def test_all_tags_copies_every_tag(
    distribution: Distribution, seeded: dict[str, str], tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    done = await layerhoist_cli(
        "copy", f"docker://{distribution.host}/app", f"oci:{dest}", INSECURE, "--all-tags"
    )
    assert done.returncode == OK, done.stderr.decode()
    assert layout_tags(dest) == {"v1": seeded["app:v1"], "v2": seeded["app:v2"]}


@pytest.fixture(scope="module")
def seeded_auth(
    distribution_htpasswd: Distribution, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """``private:v1`` in the htpasswd registry; its digest."""
    layout = tmp_path_factory.mktemp("private")
    write_oci_layout(layout, images=1, layers_per_image=1, layer_size=LAYER_SIZE)
    return distribution_htpasswd.seed(layout, "v1", "private:v1")


async def test_src_creds_right_and_wrong(
    distribution_htpasswd: Distribution, seeded_auth: str, tmp_path: Path
) -> None:
    source = f"docker://{distribution_htpasswd.host}/private:v1"
    right = await layerhoist_cli(
        "copy",
        source,
        f"oci:{tmp_path / 'right'}:v1",
        INSECURE,
        "--src-creds",
        f"{DISTRIBUTION_USER}:{DISTRIBUTION_PASSWORD}",
    )
    assert right.returncode == OK, right.stderr.decode()
    assert layout_tags(tmp_path / "right") == {"v1": seeded_auth}
    wrong_password = "not-" + DISTRIBUTION_PASSWORD
    wrong = await layerhoist_cli(
        "copy",
        source,
        f"oci:{tmp_path / 'wrong'}:v1",
        INSECURE,
        "--src-creds",
        f"{DISTRIBUTION_USER}:{wrong_password}",
        "--json",
    )
    assert wrong.returncode == FAILED
    one_line_error(wrong)
    output = wrong.stdout.decode() + wrong.stderr.decode()
    assert wrong_password not in output and DISTRIBUTION_PASSWORD not in output
    assert len(wrong.stderr.decode().strip().splitlines()) == 1


async def test_dest_creds_and_dest_tls_verify_reach_a_registry_destination(
    distribution: Distribution,
    distribution_htpasswd: Distribution,
    seeded: dict[str, str],
    skopeo: str,
) -> None:
    # registry -> registry: docker-registry into the htpasswd one, credentials on both flags.
    source = f"docker://{distribution.host}/app:v1"
    dest = f"docker://{distribution_htpasswd.host}/mirrored/app:v1"
    creds = f"{DISTRIBUTION_USER}:{DISTRIBUTION_PASSWORD}"
    right = await layerhoist_cli(
        "copy", source, dest, INSECURE, "--dest-tls-verify=false", "--dest-creds", creds
    )
    assert right.returncode == OK, right.stderr.decode()
    raw = await anyio.run_process(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"--creds={creds}", dest]
    )
    assert sha256_digest(raw.stdout) == seeded["app:v1"]

    wrong_password = "not-" + DISTRIBUTION_PASSWORD
    wrong = await layerhoist_cli(
        "copy",
        source,
        f"docker://{distribution_htpasswd.host}/mirrored/other:v1",
        INSECURE,
        "--dest-tls-verify=false",
        "--dest-creds",
        f"{DISTRIBUTION_USER}:{wrong_password}",
    )
    assert wrong.returncode == FAILED
    assert "mirrored/other" in one_line_error(wrong)
    assert wrong_password not in wrong.stdout.decode() + wrong.stderr.decode()


async def test_chunk_size_uploads_in_patches_and_is_checked(
    distribution: Distribution, skopeo: str, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    layer_mib = 3
    write_oci_layout(
        layout, images=1, layers_per_image=2, layer_size=layer_mib * 1024 * 1024, seed=8
    )
    async with RegistryProxy(distribution.host) as proxy:

        async def patches_of(repository: str, *options: str) -> int:
            before = len(proxy.seen)
            dest = f"docker://{proxy.host}/{repository}:v1"
            done = await layerhoist_cli(
                "copy", f"oci:{layout}:v1", dest, "--dest-tls-verify=false", *options
            )
            assert done.returncode == OK, done.stderr.decode()
            raw = await anyio.run_process(
                [
                    skopeo,
                    "inspect",
                    "--raw",
                    "--tls-verify=false",
                    f"docker://{distribution.host}/{repository}:v1",
                ]
            )
            assert sha256_digest(raw.stdout) == layout_tags(layout)["v1"]
            return sum(seen.method == "PATCH" for seen in proxy.seen[before:])

        # A PATCH per MiB of each layer (and one for the small config); none by default.
        assert await patches_of("chunked/app", "--chunk-size", "1MiB") >= 2 * layer_mib
        assert await patches_of("streamed/app") == 0
    bad = await layerhoist_cli(
        "copy",
        f"oci:{layout}:v1",
        f"docker://{distribution.host}/chunked/app:v1",
        "--dest-tls-verify=false",
        "--chunk-size",
        "1GiB",
    )
    assert bad.returncode == USAGE
    assert "--chunk-size" in one_line_error(bad)


async def test_authfile_gives_the_source_credentials(
    distribution_htpasswd: Distribution, seeded_auth: str, tmp_path: Path
) -> None:
    auth = base64.b64encode(f"{DISTRIBUTION_USER}:{DISTRIBUTION_PASSWORD}".encode()).decode()
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {distribution_htpasswd.host: {"auth": auth}}}))
    dest = tmp_path / "dest"
    done = await layerhoist_cli(
        "copy",
        f"docker://{distribution_htpasswd.host}/private:v1",
        f"oci:{dest}:v1",
        INSECURE,
        "--authfile",
        str(authfile),
    )
    assert done.returncode == OK, done.stderr.decode()
    assert layout_tags(dest) == {"v1": seeded_auth}


async def test_library_copy_takes_source_options_and_platforms(
    distribution: Distribution, seeded: dict[str, str], tmp_path: Path
) -> None:
    dest = tmp_path / "dest"
    result = await layerhoist.copy(
        f"docker://{distribution.host}/multi:v1",
        f"oci:{dest}:amd",
        source_options=RegistrySourceOptions(client=ClientSettings(tls_verify=False)),
        platforms=["linux/amd64"],
    )
    assert result.ok
    [image] = result.images
    assert image.source_digest == seeded["multi:v1"]
    assert image.digest == layout_tags(dest)["amd"] != seeded["multi:v1"]


def _blob(layout: Path, data: bytes) -> dict[str, Any]:
    digest = sha256_digest(data)
    (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    return {"digest": digest, "size": len(data)}


async def test_a_nondistributable_layer_is_referenced_not_copied(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "blobs" / "sha256").mkdir(parents=True)
    (source / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    layer = b"\x1f\x8b local layer"
    foreign_digest = sha256_digest(b"foreign bytes, never in the layout")
    config = json.dumps({"os": "windows", "architecture": "amd64"}).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, **_blob(source, config)},
            "layers": [
                {
                    "mediaType": FOREIGN_LAYER,
                    "digest": foreign_digest,
                    "size": 34,
                    "urls": ["https://example.invalid/base.tar.gz"],
                },
                {"mediaType": DOCKER_LAYER, **_blob(source, layer)},
            ],
        }
    ).encode()
    entry = {"mediaType": DOCKER_MANIFEST, **_blob(source, manifest)}
    entry["annotations"] = {REF_NAME_ANNOTATION: "v1"}
    (source / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    dest = tmp_path / "dest"
    result = await layerhoist.copy(f"oci:{source}", f"oci:{dest}")
    assert result.ok, result
    assert layout_tags(dest) == {"v1": sha256_digest(manifest)}
    assert [blob.digest for blob in result.blobs] == [
        sha256_digest(config),
        sha256_digest(layer),
    ]
    assert not (dest / "blobs" / "sha256" / foreign_digest.removeprefix("sha256:")).exists()


async def _manifest_answer(host: str, repository: str, tag: str) -> tuple[bytes, str]:
    async with aiohttp.ClientSession() as session:
        url = f"http://{host}/v2/{repository}/manifests/{tag}"
        async with session.get(url, headers={"Accept": MANIFEST_ACCEPT}) as response:
            return await response.read(), response.content_type


async def test_the_pull_limit_stops_new_pulls_in_one_line(
    distribution: Distribution, seeded: dict[str, str], tmp_path: Path
) -> None:
    body, content_type = await _manifest_answer(distribution.host, "app", "v1")
    headers = {
        "Content-Type": content_type,
        "Docker-Content-Digest": sha256_digest(body),
        "ratelimit-limit": f"100;w={HUB_WINDOW}",
        "ratelimit-remaining": f"{PULL_LIMIT_RESERVE};w={HUB_WINDOW}",
    }
    answers = {"/v2/app/manifests/v1": (200, headers, body)}
    async with RegistryProxy(distribution.host, ProxyOptions(answers=answers)) as proxy:
        dest = tmp_path / "dest"
        done = await layerhoist_cli(
            "copy", f"docker://{proxy.host}/app", f"oci:{dest}", INSECURE, "--all-tags"
        )
        pulls = [s.path for s in proxy.seen if s.method == "GET" and "/manifests/" in s.path]
    assert done.returncode == FAILED
    line = one_line_error(done)
    assert "pull limit" in line and "6h 00m" in line and f"w={HUB_WINDOW}" in line
    # v1 was pulled and copied; v2's manifest GET was never started.
    assert pulls == ["/v2/app/manifests/v1"]
    assert layout_tags(dest) == {"v1": seeded["app:v1"]}
    assert f"{PULL_LIMIT_RESERVE} Docker Hub pulls left" in done.stderr.decode()


@pytest.mark.parametrize("media_type", [SCHEMA1, "application/vnd.example.unknown+json"])
async def test_schema1_and_unknown_types_are_one_line_exit_one(
    distribution: Distribution, tmp_path: Path, media_type: str
) -> None:
    body = json.dumps({"schemaVersion": 1, "name": "old", "tag": "v1"}).encode()
    headers = {"Content-Type": media_type, "Docker-Content-Digest": sha256_digest(body)}
    answers = {"/v2/old/manifests/v1": (200, headers, body)}
    async with RegistryProxy(distribution.host, ProxyOptions(answers=answers)) as proxy:
        done = await layerhoist_cli(
            "copy", f"docker://{proxy.host}/old:v1", f"oci:{tmp_path / 'd'}:v1", INSECURE
        )
    assert done.returncode == FAILED
    line = one_line_error(done)
    assert ("schema 1" if media_type == SCHEMA1 else "unsupported media type") in line
    assert len(done.stderr.decode().strip().splitlines()) == 1
