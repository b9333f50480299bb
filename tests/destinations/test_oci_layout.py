"""The OCI layout destination on its own: temporary files, index.json, the error table."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from pathlib import Path

import anyio
import pytest

from layerhoist.destinations.oci_layout.destination import OciLayoutDestination
from layerhoist.destinations.oci_layout.errors import LayoutErrors
from layerhoist.destinations.oci_layout.files import TEMPORARY_PREFIX, layout_lock
from layerhoist.errors import DestinationError
from layerhoist.image import OCI_LAYER, Descriptor, Manifest, parse_manifest
from layerhoist.sources.oci_layout import REF_NAME_ANNOTATION
from layerhoist.transfer.budget import ByteBudget
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.parts import Part
from layerhoist.transfer.verdicts import Action, to_user_error

pytestmark = pytest.mark.anyio

DATA = b"layer bytes " * 100
#: How often a test looks whether the destination waits for the layout's lock, and how long.
POLL_SECONDS = 0.01
GUARD_SECONDS = 10.0


def descriptor(data: bytes) -> Descriptor:
    return Descriptor(OCI_LAYER, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))


async def part(data: bytes, first_byte: int) -> Part:
    lease = await ByteBudget(len(data) or 1).acquire(len(data))
    return Part(index=0, first_byte=first_byte, size=len(data), xxh3=0, payload=data, lease=lease)


def temporaries(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.startswith(TEMPORARY_PREFIX)]


async def test_a_blob_has_its_name_only_once_committed(tmp_path: Path) -> None:
    wanted = descriptor(DATA)
    async with OciLayoutDestination(tmp_path, config=PushConfig()) as destination:
        await destination.prepare(create=False)
        assert await destination.missing_blobs([wanted.digest]) == {wanted.digest}
        upload = await destination.start_upload(wanted)
        # Parts out of order and one sent twice (a retry): each lands at its offset.
        await upload.send_part(await part(DATA[600:], 600))
        await upload.send_part(await part(DATA[:600], 0))
        await upload.send_part(await part(DATA[:600], 0))
        assert await destination.missing_blobs([wanted.digest]) == {wanted.digest}
        await upload.commit(wanted.digest)
        assert await destination.missing_blobs([wanted.digest]) == set()
    blob = tmp_path / "blobs" / "sha256" / wanted.digest.removeprefix("sha256:")
    assert blob.read_bytes() == DATA
    assert temporaries(tmp_path) == []


async def test_abandoned_uploads_leave_no_temporary_file(tmp_path: Path) -> None:
    first, second = descriptor(DATA), descriptor(DATA[:10])
    async with OciLayoutDestination(tmp_path, config=PushConfig()) as destination:
        await destination.prepare(create=False)
        requeued = await destination.start_upload(first)
        await requeued.send_part(await part(DATA[:10], 0))
        (earlier,) = temporaries(tmp_path)
        # A fresh upload of the same blob (the pipeline's requeue) replaces the first one.
        await destination.start_upload(first)
        assert earlier not in temporaries(tmp_path)
        abandoned = await destination.start_upload(second)
        await abandoned.send_part(await part(DATA[:5], 0))
        assert len(temporaries(tmp_path)) == 2
    assert temporaries(tmp_path) == []
    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []


def empty_image() -> Manifest:
    """An image manifest with a config and no layers."""
    return parse_manifest(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "c", "digest": descriptor(b"c").digest, "size": 1},
                "layers": [],
            }
        ).encode()
    )


async def test_tagging_keeps_other_entries_and_fields(tmp_path: Path) -> None:
    manifest = empty_image()
    foreign = {"mediaType": "x", "digest": descriptor(b"x").digest, "size": 1}
    index = {"schemaVersion": 2, "manifests": [foreign], "annotations": {"kept": "yes"}}
    (tmp_path / "index.json").write_text(json.dumps(index))
    async with OciLayoutDestination(tmp_path, config=PushConfig()) as destination:
        await destination.prepare(create=False)
        await destination.put_manifest(manifest, tag="v1")
        written = (tmp_path / "index.json").stat()
        await destination.put_manifest(manifest, tag="v1")
        # A rewrite is a rename of a new file: the inode would change.
        assert (tmp_path / "index.json").stat().st_ino == written.st_ino
    result = json.loads((tmp_path / "index.json").read_bytes())
    assert result["annotations"] == {"kept": "yes"}
    assert result["manifests"][0] == foreign
    assert [entry["digest"] for entry in result["manifests"]] == [
        foreign["digest"],
        manifest.digest,
    ]


def flock_waiters(path: Path) -> int:
    """Processes or threads waiting for a ``flock`` on ``path``, as Linux lists them."""
    status = path.stat()
    # /proc/locks names a file as MAJOR:MINOR:INODE, the device numbers in hex.
    name = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino} "
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if " -> FLOCK " in line and name in line)


async def test_tagging_waits_while_another_process_rewrites_index_json(tmp_path: Path) -> None:
    tagged = anyio.Event()
    async with OciLayoutDestination(tmp_path, config=PushConfig()) as destination:
        await destination.prepare(create=False)

        async def tag() -> None:
            await destination.put_manifest(empty_image(), tag="v1")
            tagged.set()

        async with anyio.create_task_group() as group:
            # Another writer of the layout (a shard of the same sync) holds its lock between
            # its read and its rename of index.json.
            with layout_lock(tmp_path):
                group.start_soon(tag)
                with anyio.fail_after(GUARD_SECONDS):
                    while not flock_waiters(tmp_path):
                        assert not tagged.is_set(), "tagged while another writer held the layout"
                        await anyio.sleep(POLL_SECONDS)
                other = {"mediaType": "x", "digest": descriptor(b"x").digest, "size": 1}
                other["annotations"] = {REF_NAME_ANNOTATION: "other"}
                index = {"schemaVersion": 2, "manifests": [other]}
                (tmp_path / "index.json").write_text(json.dumps(index))
    result = json.loads((tmp_path / "index.json").read_bytes())
    assert [entry["annotations"][REF_NAME_ANNOTATION] for entry in result["manifests"]] == [
        "other",
        "v1",
    ]


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("index.json", "{broken", "not valid JSON"),
        ("index.json", "{}", "not an image index"),
        ("oci-layout", '{"imageLayoutVersion": "2.0.0"}', "not supported"),
    ],
)
async def test_a_broken_layout_is_refused_before_anything_is_written(
    tmp_path: Path, name: str, content: str, fragment: str
) -> None:
    (tmp_path / name).write_text(content)
    async with OciLayoutDestination(tmp_path, config=PushConfig()) as destination:
        with pytest.raises(DestinationError, match=fragment):
            await destination.prepare(create=False)


@pytest.mark.parametrize(
    ("code", "name", "words"),
    [
        (errno.ENOSPC, "OutOfSpace", "out of space writing"),
        (errno.EACCES, "PermissionDenied", "permission denied writing"),
        (errno.EROFS, "ReadOnlyFileSystem", "read-only file system writing"),
        (errno.EIO, "EIO", "Input/output error"),
    ],
)
def test_write_errors_fail_at_once_naming_the_path(
    tmp_path: Path, code: int, name: str, words: str
) -> None:
    path = tmp_path / "layout" / "blobs" / "sha256" / "abc"
    verdict = LayoutErrors(tmp_path / "layout").classify(
        OSError(code, "Input/output error", str(path)), operation=None, wall_clock=time.time
    )
    assert verdict is not None
    assert verdict.action is Action.FAIL and verdict.code == name
    message = str(to_user_error(verdict, subject="oci:layout:v1"))
    assert words in message and str(path) in message and "\n" not in message


def test_errors_outside_the_layout_are_not_its_own(tmp_path: Path) -> None:
    errors = LayoutErrors(tmp_path / "layout")
    elsewhere = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "source" / "x"))
    assert errors.classify(elsewhere, operation=None, wall_clock=time.time) is None
    parent = OSError(errno.EACCES, "Permission denied", str(tmp_path))
    assert errors.classify(parent, operation=None, wall_clock=time.time) is not None
