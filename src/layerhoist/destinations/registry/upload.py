"""The two ways a blob goes into a registry, both :class:`~layerhoist.destinations.base.BlobUpload`.

Both start from an upload session the destination opened (POST ``blobs/uploads/``) and both
end with the registry checking the digest of what it received (``PUT ?digest=``), after the
pipeline checked it on its side:

- :class:`StreamedUpload`: **one streamed PUT**. The request starts with the first part; its
  body is an async generator reading a memory object stream with no buffer, so
  :meth:`~StreamedUpload.send_part` returns once the connection took its part, and at most
  one part beyond the pipeline's own is held. :meth:`~StreamedUpload.commit` ends the body
  and waits for the answer. An upload never committed (a corrupt source blob, a requeue)
  ends its body with an error, so the registry stores nothing.
- :class:`ChunkedUpload`: one **PATCH** per part (``Content-Range``), then an empty PUT. Its
  :attr:`~ChunkedUpload.session` (the upload URL as the last PATCH left it) lets a killed run's
  successor resume it; a streamed PUT cannot be resumed mid-body.

A streamed request that failed cannot resend a part: its failure is an
:class:`~.errors.UploadBroken`, which the error table turns into a fresh upload.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sized
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import TypeVar

import anyio
from anyio.abc import TaskGroup
from yarl import URL

from layerhoist.destinations.base import WIRE_SLICE, ResumeRefused
from layerhoist.destinations.registry.errors import UploadBroken
from layerhoist.image import short_digest
from layerhoist.oci.client import RegistryClient
from layerhoist.oci.errors import THROTTLED_STATUS, RegistryResponseError
from layerhoist.oci.push import patch_chunk, put_blob
from layerhoist.transfer.metrics import RequestMetrics
from layerhoist.transfer.pacing import Pacer
from layerhoist.transfer.parts import Part

R = TypeVar("R")

#: Quirk counters (:attr:`UploadContext.quirks`), by the registry behaviour seen.
PATCH_CREATED = "patch-answered-201"
RANGE_STALLED = "range-not-advancing"


#: Answers about a journaled session that mean it cannot be continued: unknown (404), refused
#: (400: distribution cancels a session whose bytes disagree with its state; 416: another
#: offset), or no status call at all (405).
SESSION_GONE_STATUSES = frozenset({400, 404, 405, 416})

#: The registry error code of a throttled request (distribution's; 429 says the same).
THROTTLED_CODE = "TOOMANYREQUESTS"


def is_throttled(exc: BaseException) -> bool:
    """Whether ``exc`` is a registry's "too many requests"."""
    return isinstance(exc, RegistryResponseError) and (
        exc.status == THROTTLED_STATUS or exc.code == THROTTLED_CODE
    )


@dataclass(frozen=True, kw_only=True)
class RequestPacing:
    """Client-side pacing of a registry whose ``/v2/`` steps count against API quotas (ECR).

    A step not in ``operations`` is not paced.
    """

    pacer: Pacer
    #: The step as :func:`timed` names it (``StartUpload``) -> the quota it counts against.
    operations: Mapping[str, str]

    def slot(self, step: str, *, hold_window: bool) -> AbstractAsyncContextManager[None]:
        """Wait for ``step``'s turn; with ``hold_window`` hold a place in its window as well.

        A streamed PUT lasts as long as its blob takes to send: holding a window place that
        long would cap blob concurrency by a request-count window, so it takes its turn only.
        """
        operation = self.operations.get(step)
        if operation is None:
            return nullcontext()
        if hold_window:
            return self.pacer.slot(operation)
        return _turn(self.pacer, operation)

    def done(self, step: str, exc: BaseException | None) -> None:
        """Tell the pacer how ``step`` went: throttled slows it down, success recovers."""
        operation = self.operations.get(step)
        if operation is None:
            return
        if exc is None:
            self.pacer.succeeded(operation)
        elif is_throttled(exc):
            self.pacer.throttled(operation)


@asynccontextmanager
async def _turn(pacer: Pacer, operation: str) -> AsyncIterator[None]:
    """Take ``operation``'s turn from the pacer's bucket, holding no window place."""
    await pacer.acquire(operation)
    yield


