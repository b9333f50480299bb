"""Sources: OCI layouts and docker-archive files, what load() accepts and refuses, blob streams."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from layerhoist.errors import BlobMissingError, CorruptBlobError, ManifestError, SourceError
from layerhoist.image import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Image,
    sha256_digest,
)
from layerhoist.refs import parse_source
from layerhoist.sources import DockerArchiveSource, OciLayoutSource, Source, open_source
from layerhoist.testing.synthetic import write_oci_layout

LAYER_SIZE = 4096
REF_NAME = "org.opencontainers.image.ref.name"


# ----------------------------------------------------------------------------------- helpers


def make_layout(path: Path, **overrides: Any) -> list[str]:
    arguments: dict[str, Any] = {"images": 2, "layers_per_image": 2, "layer_size": LAYER_SIZE}
    return write_oci_layout(path, **{**arguments, **overrides})


def read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())


def blob_file(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def index_entries(layout: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = read_json(layout / "index.json")["manifests"]
    return entries


def write_index(layout: Path, entries: list[dict[str, Any]]) -> None:
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    (layout / "index.json").write_text(json.dumps(document))


def add_blob(layout: Path, data: bytes, media_type: str) -> dict[str, Any]:
    digest = sha256_digest(data)
    blob_file(layout, digest).write_bytes(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def manifest_of(layout: Path, tag: str) -> dict[str, Any]:
    (entry,) = [e for e in index_entries(layout) if e["annotations"][REF_NAME] == tag]
    document: dict[str, Any] = read_json(blob_file(layout, entry["digest"]))
    return document


def tar_directory(directory: Path, archive: Path) -> None:
    with tarfile.open(archive, "w") as tar:
        for item in sorted(directory.rglob("*")):
            tar.add(item, arcname=str(item.relative_to(directory)), recursive=False)


def make_tar(
    archive: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None
) -> None:
    with tarfile.open(archive, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)


async def load(text: str) -> list[Image]:
    source = open_source(parse_source(text))
    try:
        return await source.load()
    finally:
        await source.aclose()


async def read_blob(
    source: Source, descriptor: Descriptor, *, offset: int = 0, chunk_size: int = 1000
) -> list[bytes]:
    return [
        chunk
        async for chunk in source.blob_chunks(descriptor, offset=offset, chunk_size=chunk_size)
    ]


async def assert_blobs_match_digests(source: Source, images: list[Image]) -> None:
    for image in images:
        for descriptor in image.blobs():
            data = b"".join(await read_blob(source, descriptor, chunk_size=1500))
            assert len(data) == descriptor.size
            assert sha256_digest(data) == descriptor.digest


# ------------------------------------------------------------------------------- OCI layouts


@pytest.mark.anyio
async def test_oci_single_tag(tmp_path: Path) -> None:
    make_layout(tmp_path)
    source = open_source(parse_source(f"oci:{tmp_path}:v2"))
    assert isinstance(source, OciLayoutSource)
    assert source.description == f"oci:{tmp_path}:v2"
    (image,) = await source.load()
    entry = index_entries(tmp_path)[1]
    assert image.tag == "v2"
    assert image.manifest.digest == entry["digest"]
    assert image.manifest.raw == blob_file(tmp_path, entry["digest"]).read_bytes()
    assert image.manifest.media_type == OCI_MANIFEST
    assert image.children == ()
    assert len(image.blobs()) == 3
    await assert_blobs_match_digests(source, [image])
    await source.aclose()


@pytest.mark.anyio
async def test_oci_without_tag_loads_every_tagged_image(tmp_path: Path) -> None:
    tags = make_layout(tmp_path, images=3, shared_layers=1)
    images = await load(f"oci:{tmp_path}")
    assert [image.tag for image in images] == tags == ["v1", "v2", "v3"]
    assert len({image.blobs()[1].digest for image in images}) == 1


@pytest.mark.anyio
async def test_oci_multiarch_index(tmp_path: Path) -> None:
    make_layout(tmp_path, images=1, multiarch=True)
    source = open_source(parse_source(f"oci:{tmp_path}:v1"))
    (image,) = await source.load()
    assert image.manifest.is_index
    assert image.manifest.media_type == OCI_INDEX
    assert [child.platform_name for child in image.manifest.manifests] == [
        "linux/amd64",
        "linux/arm64",
    ]
    assert [child.digest for child in image.children] == [
        child.digest for child in image.manifest.manifests
    ]
    assert image.manifests_in_push_order()[-1] is image.manifest
    assert len(image.blobs()) == 6
    await assert_blobs_match_digests(source, [image])
    await source.aclose()


@pytest.mark.anyio
async def test_oci_unknown_tag_lists_present_tags(tmp_path: Path) -> None:
    make_layout(tmp_path)
    with pytest.raises(SourceError) as info:
        await load(f"oci:{tmp_path}:v9")
    assert str(info.value) == f"oci:{tmp_path}: no image tagged 'v9' (tags present: v1, v2)"


@pytest.mark.anyio
async def test_oci_missing_blob_is_named(tmp_path: Path) -> None:
    make_layout(tmp_path)
    layer = manifest_of(tmp_path, "v1")["layers"][1]["digest"]
    blob_file(tmp_path, layer).unlink()
    with pytest.raises(BlobMissingError) as info:
        await load(f"oci:{tmp_path}:v1")
    message = str(info.value)
    assert message.startswith(f"oci:{tmp_path}: image v1: blob {layer[:19]} is missing")
    assert str(blob_file(tmp_path, layer)) in message
    assert await load(f"oci:{tmp_path}:v2")


@pytest.mark.anyio
async def test_oci_blob_that_is_a_fifo_is_named_as_such_at_load(tmp_path: Path) -> None:
    make_layout(tmp_path)
    layer = manifest_of(tmp_path, "v1")["layers"][1]["digest"]
    blob_file(tmp_path, layer).unlink()
    os.mkfifo(blob_file(tmp_path, layer))
    with pytest.raises(SourceError) as info, anyio.fail_after(10):
        await load(f"oci:{tmp_path}:v1")
    assert not isinstance(info.value, BlobMissingError)
    assert f"{blob_file(tmp_path, layer)} is a FIFO, not a regular file" in str(info.value)


@pytest.mark.anyio
async def test_oci_blob_replaced_by_a_fifo_after_load_fails_without_hanging(
    tmp_path: Path,
) -> None:
    make_layout(tmp_path)
    source = open_source(parse_source(f"oci:{tmp_path}:v1"))
    try:
        [image] = await source.load()
        layer = image.manifest.layers[0]
        blob_file(tmp_path, layer.digest).unlink()
        os.mkfifo(blob_file(tmp_path, layer.digest))
        # A blocking open of a FIFO waits for a writer that never comes.
        with (
            pytest.raises(SourceError, match="is a FIFO, not a regular file"),
            anyio.fail_after(10),
        ):
            await read_blob(source, layer)
    finally:
        await source.aclose()


@pytest.mark.anyio
async def test_docker_archive_that_is_a_fifo_fails_without_hanging(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    os.mkfifo(archive)
    with pytest.raises(SourceError, match="is a FIFO, not a regular file"), anyio.fail_after(10):
        await load(f"docker-archive:{archive}")


@pytest.mark.anyio
async def test_oci_blob_of_wrong_size(tmp_path: Path) -> None:
    make_layout(tmp_path)
    layer = manifest_of(tmp_path, "v1")["layers"][0]["digest"]
    with blob_file(tmp_path, layer).open("ab") as file:
        file.write(b"extra")
    with pytest.raises(CorruptBlobError) as info:
        await load(f"oci:{tmp_path}")
    assert info.value.digest == layer
    assert f"blob {layer[:19]} is {LAYER_SIZE + 5} bytes but its descriptor says {LAYER_SIZE}" in (
        str(info.value)
    )


@pytest.mark.anyio
async def test_oci_manifest_bytes_not_matching_digest(tmp_path: Path) -> None:
    make_layout(tmp_path)
    digest = index_entries(tmp_path)[0]["digest"]
    path = blob_file(tmp_path, digest)
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion":3'))
    with pytest.raises(CorruptBlobError, match="does not match its digest") as info:
        await load(f"oci:{tmp_path}:v1")
    assert info.value.digest == digest


@pytest.mark.anyio
async def test_oci_broken_manifest_json(tmp_path: Path) -> None:
    make_layout(tmp_path)
    broken = add_blob(tmp_path, b'{"schemaVersion": 2, "config": ', OCI_MANIFEST)
    write_index(tmp_path, [{**broken, "annotations": {REF_NAME: "bad"}}])
    with pytest.raises(ManifestError) as info:
        await load(f"oci:{tmp_path}:bad")
    assert str(info.value).startswith(f"oci:{tmp_path}: image bad: manifest sha256:")
    assert "is not valid JSON" in str(info.value)


@pytest.mark.anyio
async def test_oci_index_entry_that_is_not_a_manifest(tmp_path: Path) -> None:
    make_layout(tmp_path)
    blob = add_blob(tmp_path, b"hello", "text/plain")
    write_index(tmp_path, [{**blob, "annotations": {REF_NAME: "odd"}}])
    with pytest.raises(ManifestError, match="has media type 'text/plain'"):
        await load(f"oci:{tmp_path}")


@pytest.mark.anyio
async def test_oci_missing_child_manifest_names_platform(tmp_path: Path) -> None:
    make_layout(tmp_path, images=1, multiarch=True)
    index = read_json(blob_file(tmp_path, index_entries(tmp_path)[0]["digest"]))
    blob_file(tmp_path, index["manifests"][1]["digest"]).unlink()
    with pytest.raises(BlobMissingError, match=r"image v1 \(linux/arm64\): manifest sha256:"):
        await load(f"oci:{tmp_path}")


@pytest.mark.anyio
async def test_oci_nested_index_refused(tmp_path: Path) -> None:
    make_layout(tmp_path, images=1, multiarch=True)
    inner = index_entries(tmp_path)[0]
    outer = add_blob(
        tmp_path,
        json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [inner]}).encode(),
        OCI_INDEX,
    )
    write_index(tmp_path, [{**outer, "annotations": {REF_NAME: "nest"}}])
    with pytest.raises(ManifestError, match=r"nested index .* is not supported"):
        await load(f"oci:{tmp_path}")


@pytest.mark.anyio
async def test_oci_layout_files_missing_or_broken(tmp_path: Path) -> None:
    make_layout(tmp_path)
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(ManifestError, match=r"unsupported imageLayoutVersion '2.0.0'"):
        await load(f"oci:{tmp_path}")
    (tmp_path / "oci-layout").unlink()
    assert len(await load(f"oci:{tmp_path}")) == 2
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(ManifestError, match=r"index\.json: manifest sha256:\S+ is not valid JSON"):
        await load(f"oci:{tmp_path}")
    (tmp_path / "index.json").unlink()
    with pytest.raises(SourceError) as info:
        await load(f"oci:{tmp_path}")
    assert str(info.value) == f"oci:{tmp_path}: no index.json, so not an OCI image layout"


@pytest.mark.anyio
async def test_oci_path_not_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(SourceError, match="not a directory"):
        await load(f"oci:{file}")
    with pytest.raises(SourceError) as info:
        await load(f"oci:{tmp_path / 'absent'}")
    assert str(info.value) == f"oci:{tmp_path / 'absent'}: no such directory"


@pytest.mark.anyio
async def test_oci_untagged_images(tmp_path: Path) -> None:
    make_layout(tmp_path)
    entries = index_entries(tmp_path)
    for entry in entries:
        del entry["annotations"]
    write_index(tmp_path, entries[:1])
    (image,) = await load(f"oci:{tmp_path}")
    assert image.tag is None
    assert image.name == entries[0]["digest"][:19]
    write_index(tmp_path, entries)
    with pytest.raises(SourceError, match="2 untagged images and no tags"):
        await load(f"oci:{tmp_path}")
    write_index(tmp_path, [])
    with pytest.raises(SourceError, match="holds no images"):
        await load(f"oci:{tmp_path}")


@pytest.mark.anyio
async def test_oci_one_tag_for_two_images_refused(tmp_path: Path) -> None:
    make_layout(tmp_path)
    entries = index_entries(tmp_path)
    entries[1]["annotations"][REF_NAME] = "v1"
    write_index(tmp_path, entries)
    first, second = (entry["digest"][:19] for entry in entries)
    with pytest.raises(SourceError) as info:
        await load(f"oci:{tmp_path}")
    assert str(info.value) == (
        f"oci:{tmp_path}: tag 'v1' names two different images ({first}, {second}); "
        "select one in the source reference"
    )
    with pytest.raises(SourceError, match=f"tag 'v1' names 2 different images .{first}, {second}"):
        await load(f"oci:{tmp_path}:v1")
    write_index(tmp_path, [entries[0], entries[0]])
    assert [image.tag for image in await load(f"oci:{tmp_path}")] == ["v1"]


# ------------------------------------------------------------------------------ blob streams


@pytest.fixture(params=["oci", "docker-archive"])
def streaming_source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    layout = tmp_path / "layout"
    make_layout(layout, images=1, layers_per_image=1, layer_size=3 * 4096)
    if request.param == "oci":
        yield open_source(parse_source(f"oci:{layout}"))
    else:
        tar_directory(layout, tmp_path / "image.tar")
        yield open_source(parse_source(f"docker-archive:{tmp_path / 'image.tar'}"))


@pytest.mark.anyio
async def test_blob_chunks_exact_from_any_offset(streaming_source: Source) -> None:
    (image,) = await streaming_source.load()
    layer = image.manifest.layers[0]
    whole = b"".join(await read_blob(streaming_source, layer, chunk_size=layer.size))
    assert sha256_digest(whole) == layer.digest
    for offset in (0, 1, 511, 4096, layer.size - 1, layer.size):
        for chunk_size in (7, 512, 1000, layer.size, layer.size + 10):
            chunks = await read_blob(streaming_source, layer, offset=offset, chunk_size=chunk_size)
            assert b"".join(chunks) == whole[offset:]
            assert all(len(chunk) == chunk_size for chunk in chunks[:-1])
            assert all(0 < len(chunk) <= chunk_size for chunk in chunks)
    await streaming_source.aclose()


@pytest.mark.anyio
async def test_blob_chunks_rejects_bad_requests(streaming_source: Source) -> None:
    (image,) = await streaming_source.load()
    layer = image.manifest.layers[0]
    with pytest.raises(ValueError, match="chunk_size"):
        streaming_source.blob_chunks(layer, chunk_size=0)
    with pytest.raises(ValueError, match="offset"):
        streaming_source.blob_chunks(layer, offset=layer.size + 1, chunk_size=10)
    stranger = Descriptor(layer.media_type, sha256_digest(b"stranger"), 8)
    with pytest.raises(BlobMissingError, match="belongs to no loaded image"):
        streaming_source.blob_chunks(stranger, chunk_size=10)
    await streaming_source.aclose()


@pytest.mark.anyio
async def test_blob_shrunk_after_load_is_corrupt(tmp_path: Path) -> None:
    make_layout(tmp_path, images=1, layers_per_image=1)
    source = open_source(parse_source(f"oci:{tmp_path}"))
    (image,) = await source.load()
    layer = image.manifest.layers[0]
    path = blob_file(tmp_path, layer.digest)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptBlobError, match="ends 3096 bytes early") as info:
        await read_blob(source, layer, chunk_size=512)
    assert info.value.digest == layer.digest


@pytest.mark.anyio
async def test_blob_streams_hold_one_chunk_at_a_time(tmp_path: Path) -> None:
    layer_size = 8 * 1024 * 1024
    chunk_size = 64 * 1024
    make_layout(tmp_path, images=1, layers_per_image=1, layer_size=layer_size)
    source = open_source(parse_source(f"oci:{tmp_path}"))
    (image,) = await source.load()
    layer = image.manifest.layers[0]
    sha = hashlib.sha256()
    tracemalloc.start()
    try:
        async for chunk in source.blob_chunks(layer, chunk_size=chunk_size):
            sha.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "sha256:" + sha.hexdigest() == layer.digest
    assert peak < layer_size // 8


@pytest.mark.anyio
async def test_archive_closed_then_read(tmp_path: Path) -> None:
    make_layout(tmp_path / "layout", images=1, layers_per_image=1)
    tar_directory(tmp_path / "layout", tmp_path / "image.tar")
    source = open_source(parse_source(f"docker-archive:{tmp_path / 'image.tar'}"))
    (image,) = await source.load()
    await source.aclose()
    with pytest.raises(SourceError, match="was closed"):
        await read_blob(source, image.manifest.layers[0])


# ------------------------------------------------------------------ docker-archive: OCI in tar


@pytest.mark.anyio
async def test_oci_layout_in_tar(tmp_path: Path) -> None:
    make_layout(tmp_path / "layout", images=2, multiarch=True)
    tar_directory(tmp_path / "layout", tmp_path / "image.tar")
    source = open_source(parse_source(f"docker-archive:{tmp_path / 'image.tar'}"))
    assert isinstance(source, DockerArchiveSource)
    images = await source.load()
    direct = await load(f"oci:{tmp_path / 'layout'}")
    assert [(image.tag, image.manifest.digest) for image in images] == [
        (image.tag, image.manifest.digest) for image in direct
    ]
    await assert_blobs_match_digests(source, images)
    await source.aclose()
    (second,) = await load(f"docker-archive:{tmp_path / 'image.tar'}:v2")
    assert second.manifest.digest == direct[1].manifest.digest


@pytest.mark.anyio
async def test_docker25_archive_prefers_index_and_matches_full_names(tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    make_layout(layout, images=1)
    entries = index_entries(layout)
    entries[0]["annotations"]["io.containerd.image.name"] = "docker.io/example/app:v1"
    write_index(layout, entries)
    # Docker 25+ also writes a legacy manifest.json; this one is deliberately unusable.
    (layout / "manifest.json").write_text('[{"Config": "absent.json", "Layers": []}]')
    tar_directory(layout, tmp_path / "image.tar")
    archive = tmp_path / "image.tar"
    for selector in ("v1", "example/app:v1", "docker.io/example/app:v1"):
        (image,) = await load(f"docker-archive:{archive}:{selector}")
        assert image.tag == "v1"
        assert image.manifest.digest == entries[0]["digest"]
        assert image.manifest.media_type == OCI_MANIFEST
    with pytest.raises(SourceError, match="no image tagged 'other/app:v1'"):
        await load(f"docker-archive:{archive}:other/app:v1")


# --------------------------------------------------------------- docker-archive: legacy form


def legacy_archive(
    archive: Path,
    images: dict[str, list[str]],
    *,
    layers: tuple[bytes, ...] = (b"layer one" * 100, b"layer two" * 300),
    drop: str | None = None,
) -> tuple[bytes, tuple[bytes, ...]]:
    """A ``docker save`` archive of legacy form: one image of ``layers`` per key of ``images``.

    Keys label configs (so images differ), values are the RepoTags. The second layer directory
    is a symlink to the first layer's directory form, as docker writes duplicates.
    """
    layer_tars = tuple(_tar_bytes({"file": content}) for content in layers)
    files: dict[str, bytes] = {}
    for index, data in enumerate(layer_tars):
        files[f"layer{index}/layer.tar"] = data
    entries = []
    config = b""
    for label, repo_tags in images.items():
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"label": label}},
                "rootfs": {
                    "type": "layers",
                    "diff_ids": [sha256_digest(data) for data in layer_tars],
                },
            }
        ).encode()
        config_name = sha256_digest(config).removeprefix("sha256:") + ".json"
        files[config_name] = config
        entries.append(
            {
                "Config": config_name,
                "RepoTags": repo_tags or None,
                "Layers": ["link0/layer.tar", "layer1/layer.tar"],
            }
        )
    files["manifest.json"] = json.dumps(entries).encode()
    if drop is not None:
        del files[drop]
    make_tar(archive, files, symlinks={"link0/layer.tar": "../layer0/layer.tar"})
    return config, layer_tars


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.anyio
async def test_legacy_archive_synthesizes_docker_manifest(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    config, layer_tars = legacy_archive(archive, {"a": ["example/app:1.0", "example/app:latest"]})
    source = open_source(parse_source(f"docker-archive:{archive}"))
    images = await source.load()
    assert [image.tag for image in images] == ["1.0", "latest"]
    assert images[0].manifest == images[1].manifest
    manifest = images[0].manifest
    assert manifest.media_type == DOCKER_MANIFEST
    assert manifest.config == Descriptor(DOCKER_CONFIG, sha256_digest(config), len(config))
    assert manifest.layers == tuple(
        Descriptor(DOCKER_LAYER, sha256_digest(data), len(data)) for data in layer_tars
    )
    document = json.loads(manifest.raw)
    assert document["schemaVersion"] == 2
    assert document["mediaType"] == DOCKER_MANIFEST
    await assert_blobs_match_digests(source, images)
    await source.aclose()


@pytest.mark.anyio
async def test_legacy_manifest_is_stable_across_runs_and_archives(tmp_path: Path) -> None:
    legacy_archive(tmp_path / "one.tar", {"a": ["app:1"]})
    legacy_archive(tmp_path / "two.tar", {"a": ["app:1"]})
    first = (await load(f"docker-archive:{tmp_path / 'one.tar'}"))[0].manifest.raw
    again = (await load(f"docker-archive:{tmp_path / 'one.tar'}"))[0].manifest.raw
    other = (await load(f"docker-archive:{tmp_path / 'two.tar'}"))[0].manifest.raw
    assert first == again == other


@pytest.mark.anyio
async def test_legacy_selection_by_name_tag_and_tag(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    legacy_archive(archive, {"a": ["app:1", "app:2"], "b": ["other/tool:1"], "c": ["x:solo"]})
    (solo,) = await load(f"docker-archive:{archive}:solo")
    assert solo.tag == "solo"
    (app,) = await load(f"docker-archive:{archive}:app:1")
    (hub,) = await load(f"docker-archive:{archive}:docker.io/library/app:1")
    (tool,) = await load(f"docker-archive:{archive}:other/tool:1")
    assert app.tag == tool.tag == "1"
    assert app.manifest == hub.manifest
    assert app.manifest != tool.manifest
    with pytest.raises(SourceError, match=r"tag '1' names 2 different images \(app:1, other/tool"):
        await load(f"docker-archive:{archive}:1")
    with pytest.raises(SourceError, match="tag '1' names two different images"):
        await load(f"docker-archive:{archive}")
    with pytest.raises(SourceError, match="no image tagged 'app:9'"):
        await load(f"docker-archive:{archive}:app:9")


@pytest.mark.anyio
async def test_legacy_untagged_single_image(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    legacy_archive(archive, {"a": []})
    (image,) = await load(f"docker-archive:{archive}")
    assert image.tag is None


@pytest.mark.anyio
async def test_legacy_missing_layer_and_config(tmp_path: Path) -> None:
    legacy_archive(tmp_path / "no-layer.tar", {"a": ["app:1"]}, drop="layer1/layer.tar")
    with pytest.raises(BlobMissingError, match=r"image 1: layer layer1/layer\.tar in .* missing"):
        await load(f"docker-archive:{tmp_path / 'no-layer.tar'}")
    config, _ = legacy_archive(tmp_path / "full.tar", {"a": ["app:1"]})
    config_name = sha256_digest(config).removeprefix("sha256:") + ".json"
    legacy_archive(tmp_path / "no-config.tar", {"a": ["app:1"]}, drop=config_name)
    with pytest.raises(BlobMissingError, match=f"image 1: {config_name} in .* is missing"):
        await load(f"docker-archive:{tmp_path / 'no-config.tar'}")


@pytest.mark.anyio
async def test_legacy_bad_documents(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha256_digest(b"x")]}})
    make_tar(
        archive,
        {
            "c.json": config.encode(),
            "l1.tar": b"1",
            "l2.tar": b"2",
            "manifest.json": json.dumps(
                [{"Config": "c.json", "RepoTags": ["a:1"], "Layers": ["l1.tar", "l2.tar"]}]
            ).encode(),
        },
    )
    with pytest.raises(ManifestError, match=r"lists 1 diff_ids but manifest.json lists 2 layers"):
        await load(f"docker-archive:{archive}")
    make_tar(archive, {"manifest.json": b'[{"Config": "c.json", "RepoTags": ["a:1"]}]'})
    with pytest.raises(ManifestError, match="entry 0 has no Layers list"):
        await load(f"docker-archive:{archive}")
    make_tar(archive, {"manifest.json": b"[{"})
    with pytest.raises(ManifestError, match=r"manifest\.json in .* is not valid JSON"):
        await load(f"docker-archive:{archive}")


# ------------------------------------------------------------- docker-archive: bad archives


@pytest.mark.anyio
async def test_archive_path_problems(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        await load(f"docker-archive:{tmp_path / 'absent.tar'}")
    assert str(info.value) == f"docker-archive:{tmp_path / 'absent.tar'}: no such file"
    with pytest.raises(SourceError, match="is a directory, not a tar archive"):
        await load(f"docker-archive:{tmp_path}")


@pytest.mark.anyio
async def test_compressed_archive_refused(tmp_path: Path) -> None:
    make_layout(tmp_path / "layout", images=1)
    tar_directory(tmp_path / "layout", tmp_path / "image.tar")
    packed = tmp_path / "image.tar.gz"
    packed.write_bytes(gzip.compress((tmp_path / "image.tar").read_bytes()))
    with pytest.raises(SourceError) as info:
        await load(f"docker-archive:{packed}")
    assert str(info.value) == (
        f"docker-archive:{packed} is gzip-compressed: decompress it first "
        "(docker save writes a plain tar)"
    )


@pytest.mark.anyio
async def test_not_a_tar_or_not_an_image_archive(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"this is not a tar archive at all" * 40)
    with pytest.raises(SourceError, match="is not a readable tar archive"):
        await load(f"docker-archive:{garbage}")
    other = tmp_path / "other.tar"
    make_tar(other, {"README": b"hello"})
    with pytest.raises(SourceError, match=r"neither index.json nor manifest.json found"):
        await load(f"docker-archive:{other}")


@pytest.mark.anyio
async def test_truncated_archive_refused(tmp_path: Path) -> None:
    make_layout(tmp_path / "layout", images=1, layers_per_image=1, layer_size=64 * 1024)
    tar_directory(tmp_path / "layout", tmp_path / "image.tar")
    data = (tmp_path / "image.tar").read_bytes()
    layer = manifest_of(tmp_path / "layout", "v1")["layers"][0]["digest"].removeprefix("sha256:")
    cut = data.index(layer.encode()) + 4096
    (tmp_path / "image.tar").write_bytes(data[:cut])
    with pytest.raises(SourceError, match="is not a readable tar archive: unexpected end of data"):
        await load(f"docker-archive:{tmp_path / 'image.tar'}")


# ------------------------------------------------------------------- skopeo as independent peer


@pytest.mark.anyio
async def test_skopeo_written_docker_archive(tmp_path: Path, skopeo: str) -> None:
    layout = tmp_path / "layout"
    make_layout(layout, images=2, layers_per_image=3)
    archive = tmp_path / "skopeo.tar"
    await anyio.run_process(
        [skopeo, "copy", "-q", f"oci:{layout}:v2", f"docker-archive:{archive}:example/app:1.0"]
    )
    expected = manifest_of(layout, "v2")
    source = open_source(parse_source(f"docker-archive:{archive}"))
    images = await source.load()
    assert [image.tag for image in images] == ["1.0"]
    manifest = images[0].manifest
    assert manifest.media_type == DOCKER_MANIFEST
    assert [layer.digest for layer in manifest.layers] == [
        layer["digest"] for layer in expected["layers"]
    ]
    assert [layer.size for layer in manifest.layers] == [LAYER_SIZE] * 3
    assert manifest.config is not None
    assert manifest.config.digest == expected["config"]["digest"]
    await assert_blobs_match_digests(source, images)
    await source.aclose()
    for selector in ("example/app:1.0", "docker.io/example/app:1.0", "1.0"):
        (image,) = await load(f"docker-archive:{archive}:{selector}")
        assert image.manifest == manifest
