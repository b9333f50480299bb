"""Content-addressed blob files and the uploads that produce them.

Layout under the data directory::

    blobs/sha256/<hex>      one file per blob, named by its digest, never modified
    uploads/<upload id>     an upload in progress: its parts appended in order

An upload keeps its sha256 state in memory and is fed part by part, so completing it
needs no second read of the file; completion renames the file into ``blobs/``
(atomic on one file system), so a reader never sees a partial blob. Uploads are not
persisted: a restart drops them (the client starts a new upload), and the
``uploads/`` directory is emptied when the store opens.

Parts are written with ``O_DIRECT`` where the file system allows it: layer bytes are
not read again soon, and filling fresh page-cache pages costs several times more CPU
than hashing the same bytes (on a VM whose memory the host backs lazily, far more).
Direct I/O needs block-aligned offsets, lengths and buffers, so each part goes through
small page-aligned buffers and the unaligned end of the bytes received so far waits in
memory (under one block) for the next part, or for completion, which writes it normally.
Where direct I/O is refused (tmpfs, other systems), plain appends are used instead.

Every path is built from a validated sha256 hex digest or from a UUID the store
generated itself, so nothing is ever written outside the data directory.

A write that fails (a full disk) leaves the upload as it was: parts are written at the
offset the upload expects and hashed only once written, so the same part sent again once
space returns lands in the same place; completion forgets the upload only after its last
bytes are on disk. Uploads are kept in the order they were last touched, so the idle ones
are found from the front without looking at the others.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import queue
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from layerhoist.registry.validation import is_digest

BLOBS_DIR = "blobs"
UPLOADS_DIR = "uploads"
DIGEST_ALGORITHM = "sha256"
#: Direct I/O offsets, lengths and buffer addresses are multiples of this (a page, which
#: covers every logical block size in use).
DIRECT_ALIGNMENT = mmap.PAGESIZE
#: Size of each page-aligned buffer a part is copied through on its way to the disk.
DIRECT_CHUNK = 1024 * 1024
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_PROBE_FILE = ".direct-io-probe"
_FILE_MODE = 0o644

#: ``os.pwrite``'s shape: the seam through which every byte reaches the disk (tests put a
#: full disk here).
Writer = Callable[[int, bytes | memoryview, int], int]


@dataclass(eq=False, kw_only=True)
class Upload:
    """An upload in progress: the parts received so far and the running sha256 of their bytes."""

    upload_id: str
    repository: str
    path: Path
    #: Bytes received so far; the next part must start at this offset.
    size: int = 0
    #: Bytes received but not yet on disk: the unaligned end, under one block (direct I/O).
    tail: bytes = b""
    #: Size of every part received, in order (the minimum-size rule is checked at completion).
    part_sizes: list[int] = field(default_factory=list)
    #: Clock reading of the last request that touched this upload (for expiry).
    last_activity: float = 0.0
    #: Serialises the parts of one upload: their order is the order of the bytes.
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)

    @property
    def digest(self) -> str:
        """The sha256 digest of the bytes received so far."""
        return f"{DIGEST_ALGORITHM}:{self.hasher.hexdigest()}"


@dataclass(frozen=True)
class UploadMark:
    """Where an upload stood before a part: :meth:`BlobStore.rewind` goes back there."""

    size: int
    tail: bytes
    part_sizes: tuple[int, ...]
    hasher: hashlib._Hash


def _write_all(write: Writer, fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = write(fd, view, offset)
        view = view[written:]
        offset += written


def _write_at(write: Writer, path: Path, data: bytes, offset: int) -> None:
    """Write ``data`` at ``offset`` of ``path`` (created if missing), without O_DIRECT."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, _FILE_MODE)
    try:
        _write_all(write, fd, data, offset)
    finally:
        os.close(fd)


class _DirectWriter:
    """Writes through page-aligned buffers with ``O_DIRECT`` (called from worker threads)."""

    def __init__(self, write: Writer) -> None:
        self._write_fd = write
        # Buffers are reused: a fresh one would cost page faults on every part.
        self._buffers: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()

    def probe(self, directory: Path) -> bool:
        """Whether direct I/O works in ``directory``."""
        if not _O_DIRECT:
            return False
        path = directory / _PROBE_FILE
        try:
            self._write(path, offset=0, tail=b"", data=bytes(DIRECT_ALIGNMENT))
        except OSError:
            return False
        finally:
            path.unlink(missing_ok=True)
        return True

    def append(self, upload: Upload, data: bytes) -> bytes:
        """Write ``data`` after the upload's bytes; returns the unaligned end for ``tail``."""
        return self._write(
            upload.path, offset=upload.size - len(upload.tail), tail=upload.tail, data=data
        )

    def _write(self, path: Path, *, offset: int, tail: bytes, data: bytes) -> bytes:
        total = len(tail) + len(data)
        aligned = total - total % DIRECT_ALIGNMENT
        if aligned == 0:
            return tail + data
        try:
            buffer = self._buffers.get_nowait()
        except queue.Empty:
            buffer = mmap.mmap(-1, DIRECT_CHUNK)
        source = memoryview(data)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | _O_DIRECT, _FILE_MODE)
        try:
            buffer[: len(tail)] = tail
            filled, taken, written = len(tail), 0, 0
            while written < aligned:
                size = min(DIRECT_CHUNK, aligned - written)
                step = size - filled
                buffer[filled:size] = source[taken : taken + step]
                taken += step
                _write_all(self._write_fd, fd, memoryview(buffer)[:size], offset + written)
                written += size
                filled = 0
        finally:
            os.close(fd)
            self._buffers.put(buffer)
        return bytes(source[taken:])