async def timed(
    metrics: RequestMetrics,
    operation: str,
    fn: Callable[[], Awaitable[R]],
    *,
    pacing: RequestPacing | None = None,
    hold_window: bool = True,
) -> R:
    """``await fn()``, counted in ``metrics`` as one ``operation`` with its latency, and paced
    by ``pacing`` when given."""
    async with (
        pacing.slot(operation, hold_window=hold_window) if pacing is not None else nullcontext()
    ):
        started = time.monotonic()
        try:
            result = await fn()
        except BaseException as exc:
            metrics.record(operation, time.monotonic() - started, ok=False)
            if pacing is not None:
                pacing.done(operation, exc)
            raise
    metrics.record(operation, time.monotonic() - started, ok=True)
    if pacing is not None:
        pacing.done(operation, None)
    return result


@dataclass(frozen=True, kw_only=True)
class UploadContext:
    """What every upload of one destination shares."""

    client: RegistryClient
    repository: str
    #: ``docker://HOST/REPO``, for messages.
    where: str
    metrics: RequestMetrics
    #: Registry quirks met, by name (for reports and tests).
    quirks: Counter[str]
    #: Called with the digest once a blob landed (to remember it for mounts).
    landed: Callable[[str], None]
    #: Client-side pacing of the upload steps (ECR's quotas); ``None``: not paced.
    pacing: RequestPacing | None = None

    async def timed(self, operation: str, fn: Callable[[], Awaitable[R]]) -> R:
        """:func:`timed` with this destination's metrics and pacing."""
        return await timed(self.metrics, operation, fn, pacing=self.pacing)

    def blob_where(self, digest: str) -> str:
        """``docker://HOST/REPO: blob sha256:…``, for messages."""
        return f"{self.where}: blob {short_digest(digest)}"

    async def put_blob(
        self, location: URL, digest: str, data: bytes | AsyncIterable[bytes | memoryview]
    ) -> None:
        """The final ``PUT ?digest=`` of an upload, timed as ``PutBlob``."""
        await timed(
            self.metrics,
            "PutBlob",
            lambda: put_blob(
                self.client,
                self.repository,
                location,
                digest=digest,
                data=data,
                where=self.blob_where(digest),
            ),
            pacing=self.pacing,
            # A streamed body keeps the request open while the whole blob goes.
            hold_window=isinstance(data, bytes),
        )


def check_commit(upload_digest: str, digest: str) -> None:
    """An upload is committed as the digest it was started for, or it is a bug."""
    if digest != upload_digest:
        raise ValueError(f"the upload of {upload_digest} cannot be committed as {digest}")


def _payload(part: Part) -> bytes:
    payload = part.payload
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    raise TypeError(f"a part payload must be bytes, got {type(payload).__name__}")


class UploadAbandoned(Exception):
    """The upload ended without a commit: its body must not look complete."""


