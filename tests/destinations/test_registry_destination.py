"""``docker://`` as a destination, against a real registry (Debian's docker-registry).

Every result is read back with skopeo: the digest it sees is the source's, and it can copy
the image out again.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

import layerhoist
from conftest import DISTRIBUTION_PASSWORD, DISTRIBUTION_USER
from layerhoist.destinations import DestinationOptions
from layerhoist.errors import CredentialsError
from layerhoist.image import sha256_digest
from layerhoist.testing.distribution import Distribution
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.transfer.config import PushConfig
from layerhoist.units import MiB
from registry_proxy import ProxyOptions, RegistryProxy

pytestmark = pytest.mark.anyio

#: More than one default part, so a streamed PUT carries several parts.
LAYER_SIZE = 9 * MiB
SMALL_LAYER = 64 * 1024
PLAIN_HTTP = DestinationOptions(tls_verify=False)
FAST = PushConfig(backoff_initial=0.001, backoff_max=0.01)


def layout_digest(layout: Path, tag: str) -> str:
    """The digest ``index.json`` of ``layout`` gives the image tagged ``tag``."""
    index = json.loads((layout / "index.json").read_bytes())
    (entry,) = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    digest: str = entry["digest"]
    return digest


async def skopeo_digest(skopeo: str, reference: str) -> str:
    """The manifest digest skopeo reads for ``reference`` (``docker://…``)."""
    done = await anyio.run_process([skopeo, "inspect", "--tls-verify=false", reference])
    digest: str = json.loads(done.stdout)["Digest"]
    return digest


async def skopeo_copy_out(skopeo: str, reference: str, target: Path) -> None:
    """``skopeo copy --all`` of ``reference`` into an OCI layout: every blob readable."""
    await anyio.run_process(
        [skopeo, "copy", "--quiet", "--all", "--src-tls-verify=false", reference, f"oci:{target}"]
    )


async def test_single_image_lands_and_skopeo_reads_it(
    distribution: Distribution, skopeo: str, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, images=1, layers_per_image=2, layer_size=LAYER_SIZE)
    target = f"docker://{distribution.host}/single/app"
    result = await layerhoist.copy(f"oci:{layout}:v1", target, config=FAST, options=PLAIN_HTTP)
    assert result.ok, result
    assert await skopeo_digest(skopeo, f"{target}:v1") == layout_digest(layout, "v1")
    await skopeo_copy_out(skopeo, f"{target}:v1", tmp_path / "out")
    again = await layerhoist.copy(f"oci:{layout}:v1", target, config=FAST, options=PLAIN_HTTP)
    assert again.ok
    assert {blob.status for blob in again.blobs} == {"present"}


async def test_multi_arch_index_lands_children_first(
    distribution: Distribution, skopeo: str, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(
        layout, images=1, layers_per_image=1, layer_size=SMALL_LAYER, multiarch=True, seed=7
    )
    target = f"docker://{distribution.host}/multi/app"
    result = await layerhoist.copy(f"oci:{layout}:v1", target, config=FAST, options=PLAIN_HTTP)
    assert result.ok, result
    raw = (
        await anyio.run_process([skopeo, "inspect", "--raw", "--tls-verify=false", f"{target}:v1"])
    ).stdout
    assert sha256_digest(raw) == layout_digest(layout, "v1")
    await skopeo_copy_out(skopeo, f"{target}:v1", tmp_path / "out")


async def test_basic_auth_right_and_wrong(
    distribution_htpasswd: Distribution, skopeo: str, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, images=1, layers_per_image=1, layer_size=SMALL_LAYER, seed=3)
    target = f"docker://{distribution_htpasswd.host}/auth/app"
    right = DestinationOptions(
        tls_verify=False, credentials=f"{DISTRIBUTION_USER}:{DISTRIBUTION_PASSWORD}"
    )
    assert (await layerhoist.copy(f"oci:{layout}:v1", target, config=FAST, options=right)).ok
    wrong_password = "not-the-password-42"
    wrong = DestinationOptions(
        tls_verify=False, credentials=f"{DISTRIBUTION_USER}:{wrong_password}"
    )
    with pytest.raises(CredentialsError) as info:
        await layerhoist.copy(f"oci:{layout}:v1", target, config=FAST, options=wrong)
    message = str(info.value)
    assert "\n" not in message and wrong_password not in message
    assert distribution_htpasswd.host in message and "auth/app" in message


async def test_a_corrupt_source_blob_is_named_and_not_tagged(
    distribution: Distribution, skopeo: str, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, images=1, layers_per_image=1, layer_size=SMALL_LAYER, seed=11)
    manifest = json.loads(
        (layout / "blobs" / "sha256" / layout_digest(layout, "v1").split(":")[1]).read_bytes()
    )
    layer = manifest["layers"][0]["digest"]
    path = layout / "blobs" / "sha256" / layer.split(":")[1]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    target = f"docker://{distribution.host}/corrupt/app"
    result = await layerhoist.copy(f"oci:{layout}:v1", target, config=FAST, options=PLAIN_HTTP)
    assert not result.ok
    (image,) = result.images
    assert image.error is not None and layer in image.error
    done = await anyio.run_process(
        [skopeo, "inspect", "--tls-verify=false", f"{target}:v1"], check=False
    )
    assert done.returncode != 0
    # The streamed PUT of the corrupt blob was cut before its end: the registry kept nothing.
    hex_digest = layer.split(":")[1]
    stored = distribution.root / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest
    assert not stored.exists()


async def test_bearer_tokens_are_asked_for_push(
    distribution: Distribution, skopeo: str, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, images=1, layers_per_image=1, layer_size=SMALL_LAYER, seed=5)
    async with RegistryProxy(distribution.host, ProxyOptions(token_lifetime=60.0)) as proxy:
        target = f"docker://{proxy.host}/token/app"
        result = await layerhoist.copy(f"oci:{layout}:v1", target, config=FAST, options=PLAIN_HTTP)
        assert result.ok, result
        assert "repository:token/app:pull,push" in proxy.token_scopes
    source_digest = layout_digest(layout, "v1")
    assert (
        await skopeo_digest(skopeo, f"docker://{distribution.host}/token/app:v1") == source_digest
    )