class BlobStore:
    """Blob files and uploads in progress under one data directory.

    ``write`` (``os.pwrite`` by default) writes every byte of every upload.
    """

    def __init__(self, data_dir: Path, *, write: Writer = os.pwrite) -> None:
        self._blobs = data_dir / BLOBS_DIR / DIGEST_ALGORITHM
        self._uploads_dir = data_dir / UPLOADS_DIR
        self._blobs.mkdir(parents=True, exist_ok=True)
        # Uploads of an earlier run cannot be resumed (their hash state is gone).
        shutil.rmtree(self._uploads_dir, ignore_errors=True)
        self._uploads_dir.mkdir(parents=True)
        self._write = write
        #: Uploads in progress, least recently touched first.
        self._uploads: dict[str, Upload] = {}
        self._direct = _DirectWriter(write)
        self.direct_io = self._direct.probe(self._uploads_dir)

    def blob_path(self, digest: str) -> Path:
        """The file of the blob ``digest`` (which must be a well-formed sha256 digest)."""
        if not is_digest(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self._blobs / digest.removeprefix(f"{DIGEST_ALGORITHM}:")

    def blob_size(self, digest: str) -> int | None:
        """Size of the stored blob, or ``None`` when it is not stored."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def new_upload(self, repository: str, *, now: float) -> Upload:
        """Start an upload into ``repository``; its file is created by the first part."""
        upload_id = str(uuid.uuid4())
        upload = Upload(
            upload_id=upload_id,
            repository=repository,
            path=self._uploads_dir / upload_id,
            last_activity=now,
        )
        self._uploads[upload_id] = upload
        return upload

    def get_upload(self, upload_id: str) -> Upload | None:
        """The upload in progress with this id, if any."""
        return self._uploads.get(upload_id)

    def uploads(self) -> list[Upload]:
        """Every upload in progress, least recently touched first."""
        return list(self._uploads.values())

    def upload_count(self) -> int:
        """How many uploads are in progress."""
        return len(self._uploads)

    def touch(self, upload: Upload, *, now: float) -> None:
        """Record activity on ``upload`` at clock reading ``now``."""
        upload.last_activity = now
        if self._uploads.get(upload.upload_id) is upload:
            # dicts keep insertion order: re-inserting moves the upload to the back.
            del self._uploads[upload.upload_id]
            self._uploads[upload.upload_id] = upload

    def idle_uploads(self, *, before: float) -> list[Upload]:
        """The uploads last touched before clock reading ``before`` (only those are visited)."""
        idle = []
        for upload in self._uploads.values():
            if upload.last_activity >= before:
                break
            idle.append(upload)
        return idle

    def discard_upload(self, upload: Upload) -> None:
        """Forget an upload and delete its bytes."""
        self._uploads.pop(upload.upload_id, None)
        upload.path.unlink(missing_ok=True)

    async def append(self, upload: Upload, data: bytes, *, new_part: bool = True) -> None:
        """Append bytes to the upload; the caller holds ``upload.lock``.

        ``new_part=False`` adds them to the last part instead of starting one: a ``/v2/``
        PATCH is one part however many pieces its streamed body is written in.
        """
        await anyio.to_thread.run_sync(self._append, upload, data)
        upload.size += len(data)
        if new_part or not upload.part_sizes:
            upload.part_sizes.append(len(data))
        else:
            upload.part_sizes[-1] += len(data)

    def mark(self, upload: Upload) -> UploadMark:
        """Where ``upload`` stands now, to :meth:`rewind` to if its next part breaks off."""
        return UploadMark(
            size=upload.size,
            tail=upload.tail,
            part_sizes=tuple(upload.part_sizes),
            hasher=upload.hasher.copy(),
        )

    def rewind(self, upload: Upload, mark: UploadMark) -> None:
        """Drop what ``upload`` received since ``mark``; the caller holds ``upload.lock``.

        Bytes written past the mark stay in the file until the next part overwrites them or
        completion truncates it to the upload's size.
        """
        upload.size = mark.size
        upload.tail = mark.tail
        upload.part_sizes[:] = mark.part_sizes
        upload.hasher = mark.hasher.copy()

    def _append(self, upload: Upload, data: bytes) -> None:
        # Runs in a worker thread: hashlib and file writes release the GIL on large
        # buffers, so other uploads keep being served meanwhile. The upload changes only
        # once the bytes are written: a failed write leaves it ready for the same part.
        if self.direct_io:
            upload.tail = self._direct.append(upload, data)
        else:
            _write_at(self._write, upload.path, data, upload.size)
        upload.hasher.update(data)

    def commit(self, upload: Upload) -> int:
        """Move a complete upload into place as the blob of its digest; returns its size.

        When the blob is already stored (pushed into another repository) the upload's
        bytes, identical by digest, are simply dropped. If the last write fails the upload
        stays as it was, and completing it again may succeed.
        """
        if upload.tail or upload.size == 0:
            # An empty blob (pushable through /v2/) has no part that created its file.
            _write_at(self._write, upload.path, upload.tail, upload.size - len(upload.tail))
        # A write that failed before may have left bytes past the end.
        os.truncate(upload.path, upload.size)
        upload.tail = b""
        target = self.blob_path(upload.digest)
        if target.exists():
            upload.path.unlink(missing_ok=True)
        else:
            # No fsync: a process stop keeps the page cache; only a machine crash could
            # lose a blob, and this registry is a test double, not a durable store.
            upload.path.replace(target)
        self._uploads.pop(upload.upload_id, None)
        return upload.size
