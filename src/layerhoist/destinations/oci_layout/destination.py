"""``oci:DIR[:TAG]`` as a destination: an OCI image layout written on disk.

:class:`OciLayoutDestination` writes what the OCI image-layout spec names: ``oci-layout``,
``blobs/sha256/<hex>`` and ``index.json``, whose entries carry their tag in the
``org.opencontainers.image.ref.name`` annotation. The pipeline drives it as any destination:

- :meth:`~OciLayoutDestination.missing_blobs` looks for ``blobs/sha256/<hex>``;
- a :class:`LayoutBlobUpload` writes each part at its offset into a temporary file in the
  layout root; its commit, which the pipeline makes only after the digest verified, fsyncs
  the file and renames it to its digest, so no blob ever has its final name before it is whole;
- :meth:`~OciLayoutDestination.put_manifest` writes the manifest blob the same way and, for
  the tagged top manifest, rewrites ``index.json`` (temporary file and rename), replacing the
  entry of the same tag and keeping every other, under the layout's lock (a ``flock`` on its
  directory), so that processes writing one layout at once keep each other's tags.

An upload the pipeline abandons (a corrupt source blob, a requeue, Ctrl-C) leaves no temporary
file: it is removed when the blob's next upload starts, or when the destination closes. All
file I/O runs in worker threads. What is already there is never written again, so a second
run of the same copy leaves every existing file as it was.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sized
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, TypeVarTuple

import anyio

from layerhoist.destinations.base import PartLimits
from layerhoist.destinations.oci_layout.errors import LayoutErrors
from layerhoist.destinations.oci_layout.files import (
    create,
    layout_lock,
    naming,
    publish,
    remove,
    temporary_path,
    write_at,
    write_atomically,
)
from layerhoist.destinations.oci_layout.limits import PART_LIMITS
from layerhoist.errors import DestinationError, ManifestError
from layerhoist.image import (
    DIGEST_PATTERN,
    OCI_INDEX,
    SCHEMA_VERSION,
    Descriptor,
    Manifest,
    sha256_digest,
    short_digest,
)
from layerhoist.sources.oci_layout import (
    OCI_INDEX_FILE,
    OCI_LAYOUT_FILE,
    REF_NAME_ANNOTATION,
    SUPPORTED_LAYOUT_VERSION_PREFIX,
    oci_blob_name,
)
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.metrics import RequestMetrics
from layerhoist.transfer.pacing import Pacer
from layerhoist.transfer.parts import Part
from layerhoist.transfer.verdicts import ErrorTable

T = TypeVar("T")
Args = TypeVarTuple("Args")

#: The image-layout version this destination writes (``oci-layout``).
LAYOUT_VERSION = "1.0.0"
#: Where blobs live inside the layout.
BLOB_DIRECTORY = "blobs/sha256"


def _encode(document: object) -> bytes:
    # Compact, as skopeo and the OCI tools write layout files.
    return json.dumps(document, separators=(",", ":")).encode()


async def _timed(
    metrics: RequestMetrics, operation: str, fn: Callable[[*Args], T], *args: *Args
) -> T:
    """Run the blocking ``fn`` in a worker thread, counted in ``metrics`` as ``operation``."""
    started = time.monotonic()
    try:
        result = await anyio.to_thread.run_sync(fn, *args)
    except BaseException:
        metrics.record(operation, time.monotonic() - started, ok=False)
        raise
    metrics.record(operation, time.monotonic() - started, ok=True)
    return result


class LayoutBlobUpload:
    """One blob being written: parts at their offsets in a temporary file, then the rename."""

    def __init__(
        self,
        *,
        digest: str,
        temporary: Path,
        final: Path,
        part_size: int,
        metrics: RequestMetrics,
    ) -> None:
        #: Bytes per part (the last may be shorter).
        self.part_size = part_size
        self._digest = digest
        self._temporary = temporary
        self._final = final
        self._metrics = metrics
        self._fd: int | None = None

    def open(self) -> None:
        """Create the temporary file (blocking; run in a worker thread).

        The descriptor is stored here, in the thread, so that an upload cancelled while
        opening still knows what to close and remove.
        """
        self._fd = create(self._temporary)

    @property
    def session(self) -> None:
        """No resume: the temporary file is discarded when the run ends."""
        return None

    def encode(self, first_byte: int, data: bytes) -> Sized:
        """The part's bytes themselves: a file takes them raw (no copy, no payload cost)."""
        return data

    async def send_part(self, part: Part) -> None:
        """Write one part at its offset (a retry of it writes the same bytes again)."""
        payload = part.payload
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"a part payload must be bytes, got {type(payload).__name__}")
        await _timed(self._metrics, "WritePart", self._write, memoryview(payload), part.first_byte)

    def _write(self, data: memoryview, offset: int) -> None:
        if self._fd is None:
            raise RuntimeError(f"the upload of {self._digest} is closed")
        write_at(self._fd, data, offset, self._temporary)

    async def commit(self, digest: str) -> None:
        """Flush the file and rename it to ``blobs/sha256/<hex>``; a blob there already is fine."""
        if digest != self._digest:
            raise ValueError(f"the upload of {self._digest} cannot be committed as {digest}")
        await _timed(self._metrics, "CommitBlob", self._commit)

    def _commit(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            # A retried commit whose first attempt renamed the file.
            if self._final.is_file():
                return
            raise RuntimeError(f"the upload of {self._digest} is closed")
        publish(fd, self._temporary, self._final)

    def discard(self) -> None:
        """Close and remove the temporary file, unless committed (blocking; idempotent)."""
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                with naming(self._temporary):
                    os.close(fd)
        finally:
            remove(self._temporary)


class OciLayoutDestination:
    """An OCI image layout directory written as the destination of a copy.

    Use as an async context manager: leaving it removes what abandoned uploads left.
    """

    #: Local files: parts of any size, written raw.
    limits: PartLimits = PART_LIMITS
    #: A local disk publishes no request quotas.
    pacer: Pacer | None = None

    def __init__(self, path: Path, *, config: PushConfig) -> None:
        self.root = path
        self.description = f"oci:{path}"
        #: File operations made, errors and latency percentiles per operation.
        self.metrics = RequestMetrics()
        #: OS errors of writing into this layout.
        self.errors: ErrorTable = LayoutErrors(path)
        self._part_size = self.limits.part_size(config, offered=None)
        self._uploads: dict[str, LayoutBlobUpload] = {}
        # Tagging rewrites index.json: one rewrite at a time, or a tag could be lost (other
        # processes are kept out by the layout's lock, see _tag).
        self._index_lock = anyio.Lock()

    def target_name(self, tag: str | None) -> str:
        """``oci:DIR:TAG`` as skopeo names it (``oci:DIR`` without a tag)."""
        return self.description if tag is None else f"{self.description}:{tag}"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        uploads = list(self._uploads.values())
        self._uploads.clear()
        # Shielded: a cancelled run (Ctrl-C) is exactly when temporary files are left.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_discard_all, uploads)

    def _blob_path(self, digest: str) -> Path:
        # Descriptors are validated when manifests are parsed; checked again here because
        # the digest becomes a file name.
        if DIGEST_PATTERN.fullmatch(digest) is None:
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / oci_blob_name(digest)

    async def prepare(self, *, create: bool) -> None:
        """Create the layout if needed (whatever ``create`` says) and check what is there."""
        await _timed(self.metrics, "PrepareLayout", self._prepare)

    def _prepare(self) -> None:
        blobs = self.root / BLOB_DIRECTORY
        with naming(blobs):
            blobs.mkdir(parents=True, exist_ok=True)
        layout_file = self.root / OCI_LAYOUT_FILE
        if layout_file.is_file():
            version = self._read_json(layout_file).get("imageLayoutVersion")
            if not isinstance(version, str) or not version.startswith(
                SUPPORTED_LAYOUT_VERSION_PREFIX
            ):
                raise DestinationError(
                    f"{layout_file}: imageLayoutVersion {version!r} is not supported "
                    f"(expected {SUPPORTED_LAYOUT_VERSION_PREFIX}x)"
                )
        else:
            write_atomically(
                self.root, layout_file, _encode({"imageLayoutVersion": LAYOUT_VERSION})
            )
        # A broken index.json stops the run before any blob is written.
        self._read_index()

    async def missing_blobs(self, digests: Iterable[str]) -> set[str]:
        """The digests with no ``blobs/sha256/<hex>`` file in the layout."""
        wanted = list(dict.fromkeys(digests))
        return await _timed(self.metrics, "CheckBlobs", self._missing, wanted)

    def _missing(self, digests: list[str]) -> set[str]:
        return {digest for digest in digests if not self._blob_path(digest).is_file()}

    async def start_upload(
        self, descriptor: Descriptor, *, resumable: bool = False
    ) -> LayoutBlobUpload:
        """Open a temporary file for the blob; an earlier upload of it is removed first.

        Never resumable (see :meth:`resume_upload`), whatever ``resumable`` asks.
        """
        digest = descriptor.digest
        final = self._blob_path(digest)
        previous = self._uploads.pop(digest, None)
        if previous is not None:
            await anyio.to_thread.run_sync(previous.discard)
        upload = LayoutBlobUpload(
            digest=digest,
            temporary=temporary_path(self.root, final.name),
            final=final,
            part_size=self._part_size,
            metrics=self.metrics,
        )
        # Registered before the file exists, so that closing the destination removes it
        # whatever happens from here on.
        self._uploads[digest] = upload
        await _timed(self.metrics, "StartUpload", upload.open)
        return upload

    async def resume_upload(self, descriptor: Descriptor, *, session: str, part_size: int) -> None:
        """No resume into a layout: a blob's temporary file is discarded when its run ends, and
        a local write of the blob again costs no more than re-reading it to check the prefix."""
        return None

    async def put_manifest(self, manifest: Manifest, *, tag: str | None) -> None:
        """Write the manifest blob (bytes as they are) and, with ``tag``, tag it in index.json."""
        if sha256_digest(manifest.raw) != manifest.digest:
            raise ManifestError(
                f"manifest {short_digest(manifest.digest)}: its bytes hash to another digest"
            )
        await _timed(self.metrics, "PutManifest", self._put_manifest, manifest)
        if tag is not None:
            async with self._index_lock:
                await _timed(self.metrics, "TagManifest", self._tag, manifest, tag)

    def _put_manifest(self, manifest: Manifest) -> None:
        final = self._blob_path(manifest.digest)
        if not final.is_file():
            write_atomically(self.root, final, manifest.raw)

    def _tag(self, manifest: Manifest, tag: str) -> None:
        entry = {
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.size,
            "annotations": {REF_NAME_ANNOTATION: tag},
        }
        # Another process writing this layout (another shard of a sync) may be between its
        # read and its rename of index.json: without the lock, one of the two tags is lost.
        with layout_lock(self.root):
            index = self._read_index()
            entries: list[Any] = list(index["manifests"])
            same_tag = [position for position, item in enumerate(entries) if _tag_of(item) == tag]
            if [entries[position] for position in same_tag] == [entry]:
                return
            if same_tag:
                # In place of the first entry of the tag, so the order of tags is kept.
                entries[same_tag[0]] = entry
                kept = [
                    item for position, item in enumerate(entries) if position not in same_tag[1:]
                ]
            else:
                kept = [*entries, entry]
            write_atomically(
                self.root, self.root / OCI_INDEX_FILE, _encode({**index, "manifests": kept})
            )

    def _read_index(self) -> dict[str, Any]:
        path = self.root / OCI_INDEX_FILE
        if not path.exists():
            return {"schemaVersion": SCHEMA_VERSION, "mediaType": OCI_INDEX, "manifests": []}
        index = self._read_json(path)
        if not isinstance(index.get("manifests"), list):
            raise DestinationError(f"{path} is not an image index (it has no manifests list)")
        return index

    def _read_json(self, path: Path) -> dict[str, Any]:
        with naming(path):
            raw = path.read_bytes()
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DestinationError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise DestinationError(f"{path} is not a JSON object")
        return document


def _tag_of(entry: object) -> object:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    return annotations.get(REF_NAME_ANNOTATION) if isinstance(annotations, dict) else None


def _discard_all(uploads: list[LayoutBlobUpload]) -> None:
    for upload in uploads:
        upload.discard()
