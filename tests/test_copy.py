"""End to end: layerhoist.copy into an OCI layout on disk, read back by skopeo."""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

import layerhoist
from layerhoist.destinations.oci_layout.destination import OciLayoutDestination
from layerhoist.destinations.oci_layout.files import TEMPORARY_PREFIX
from layerhoist.errors import DestinationError, UsageError
from layerhoist.image import Manifest
from layerhoist.testing.synthetic import REF_NAME_ANNOTATION, write_oci_layout

pytestmark = pytest.mark.anyio

SMALL_LAYER = 64 * 1024
#: Several parts per layer at the smallest part size the tests use.
PART_SIZE = 16 * 1024


def tagged(layout: Path) -> dict[str, str]:
    """Tag -> digest of every entry of a layout's index.json."""
    index = json.loads((layout / "index.json").read_bytes())
    return {
        entry["annotations"][REF_NAME_ANNOTATION]: entry["digest"] for entry in index["manifests"]
    }


def files_state(layout: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file under ``layout``: what a rewrite would change."""
    return {
        str(path.relative_to(layout)): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in layout.rglob("*")
        if path.is_file()
    }


def leftovers(layout: Path) -> list[Path]:
    """Temporary files the destination left behind."""
    return [path for path in layout.rglob("*") if path.name.startswith(TEMPORARY_PREFIX)]


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


async def skopeo_raw_digest(skopeo: str, reference: str) -> str:
    raw = (await anyio.run_process([skopeo, "inspect", "--raw", reference])).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source"
    write_oci_layout(
        path, images=2, layers_per_image=2, layer_size=SMALL_LAYER, shared_layers=1, multiarch=True
    )
    return path


async def test_copy_multiarch_layout_read_back_by_skopeo(
    tmp_path: Path, source: Path, skopeo: str
) -> None:
    dest = tmp_path / "new" / "dest"
    result = await layerhoist.copy(
        f"oci:{source}", f"oci:{dest}", config=layerhoist.PushConfig(part_size=PART_SIZE)
    )
    assert result.ok, result.summary()
    assert [image.destination for image in result.images] == [f"oci:{dest}:v1", f"oci:{dest}:v2"]
    assert tagged(dest) == tagged(source)
    assert json.loads((dest / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert leftovers(dest) == []
    for tag, digest in tagged(source).items():
        assert await skopeo_raw_digest(skopeo, f"oci:{dest}:{tag}") == digest
        other = tmp_path / "other"
        await anyio.run_process(
            [
                skopeo,
                "copy",
                "--all",
                "--preserve-digests",
                f"oci:{dest}:{tag}",
                f"oci:{other}:{tag}",
            ]
        )
        assert tagged(other)[tag] == digest
        for platform in ("amd64", "arm64"):
            child = await anyio.run_process(
                [skopeo, "--override-arch", platform, "inspect", f"oci:{dest}:{tag}"]
            )
            assert json.loads(child.stdout)["Architecture"] == platform


async def test_children_are_put_before_their_index_and_only_the_index_is_tagged(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Manifest, str | None, bool]] = []
    original = OciLayoutDestination.put_manifest

    async def spy(self: OciLayoutDestination, manifest: Manifest, *, tag: str | None) -> None:
        # Whether every child manifest is already a blob of the layout when the index is put.
        ready = all(blob(self.root, child.digest).is_file() for child in manifest.manifests)
        calls.append((manifest, tag, ready))
        await original(self, manifest, tag=tag)

    monkeypatch.setattr(OciLayoutDestination, "put_manifest", spy)
    result = await layerhoist.copy(f"oci:{source}", f"oci:{tmp_path / 'dest'}")
    assert result.ok
    tags = {tag for manifest, tag, _ in calls if manifest.is_index}
    assert tags == {"v1", "v2"}
    assert all(tag is None for manifest, tag, _ in calls if not manifest.is_index)
    assert all(ready for _, _, ready in calls)


async def test_second_copy_writes_nothing(tmp_path: Path, source: Path) -> None:
    dest = tmp_path / "dest"
    assert (await layerhoist.copy(f"oci:{source}", f"oci:{dest}")).ok
    before = files_state(dest)
    again = await layerhoist.copy(f"oci:{source}", f"oci:{dest}")
    assert again.ok
    assert {b.status for b in again.blobs} == {"present"}
    assert files_state(dest) == before


async def test_a_tag_replaces_its_entry_and_keeps_the_others(tmp_path: Path, source: Path) -> None:
    dest = tmp_path / "dest"
    assert (await layerhoist.copy(f"oci:{source}", f"oci:{dest}")).ok
    newer = tmp_path / "newer"
    write_oci_layout(newer, images=1, layers_per_image=1, layer_size=SMALL_LAYER, seed=7)
    assert (await layerhoist.copy(f"oci:{newer}:v1", f"oci:{dest}:v2")).ok
    assert tagged(dest) == {"v1": tagged(source)["v1"], "v2": tagged(newer)["v1"]}


async def test_corrupt_source_blob_is_named_and_its_image_not_tagged(tmp_path: Path) -> None:
    source = tmp_path / "source"
    write_oci_layout(source, images=2, layers_per_image=1, layer_size=SMALL_LAYER)
    manifest = json.loads(blob(source, tagged(source)["v2"]).read_bytes())
    layer = manifest["layers"][0]["digest"]
    with blob(source, layer).open("r+b") as damaged:
        damaged.seek(SMALL_LAYER // 2)
        damaged.write(b"\xff")
    dest = tmp_path / "dest"
    result = await layerhoist.copy(
        f"oci:{source}", f"oci:{dest}", config=layerhoist.PushConfig(part_size=PART_SIZE)
    )
    assert not result.ok
    failed = [image for image in result.images if image.status != "pushed"]
    assert [image.destination for image in failed] == [f"oci:{dest}:v2"]
    assert failed[0].error is not None and layer in failed[0].error
    assert "\n" not in failed[0].error
    assert tagged(dest) == {"v1": tagged(source)["v1"]}
    assert not blob(dest, layer).exists()
    assert leftovers(dest) == []


def test_copy_from_a_docker_archive(tmp_path: Path, skopeo: str) -> None:
    source = tmp_path / "source"
    write_oci_layout(source, images=1, layers_per_image=2, layer_size=SMALL_LAYER)
    archive = tmp_path / "app.tar"
    run = functools.partial(subprocess.run, check=True, capture_output=True)
    run([skopeo, "copy", f"oci:{source}:v1", f"docker-archive:{archive}:example/app:v1"])
    dest = tmp_path / "dest"
    result = layerhoist.copy_sync(f"docker-archive:{archive}", f"oci:{dest}")
    assert result.ok, result.summary()
    assert list(tagged(dest)) == ["v1"]
    # A legacy archive's image is a Docker schema 2 manifest, kept byte for byte. skopeo looks
    # a tag up among index.json's OCI-typed entries only, so it is read as the layout's one image.
    copied = json.loads(run([skopeo, "inspect", f"oci:{dest}"]).stdout)
    archived = json.loads(run([skopeo, "inspect", f"docker-archive:{archive}"]).stdout)
    assert copied["Digest"] == tagged(dest)["v1"]
    assert copied["Layers"] == archived["Layers"]
    other = tmp_path / "other"
    run([skopeo, "copy", "--preserve-digests", f"oci:{dest}", f"oci:{other}:v1"])
    assert tagged(other) == tagged(dest)


def no_space(fd: int, data: Any, offset: int) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_out_of_space_while_writing_blobs_fails_each_image_in_one_line(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "dest"
    first = tmp_path / "first"
    write_oci_layout(first, images=1, layers_per_image=1, layer_size=SMALL_LAYER, tag_prefix="x")
    assert (await layerhoist.copy(f"oci:{first}", f"oci:{dest}")).ok
    monkeypatch.setattr(os, "pwrite", no_space)
    result = await layerhoist.copy(f"oci:{source}", f"oci:{dest}")
    assert not result.ok
    for image in result.images:
        assert image.error is not None and "\n" not in image.error
        assert "out of space writing" in image.error and str(dest) in image.error
    failed = [b for b in result.blobs if b.status == "failed"]
    assert failed and all(b.attempts == 1 for b in failed)
    assert list(tagged(dest)) == ["x1"]
    assert leftovers(dest) == []


async def test_out_of_space_before_anything_is_written_stops_the_run(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "dest"
    monkeypatch.setattr(os, "pwrite", no_space)
    with pytest.raises(DestinationError) as info:
        await layerhoist.copy(f"oci:{source}", f"oci:{dest}")
    assert "out of space writing" in str(info.value) and str(dest) in str(info.value)
    assert leftovers(dest) == []


async def test_untagged_image_needs_a_destination_tag(tmp_path: Path, source: Path) -> None:
    untagged = tmp_path / "untagged"
    write_oci_layout(untagged, images=1, layers_per_image=1, layer_size=SMALL_LAYER)
    index = json.loads((untagged / "index.json").read_bytes())
    del index["manifests"][0]["annotations"]
    (untagged / "index.json").write_text(json.dumps(index))
    with pytest.raises(UsageError, match="untagged"):
        await layerhoist.copy(f"oci:{untagged}", f"oci:{tmp_path / 'dest'}")
    assert (await layerhoist.copy(f"oci:{untagged}", f"oci:{tmp_path / 'dest'}:named")).ok
    assert list(tagged(tmp_path / "dest")) == ["named"]


@pytest.mark.parametrize(("part_size", "ok"), [(1, True), (64 * 1024 * 1024 + 1, False)])
async def test_part_sizes_a_layout_accepts(
    tmp_path: Path, source: Path, part_size: int, ok: bool
) -> None:
    config = layerhoist.PushConfig(part_size=part_size, memory_budget=1024 * 1024)
    if ok:
        one = tmp_path / "one"
        write_oci_layout(one, images=1, layers_per_image=1, layer_size=1536)
        assert (await layerhoist.copy(f"oci:{one}", f"oci:{tmp_path / 'dest'}", config=config)).ok
    else:
        with pytest.raises(UsageError, match="part_size"):
            await layerhoist.copy(f"oci:{source}", f"oci:{tmp_path / 'dest'}", config=config)