class StreamedUpload:
    """One blob as a single streamed ``PUT ?digest=``; the request runs in ``tasks``."""

    def __init__(
        self,
        *,
        context: UploadContext,
        location: URL,
        digest: str,
        part_size: int,
        tasks: TaskGroup,
    ) -> None:
        #: Bytes per part (the last may be shorter).
        self.part_size = part_size
        self._context = context
        self._location = location
        self._digest = digest
        self._tasks = tasks
        # No buffer: a part is handed straight to the body generator with an event it sets
        # once the connection has taken the part's last slice; send_part waits for it, so
        # the pipeline's memory budget (released when send_part returns) covers the part
        # for as long as it is held here.
        self._send, self._receive = anyio.create_memory_object_stream[tuple[bytes, anyio.Event]](0)
        self._in_flight: anyio.Event | None = None
        self._started = False
        self._finishing = False
        self._landed = False
        self._done = anyio.Event()
        self._error: Exception | None = None

    @property
    def session(self) -> None:
        """A streamed body cannot be resumed where it broke: no session to journal."""
        return None

    def encode(self, first_byte: int, data: bytes) -> Sized:
        """The part's bytes themselves: they go on the wire raw."""
        return data

    async def send_part(self, part: Part) -> None:
        """Hand one part to the PUT's body; returns once the connection took all of it."""
        data = _payload(part)
        self._start()
        if not data:
            # A zero-byte blob: its body is empty, and an empty chunk would end the body.
            return
        written = anyio.Event()
        try:
            await self._send.send((data, written))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._done.wait()
            raise self._broken() from None
        await written.wait()

    async def commit(self, digest: str) -> None:
        """End the body and wait for the registry's answer; it checks ``digest`` itself."""
        check_commit(self._digest, digest)
        if self._landed:
            return
        self._start()
        if not self._finishing:
            self._finishing = True
            self._send.close()
        await self._done.wait()
        if self._error is not None:
            raise self._broken()
        self._landed = True
        self._context.landed(digest)

    def abort(self) -> None:
        """End an uncommitted body with an error, so the registry stores nothing (idempotent)."""
        if not self._finishing:
            self._send.close()
        if not self._started:
            self._receive.close()

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._tasks.start_soon(self._put)

    def _broken(self) -> UploadBroken:
        cause = self._error or UploadAbandoned("the upload was abandoned")
        return UploadBroken(
            f"{self._context.blob_where(self._digest)}: the upload broke",
            cause=cause,
        )

    async def _put(self) -> None:
        try:
            await self._context.put_blob(self._location, self._digest, self._body())
        except Exception as exc:
            self._error = exc
        finally:
            # Wakes a sender blocked on a body nobody reads any more, or on a part the
            # connection will never finish taking.
            self._receive.close()
            if self._in_flight is not None:
                self._in_flight.set()
            self._done.set()

    async def _body(self) -> AsyncIterator[memoryview]:
        async with self._receive:
            async for data, written in self._receive:
                self._in_flight = written
                try:
                    view = memoryview(data)
                    for start in range(0, len(view), WIRE_SLICE):
                        yield view[start : start + WIRE_SLICE]
                finally:
                    # The connection took the last slice (the generator was resumed after
                    # it) or will take no more: either way the part is no longer held here.
                    written.set()
                    self._in_flight = None
        if not self._finishing:
            # Raising here makes aiohttp drop the connection before the body's last chunk.
            raise UploadAbandoned(f"the upload of {self._digest} was abandoned")


class ChunkedUpload:
    """One blob as PATCH chunks of ``part_size`` bytes, then an empty ``PUT ?digest=``.

    A ``resumed`` upload (a session a killed run journaled) is unconfirmed until its first
    PATCH is answered: a refusal of that PATCH saying the session is gone or stands elsewhere
    is raised as :class:`~layerhoist.destinations.base.ResumeRefused`.
    """

    def __init__(
        self,
        *,
        context: UploadContext,
        location: URL,
        digest: str,
        part_size: int,
        resumed: bool = False,
    ) -> None:
        #: Bytes per part, one PATCH each (the last may be shorter).
        self.part_size = part_size
        self._context = context
        self._location = location
        self._digest = digest
        self._landed = False
        self._confirmed = not resumed

    @property
    def session(self) -> str:
        """The upload URL as the last PATCH left it: a later run resumes the upload there."""
        return str(self._location)

    def encode(self, first_byte: int, data: bytes) -> Sized:
        """The part's bytes themselves: a PATCH body is raw."""
        return data

    async def send_part(self, part: Part) -> None:
        """PATCH one part at its offset and follow the answer's ``Location``."""
        data = _payload(part)
        if not data:
            return
        context = self._context
        try:
            patched = await context.timed(
                "PatchBlob",
                lambda: patch_chunk(
                    context.client,
                    context.repository,
                    self._location,
                    first_byte=part.first_byte,
                    data=data,
                    where=context.blob_where(self._digest),
                ),
            )
        except RegistryResponseError as exc:
            if self._confirmed or exc.status not in SESSION_GONE_STATUSES:
                raise
            raise ResumeRefused(str(exc), held=None) from exc
        self._confirmed = True
        if patched.created:
            context.quirks[PATCH_CREATED] += 1
        last_byte = part.first_byte + len(data) - 1
        if patched.range_end is not None and patched.range_end != last_byte:
            # ECR's Range can stop at the first chunk's end though every chunk was stored
            # (aws/containers-roadmap#2831): our own offset is trusted, and the final PUT's
            # digest check catches bytes that were really lost.
            context.quirks[RANGE_STALLED] += 1
        self._location = patched.location

    async def commit(self, digest: str) -> None:
        """Close the session as ``digest`` (a retry after it landed is a success)."""
        check_commit(self._digest, digest)
        if self._landed:
            return
        await self._context.put_blob(self._location, digest, b"")
        self._landed = True
        self._context.landed(digest)

    def abort(self) -> None:
        """Nothing to close: the registry expires sessions it hears no more of."""
