"""The synthetic generator: deterministic bytes, valid layouts that skopeo accepts."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from layerhoist.image import OCI_INDEX, OCI_LAYER, OCI_MANIFEST
from layerhoist.testing.synthetic import (
    GENERATION_BLOCK,
    MIN_LAYER_SIZE,
    synthetic_chunks,
    write_oci_layout,
)

LAYER_SIZE = 8192


def read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())


def blob_path(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def test_chunks_are_deterministic_and_independent_of_chunk_size() -> None:
    size = 2 * GENERATION_BLOCK + 12345
    whole = b"".join(synthetic_chunks(7, size, chunk_size=size))
    assert len(whole) == size
    for chunk_size in (1000, GENERATION_BLOCK, GENERATION_BLOCK + 1, 3 * GENERATION_BLOCK):
        chunks = list(synthetic_chunks(7, size, chunk_size=chunk_size))
        assert b"".join(chunks) == whole
        assert all(len(chunk) == chunk_size for chunk in chunks[:-1])
        assert 0 < len(chunks[-1]) <= chunk_size


def test_chunks_prefix_stable_and_seed_dependent() -> None:
    long = b"".join(synthetic_chunks(1, 3000, chunk_size=1024))
    assert b"".join(synthetic_chunks(1, 3000, chunk_size=1)) == long
    short = b"".join(synthetic_chunks(1, 1000, chunk_size=1024))
    assert long[:1000] == short
    assert b"".join(synthetic_chunks(2, 3000, chunk_size=1024)) != long
    assert list(synthetic_chunks(1, 0, chunk_size=10)) == []
    with pytest.raises(ValueError, match="chunk_size"):
        list(synthetic_chunks(1, 10, chunk_size=0))


def test_chunks_are_incompressible() -> None:
    data = b"".join(synthetic_chunks(3, 256 * 1024, chunk_size=65536))
    assert len(zlib.compress(data, 9)) > len(data)


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(item.relative_to(path)): item.read_bytes() for item in path.rglob("*") if item.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    arguments: dict[str, Any] = {"images": 2, "layers_per_image": 2, "layer_size": LAYER_SIZE}
    first = write_oci_layout(tmp_path / "a", seed=5, **arguments)
    second = write_oci_layout(tmp_path / "b", seed=5, **arguments)
    write_oci_layout(tmp_path / "c", seed=6, **arguments)
    assert first == second == ["v1", "v2"]
    tree_a = _tree(tmp_path / "a")
    assert tree_a == _tree(tmp_path / "b")
    assert not any(name.endswith(".partial") for name in tree_a)
    blobs_a = {name for name in tree_a if name.startswith("blobs/")}
    blobs_c = {name for name in _tree(tmp_path / "c") if name.startswith("blobs/")}
    assert not blobs_a & blobs_c


def test_layout_is_valid_and_blobs_match_digests(tmp_path: Path) -> None:
    tags = write_oci_layout(
        tmp_path,
        images=3,
        layers_per_image=3,
        layer_size=LAYER_SIZE,
        shared_layers=1,
        tag_prefix="release-",
    )
    assert tags == ["release-1", "release-2", "release-3"]
    assert read_json(tmp_path / "oci-layout") == {"imageLayoutVersion": "1.0.0"}
    for item in (tmp_path / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(item.read_bytes()).hexdigest() == item.name
    index = read_json(tmp_path / "index.json")
    assert index["mediaType"] == OCI_INDEX
    entries = index["manifests"]
    assert [entry["annotations"]["org.opencontainers.image.ref.name"] for entry in entries] == tags
    layer_sets = []
    for entry in entries:
        assert entry["mediaType"] == OCI_MANIFEST
        manifest = read_json(blob_path(tmp_path, entry["digest"]))
        config = read_json(blob_path(tmp_path, manifest["config"]["digest"]))
        digests = [layer["digest"] for layer in manifest["layers"]]
        assert config["rootfs"] == {"type": "layers", "diff_ids": digests}
        assert all(layer["mediaType"] == OCI_LAYER for layer in manifest["layers"])
        assert all(layer["size"] == LAYER_SIZE for layer in manifest["layers"])
        layer_sets.append(digests)
        with tarfile.open(blob_path(tmp_path, digests[-1])) as archive:
            (member,) = archive.getmembers()
            assert member.isfile()
            assert member.size == LAYER_SIZE - MIN_LAYER_SIZE
    shared = {layers[0] for layers in layer_sets}
    unique = [digest for layers in layer_sets for digest in layers[1:]]
    assert len(shared) == 1
    assert len(set(unique)) == len(unique) == 6


def test_multiarch_layout_has_platform_children(tmp_path: Path) -> None:
    tags = write_oci_layout(
        tmp_path, images=1, layers_per_image=2, layer_size=LAYER_SIZE, multiarch=True
    )
    assert tags == ["v1"]
    (entry,) = read_json(tmp_path / "index.json")["manifests"]
    assert entry["mediaType"] == OCI_INDEX
    index = read_json(blob_path(tmp_path, entry["digest"]))
    platforms = [child["platform"] for child in index["manifests"]]
    assert platforms == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]
    layers = [
        [layer["digest"] for layer in read_json(blob_path(tmp_path, child["digest"]))["layers"]]
        for child in index["manifests"]
    ]
    assert not set(layers[0]) & set(layers[1])


@pytest.mark.parametrize("multiarch", [False, True])
def test_skopeo_accepts_the_layout(tmp_path: Path, multiarch: bool, skopeo: str) -> None:
    write_oci_layout(
        tmp_path, images=2, layers_per_image=2, layer_size=LAYER_SIZE, multiarch=multiarch
    )
    index = read_json(tmp_path / "index.json")
    for architecture in ("amd64", "arm64") if multiarch else ("amd64",):
        result = subprocess.run(
            [skopeo, "--override-arch", architecture, "inspect", f"oci:{tmp_path}:v2"],
            capture_output=True,
            check=True,
            text=True,
        )
        inspected = json.loads(result.stdout)
        assert inspected["Architecture"] == architecture
        assert len(inspected["Layers"]) == 2
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", f"oci:{tmp_path}:v2"], capture_output=True, check=True
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == index["manifests"][1]["digest"]


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"layer_size": 1000}, "multiple of 512"),
        ({"layer_size": 1024}, "at least 1536"),
        ({"shared_layers": 3}, "shared_layers"),
        ({"images": -1}, "images"),
    ],
)
def test_rejects_bad_arguments(tmp_path: Path, arguments: dict[str, int], fragment: str) -> None:
    settings: dict[str, Any] = {
        "images": 1,
        "layers_per_image": 2,
        "layer_size": LAYER_SIZE,
        **arguments,
    }
    with pytest.raises(ValueError, match=fragment):
        write_oci_layout(tmp_path, **settings)


def test_smallest_layer_is_a_valid_empty_member(tmp_path: Path) -> None:
    write_oci_layout(tmp_path, images=1, layers_per_image=1, layer_size=MIN_LAYER_SIZE)
    (entry,) = read_json(tmp_path / "index.json")["manifests"]
    (layer,) = read_json(blob_path(tmp_path, entry["digest"]))["layers"]
    with tarfile.open(blob_path(tmp_path, layer["digest"])) as archive:
        assert [member.size for member in archive.getmembers()] == [0]
