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
from conftest import Distribution
from layerhoist.destinations import DestinationOptions
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.transfer.config import PushConfig
from layerhoist.units import MiB

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
