"""Content-addressed blob files and the uploads that produce them.

Layout under the data directory::

    blobs/sha256/<hex>      one file per blob, named by its digest, never modified
    uploads/<upload id>     an upload in progress: its parts appended in order

An upload keeps its sha256 state in memory and is fed part by part, so completing it
needs no second read of the file; completion renames the file into ``blobs/``
(atomic on one file system), so a reader never sees a partial blob. Uploads are not
persisted: a restart drops them (the client starts a new upload), and the
``uploads/`` directory is emptied when the store opens.

Every path is built from a validated sha256 hex digest or from a UUID the store
generated itself, so nothing is ever written outside the data directory.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from layerhoist.registry.validation import is_digest

BLOBS_DIR = "blobs"
UPLOADS_DIR = "uploads"
DIGEST_ALGORITHM = "sha256"


@dataclass(eq=False, kw_only=True)
class Upload:
    """An upload in progress: the parts received so far and the running sha256 of their bytes."""

    upload_id: str
    repository: str
    path: Path
    #: Bytes received so far; the next part must start at this offset.
    size: int = 0
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


def _append(path: Path, hasher: hashlib._Hash, data: bytes) -> None:
    # hashlib and file writes release the GIL on large buffers: this runs in a worker
    # thread so other uploads keep being served meanwhile.
    hasher.update(data)
    with path.open("ab") as file:
        file.write(data)


class BlobStore:
    """Blob files and uploads in progress under one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self._blobs = data_dir / BLOBS_DIR / DIGEST_ALGORITHM
        self._uploads_dir = data_dir / UPLOADS_DIR
        self._blobs.mkdir(parents=True, exist_ok=True)
        # Uploads of an earlier run cannot be resumed (their hash state is gone).
        shutil.rmtree(self._uploads_dir, ignore_errors=True)
        self._uploads_dir.mkdir(parents=True)
        self._uploads: dict[str, Upload] = {}

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
        """Every upload in progress."""
        return list(self._uploads.values())

    def discard_upload(self, upload: Upload) -> None:
        """Forget an upload and delete its bytes."""
        self._uploads.pop(upload.upload_id, None)
        upload.path.unlink(missing_ok=True)

    async def append(self, upload: Upload, data: bytes) -> None:
        """Append one part to the upload; the caller holds ``upload.lock``."""
        await anyio.to_thread.run_sync(_append, upload.path, upload.hasher, data)
        upload.size += len(data)
        upload.part_sizes.append(len(data))

    def commit(self, upload: Upload) -> int:
        """Move a complete upload into place as the blob of its digest; returns its size.

        When the blob is already stored (pushed into another repository) the upload's
        bytes, identical by digest, are simply dropped.
        """
        self._uploads.pop(upload.upload_id, None)
        target = self.blob_path(upload.digest)
        if target.exists():
            upload.path.unlink(missing_ok=True)
        else:
            # No fsync: a process stop keeps the page cache; only a machine crash could
            # lose a blob, and this registry is a test double, not a durable store.
            upload.path.replace(target)
        return upload.size
