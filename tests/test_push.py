"""End to end: layerhoist.push into the embedded registry over HTTP, read back by skopeo."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from layerhoist import PushConfig
from layerhoist.api import push
from layerhoist.destinations import DestinationOptions
from layerhoist.errors import RepositoryNotFoundError
from layerhoist.registry import EmbeddedRegistry
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.units import MiB

# The pushes find dummy credentials in the environment, as a user's would.
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("aws_credentials")]

#: Small enough to be quick, large enough to need two 5 MiB parts.
TWO_PART_LAYER = 6 * MiB
SMALL_LAYER = 64 * 1024
#: Fast backoff so retry tests do not wait.
FAST = PushConfig(backoff_initial=0.001, backoff_max=0.01)


def options(registry: EmbeddedRegistry, *, create: bool = True) -> DestinationOptions:
    return DestinationOptions(endpoint_url=registry.endpoint_url, create_repository=create)


def docker_ref(registry: EmbeddedRegistry, reference: str) -> str:
    return f"docker://{registry.endpoint_url.removeprefix('http://')}/{reference}"


async def skopeo_digest(skopeo: str, registry: EmbeddedRegistry, reference: str) -> str:
    """The digest of the manifest skopeo reads (the registry runs on this event loop)."""
    raw = (
        await anyio.run_process(
            [skopeo, "inspect", "--raw", "--tls-verify=false", docker_ref(registry, reference)]
        )
    ).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


async def skopeo_copy(
    skopeo: str, registry: EmbeddedRegistry, reference: str, dest: Path, *extra: str
) -> None:
    await anyio.run_process(
        [
            skopeo,
            "copy",
            *extra,
            "--src-tls-verify=false",
            docker_ref(registry, reference),
            # dir: keeps every blob and the manifest byte for byte (oci: would gzip
            # uncompressed layers).
            f"dir:{dest}",
        ]
    )


def layout_index(layout: Path) -> dict[str, str]:
    index = json.loads((layout / "index.json").read_text())
    return {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in index["manifests"]
    }


async def test_push_layout_reads_back_with_skopeo_and_rerun_uploads_nothing(
    tmp_path: Path, registry: EmbeddedRegistry, skopeo: str
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(
        layout, images=3, layers_per_image=2, layer_size=TWO_PART_LAYER, seed=7, shared_layers=1
    )
    result = await push(f"oci:{layout}", "ecr-public:team/app", options=options(registry))
    assert result.ok, [i.error for i in result.images]
    assert len(result.images) == 3
    # One shared layer + 3 unique layers + 3 configs, the shared one uploaded once.
    uploaded = [b for b in result.blobs if b.status == "uploaded"]
    assert len(uploaded) == 7
    for tag, digest in layout_index(layout).items():
        assert await skopeo_digest(skopeo, registry, f"team/app:{tag}") == digest
    copied = tmp_path / "copied"
    await skopeo_copy(skopeo, registry, "team/app:v2", copied)
    manifest = (copied / "manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == layout_index(layout)["v2"]
    blobs = [d["digest"] for d in json.loads(manifest)["layers"]]
    blobs.append(json.loads(manifest)["config"]["digest"])
    for digest in blobs:
        data = (copied / digest.removeprefix("sha256:")).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest

    again = await push(f"oci:{layout}", "ecr-public:team/app", options=options(registry))
    assert again.ok
    assert again.bytes_uploaded == 0
    assert {b.status for b in again.blobs} == {"present"}


async def test_multiarch_index_children_first_then_tag(
    tmp_path: Path, registry: EmbeddedRegistry, skopeo: str
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(
        layout, images=1, layers_per_image=1, layer_size=SMALL_LAYER, seed=3, multiarch=True
    )
    result = await push(f"oci:{layout}:v1", "ecr-public:multi", options=options(registry))
    assert result.ok
    assert await skopeo_digest(skopeo, registry, "multi:v1") == layout_index(layout)["v1"]
    await skopeo_copy(skopeo, registry, "multi:v1", tmp_path / "arm", "--override-arch=arm64")


async def test_destination_tag_renames_a_single_image(
    tmp_path: Path, registry: EmbeddedRegistry, skopeo: str
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, images=2, layers_per_image=1, layer_size=SMALL_LAYER)
    result = await push(f"oci:{layout}:v2", "ecr-public:renamed:stable", options=options(registry))
    assert result.ok
    assert await skopeo_digest(skopeo, registry, "renamed:stable") == layout_index(layout)["v2"]


async def test_docker_archive_made_by_skopeo(
    tmp_path: Path, registry: EmbeddedRegistry, skopeo: str
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, images=1, layers_per_image=2, layer_size=SMALL_LAYER, seed=11)
    archive = tmp_path / "image.tar"
    await anyio.run_process(
        [skopeo, "copy", f"oci:{layout}:v1", f"docker-archive:{archive}:example/app:v1"]
    )
    result = await push(
        f"docker-archive:{archive}", "ecr-public:archived", options=options(registry)
    )
    assert result.ok, [i.error for i in result.images]
    [image] = result.images
    assert image.destination == "ecr-public:archived:v1"
    assert await skopeo_digest(skopeo, registry, "archived:v1") == image.digest


async def test_corrupt_source_blob_fails_its_image_only(
    tmp_path: Path, registry: EmbeddedRegistry, skopeo: str
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, images=3, layers_per_image=1, layer_size=SMALL_LAYER, seed=5)
    victim = json.loads((layout / "blobs" / "sha256" / layout_index(layout)["v2"][7:]).read_bytes())
    layer_digest = victim["layers"][0]["digest"]
    blob = layout / "blobs" / "sha256" / layer_digest[7:]
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))

    result = await push(f"oci:{layout}", "ecr-public:corrupt", options=options(registry))
    assert not result.ok
    by_tag = {i.destination.rsplit(":", 1)[1]: i for i in result.images}
    assert by_tag["v1"].status == by_tag["v3"].status == "pushed"
    assert by_tag["v2"].status == "failed"
    assert layer_digest in (by_tag["v2"].error or "")
    assert "corrupt" in (by_tag["v2"].error or "")
    missing = await anyio.run_process(
        [skopeo, "inspect", "--raw", "--tls-verify=false", docker_ref(registry, "corrupt:v2")],
        check=False,
    )
    assert missing.returncode != 0
    failed = next(b for b in result.blobs if b.digest == layer_digest)
    assert failed.attempts == 1  # a corrupt source is not retried


async def test_unknown_repository_without_create(
    tmp_path: Path, registry: EmbeddedRegistry
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, images=1, layers_per_image=1, layer_size=SMALL_LAYER)
    with pytest.raises(RepositoryNotFoundError, match="--create-repo"):
        await push(f"oci:{layout}", "ecr-public:nowhere", options=options(registry, create=False))


# Twenty images through injected faults and tight quotas, then skopeo reads each back.
@pytest.mark.slow
async def test_chaos_every_image_lands_intact(
    tmp_path: Path, make_registry: Any, skopeo: str
) -> None:
    from layerhoist.registry import SimulationSettings

    layout = tmp_path / "layout"
    write_oci_layout(layout, images=20, layers_per_image=2, layer_size=SMALL_LAYER, seed=9)
    chaos = SimulationSettings(
        fault_rate=0.1,
        drop_rate=0.05,
        corrupt_rate=0.1,
        quotas={"UploadLayerPart": 40.0, "CompleteLayerUpload": 20.0, "PutImage": 10.0},
        seed=1234,
    )
    async with make_registry(simulation=chaos) as registry:
        result = await push(
            f"oci:{layout}",
            "ecr-public:chaos",
            # The registry enforces tight quotas: pace to the published ones and adapt.
            config=FAST.replace(
                pacing="published", layer_attempts=20, part_attempts=8, retry_budget=10_000
            ),
            options=options(registry),
        )
        assert result.ok, [i.error for i in result.images if i.error]
        causes = result.retry_causes()
        assert sum(causes.values()) == len(result.retries) > 0
        assert "InvalidLayerException" in causes  # corrupted parts were caught and requeued
        assert "ServerException" in causes
        # The chaos was aimed at the pusher: the reader that checks its result gets a calm
        # registry (faults reach /v2/ reads too).
        registry.simulator.update({"fault_rate": 0.0, "drop_rate": 0.0, "corrupt_rate": 0.0})
        for tag, digest in layout_index(layout).items():
            assert await skopeo_digest(skopeo, registry, f"chaos:{tag}") == digest
