"""Test doubles: clocks that move only when slept on, and in-memory fakes of our own protocols.

:class:`FakeSource` and :class:`FakeDestination` implement :class:`~layerhoist.sources.Source`
and :class:`~layerhoist.destinations.Destination` in memory, so that the pipeline can be driven
without a registry, a network or the AWS SDK; the destination records every request it answers,
in order, and can be told to fail or hold any of them.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from types import MappingProxyType

import anyio
import anyio.lowlevel

from layerhoist.destinations import PartLimits
from layerhoist.destinations.base import ResumedUpload, ResumeRefused
from layerhoist.image import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
    Image,
    Manifest,
    parse_manifest,
    sha256_digest,
)
from layerhoist.transfer.metrics import RequestMetrics
from layerhoist.transfer.pacing import Pacer
from layerhoist.transfer.parts import Part
from layerhoist.transfer.report import ImageOutcome
from layerhoist.transfer.retry import RetryEvent
from layerhoist.transfer.verdicts import (
    ErrorTable,
    Rule,
    Verdict,
    fail_rule,
    requeue_rule,
    retry_rule,
)
from layerhoist.units import KiB


class FakeClock:
    """A clock that only moves when someone sleeps on it; every sleep is recorded.

    A sleep of ``d`` started at ``t`` moves the clock to ``t + d`` (never backwards), so
    several tasks sleeping toward the same instant move it there once.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        target = self.now + delay
        await anyio.lowlevel.checkpoint()
        self.now = max(self.now, target)


class FakeTime:
    """A clock that moves only when something sleeps on it (by exactly that long) or the
    test sets ``now``; every sleep is recorded. Starts away from zero, like a real clock.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


# --- an in-memory source ---------------------------------------------------------------------


class FakeSource:
    """A :class:`~layerhoist.sources.Source` of images built in memory by the test.

    :meth:`add_image` and :meth:`add_index` build real manifests (parsed by
    :func:`~layerhoist.image.parse_manifest`, so digests are those a registry computes);
    :meth:`add_blob` can store bytes other than those the descriptor describes, to play a
    corrupt source.
    """

    def __init__(self) -> None:
        self.description = "fake-source"
        self.images: list[Image] = []
        self._blobs: dict[str, bytes] = {}

    def add_blob(
        self, data: bytes, *, media_type: str = OCI_LAYER, stored: bytes | None = None
    ) -> Descriptor:
        """Describe ``data``; the source hands out ``stored`` for it when given (corruption)."""
        digest = sha256_digest(data)
        self._blobs[digest] = data if stored is None else stored
        return Descriptor(media_type, digest, len(data))

    def manifest(self, config: bytes, layers: Sequence[bytes | Descriptor]) -> Manifest:
        """An OCI manifest of ``config`` and ``layers`` (bytes, or descriptors already added)."""
        config_descriptor = self.add_blob(config, media_type=OCI_CONFIG)
        layer_descriptors = [
            layer if isinstance(layer, Descriptor) else self.add_blob(layer) for layer in layers
        ]
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor_json(config_descriptor),
            "layers": [_descriptor_json(layer) for layer in layer_descriptors],
        }
        return parse_manifest(json.dumps(document).encode())

    def add_image(
        self, tag: str | None, config: bytes, layers: Sequence[bytes | Descriptor]
    ) -> Image:
        """Add a single-platform image of ``config`` and ``layers``, tagged ``tag``."""
        image = Image(tag, self.manifest(config, layers))
        self.images.append(image)
        return image

    def add_index(self, tag: str | None, children: Sequence[Manifest]) -> Image:
        """Add an index of ``children`` (one linux platform per child, in order)."""
        entries = [
            {
                **_descriptor_json(Descriptor(child.media_type, child.digest, child.size)),
                "platform": {"os": "linux", "architecture": f"arch{number}"},
            }
            for number, child in enumerate(children)
        ]
        document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        image = Image(tag, parse_manifest(json.dumps(document).encode()), tuple(children))
        self.images.append(image)
        return image

    async def load(self) -> list[Image]:
        """The images added so far, in order."""
        return list(self.images)

    async def blob_chunks(
        self, descriptor: Descriptor, *, offset: int = 0, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """The stored bytes of ``descriptor`` from ``offset``, ``chunk_size`` at a time."""
        data = self._blobs[descriptor.digest]
        for start in range(offset, len(data), chunk_size):
            await anyio.lowlevel.checkpoint()
            yield data[start : start + chunk_size]

    async def aclose(self) -> None:
        """Nothing to release."""


def _descriptor_json(descriptor: Descriptor) -> dict[str, object]:
    return {
        "mediaType": descriptor.media_type,
        "digest": descriptor.digest,
        "size": descriptor.size,
    }


# --- an in-memory destination ----------------------------------------------------------------


class FakeServiceError(Exception):
    """An error the fake destination's service answers with, identified by its ``code``."""

    def __init__(self, code: str) -> None:
        super().__init__(f"the fake service says {code}")
        self.code = code


#: Hint of :data:`FAKE_ERRORS`' fatal code, so tests can find it in the report.
DENIED_HINT = "the fake registry refuses this blob: ask its owner"

#: The fake service's error codes and what the retry layer does with each.
FAKE_ERRORS: Mapping[str, Rule] = MappingProxyType(
    {
        "Transient": retry_rule(),
        "BadUpload": requeue_rule(),
        "Denied": fail_rule(DENIED_HINT),
    }
)


class FakeErrors:
    """The :class:`~layerhoist.transfer.verdicts.ErrorTable` of the fake destination."""

    def classify(
        self, exc: BaseException, *, operation: str | None, wall_clock: Callable[[], float]
    ) -> Verdict | None:
        """The verdict of a :class:`FakeServiceError` from :data:`FAKE_ERRORS`; else ``None``."""
        if not isinstance(exc, FakeServiceError):
            return None
        return FAKE_ERRORS[exc.code].verdict(code=exc.code, message=str(exc), operation=operation)


#: Small parts so that a few KiB of test data make multi-part uploads.
FAKE_LIMITS = PartLimits(
    min_part_size=4 * KiB,
    max_part_size=16 * KiB,
    preferred_max_part_size=8 * KiB,
    payload_expansion=0.0,
)


@dataclass(frozen=True)
class Call:
    """One request the fake destination answered (or failed), in the order it answered.

    ``subject`` is the blob digest (uploads) or the manifest digest (``put_manifest``);
    ``upload`` numbers the uploads from 1 in the order they started; ``part`` is the index of
    a sent part; ``error`` the code of the failure the fake answered with.
    """

    op: str
    subject: str
    upload: int = 0
    part: int = -1
    tag: str | None = None
    error: str | None = None
    #: The destination's clock when the request was answered.
    at: float = 0.0


@dataclass
class Gate:
    """Holds a request until :meth:`release` (never, for a test that cancels)."""

    entered: anyio.Event = field(default_factory=anyio.Event)
    released: anyio.Event = field(default_factory=anyio.Event)
    cancelled: bool = False

    def release(self) -> None:
        """Let the held request go on."""
        self.released.set()


class FakeDestination:
    """A :class:`~layerhoist.destinations.Destination` that keeps blobs and manifests in memory.

    Every answered request is appended to :attr:`calls`. :meth:`fail` makes a future request
    raise a :class:`FakeServiceError`; :meth:`hold` makes one wait on a :class:`Gate`. Each
    request passes a checkpoint first, as a network request would, so other tasks run meanwhile.

    Uploads outlive a run, as a service's do: a second pipeline over the same fake resumes
    them by :attr:`FakeUpload.session` until :meth:`expire`. ``reports_offset`` says whether
    :meth:`resume_upload` tells the bytes an upload holds (as an OCI registry's status GET
    does) or leaves the first part's answer to tell (as ECR's layer API does).
    """

    def __init__(
        self,
        *,
        present: Iterable[str] = (),
        part_size: int = 4 * KiB,
        clock: Callable[[], float] = lambda: 0.0,
        reports_offset: bool = True,
    ) -> None:
        self.description = "fake-destination"
        self.reports_offset = reports_offset
        #: Uploads not committed yet, by session.
        self.sessions: dict[str, FakeUpload] = {}
        self.metrics = RequestMetrics()
        self.limits = FAKE_LIMITS
        self.errors: ErrorTable = FakeErrors()
        self.pacer: Pacer | None = None
        self.part_size = part_size
        #: Digests the repository holds without an upload (as before the run).
        self.present = set(present)
        self.calls: list[Call] = []
        #: Blob bytes by digest, as committed.
        self.blobs: dict[str, bytes] = {}
        #: Manifest bytes by digest, as put.
        self.manifests: dict[str, bytes] = {}
        self._clock = clock
        self._uploads = 0
        self._failures: list[tuple[str, str, int, str]] = []
        self._gates: dict[tuple[str, str, int], Gate] = {}

    def fail(self, op: str, subject: str, code: str, *, part: int = -1) -> None:
        """Make the next ``op`` request about ``subject`` (and part ``part``) fail with ``code``.

        Calling it twice with the same arguments fails two requests in a row.
        """
        self._failures.append((op, subject, part, code))

    def hold(self, op: str, subject: str, *, part: int = -1) -> Gate:
        """Hold the first ``op`` request about ``subject`` (and part ``part``) until the
        returned gate is released."""
        gate = Gate()
        self._gates[(op, subject, part)] = gate
        return gate

    def expire(self, session: str) -> None:
        """Forget the upload ``session``, as a service forgets an idle one."""
        del self.sessions[session]

    def answered(self, op: str) -> list[Call]:
        """The ``op`` requests answered with success, in order."""
        return [call for call in self.calls if call.op == op and call.error is None]

    def target_name(self, tag: str | None) -> str:
        """``fake-destination:TAG`` (or ``@digest`` without one)."""
        return f"{self.description}:{tag}" if tag is not None else f"{self.description}@digest"

    async def prepare(self, *, create: bool) -> None:
        """The fake repository always exists."""

    async def missing_blobs(self, digests: Iterable[str]) -> set[str]:
        """The ``digests`` neither present from the start nor committed since."""
        wanted = set(digests)
        await self.answer(Call("missing_blobs", ",".join(sorted(wanted))))
        return wanted - self.present - set(self.blobs)

    async def start_upload(self, descriptor: Descriptor, *, resumable: bool = False) -> FakeUpload:
        """Start upload number ``n`` (numbered from 1); every fake upload can be resumed."""
        self._uploads += 1
        upload = FakeUpload(self, descriptor.digest, self._uploads)
        await self.answer(Call("start_upload", descriptor.digest, upload.number))
        self.sessions[upload.session] = upload
        return upload

    async def resume_upload(
        self, descriptor: Descriptor, *, session: str, part_size: int
    ) -> ResumedUpload | None:
        """The upload ``session``, unconfirmed until its next part; ``None`` once expired."""
        upload = self.sessions.get(session)
        await self.answer(Call("resume_upload", descriptor.digest, upload.number if upload else 0))
        if upload is None or upload.digest != descriptor.digest or upload.part_size != part_size:
            return None
        upload.confirmed = False
        held = len(upload.received) if self.reports_offset else None
        return ResumedUpload(upload=upload, acknowledged=held)

    async def put_manifest(self, manifest: Manifest, *, tag: str | None) -> None:
        """Store ``manifest`` under its digest; the tag is only recorded."""
        await self.answer(Call("put_manifest", manifest.digest, tag=tag))
        self.manifests[manifest.digest] = manifest.raw

    async def answer(self, call: Call) -> None:
        """Pass a checkpoint, wait at a gate, then record ``call`` and fail it if told to."""
        await anyio.lowlevel.checkpoint()
        gate = self._gates.pop((call.op, call.subject, call.part), None) or self._gates.pop(
            (call.op, call.subject, -1), None
        )
        if gate is not None:
            gate.entered.set()
            try:
                await gate.released.wait()
            except anyio.get_cancelled_exc_class():
                gate.cancelled = True
                raise
        answered = dataclasses.replace(call, at=self._clock())
        for failure in self._failures:
            op, subject, part, code = failure
            if (op, subject) == (call.op, call.subject) and part in (-1, call.part):
                self._failures.remove(failure)
                self.calls.append(dataclasses.replace(answered, error=code))
                raise FakeServiceError(code)
        self.calls.append(answered)


class FakeUpload:
    """One upload into a :class:`FakeDestination`: parts must arrive in order, without gaps.

    A resumed upload whose first part does not continue what it holds refuses it with
    :class:`~layerhoist.destinations.base.ResumeRefused`, naming the bytes it holds.
    """

    def __init__(self, destination: FakeDestination, digest: str, number: int) -> None:
        self.part_size = destination.part_size
        self.digest = digest
        self.number = number
        self.received = bytearray()
        #: False from a resume until the next part lands.
        self.confirmed = True
        self._destination = destination

    @property
    def session(self) -> str:
        """``fake-upload-N``."""
        return f"fake-upload-{self.number}"

    def encode(self, first_byte: int, data: bytes) -> Sized:
        """The payload is the raw bytes."""
        return data

    async def send_part(self, part: Part) -> None:
        """Append the part's bytes; a part that does not continue the upload is a test bug."""
        if not self.confirmed and part.first_byte != len(self.received):
            raise ResumeRefused("the fake upload holds another offset", held=len(self.received))
        assert part.first_byte == len(self.received), "parts out of order"
        await self._destination.answer(Call("send_part", self.digest, self.number, part.index))
        assert isinstance(part.payload, bytes)
        self.received += part.payload
        self.confirmed = True

    async def commit(self, digest: str) -> None:
        """Keep the received bytes as blob ``digest``."""
        await self._destination.answer(Call("commit", digest, self.number))
        self._destination.blobs[digest] = bytes(self.received)
        self._destination.sessions.pop(self.session, None)


class CancelAfter:
    """A progress sink that cancels ``scope`` once ``nbytes`` layer bytes were acknowledged:
    a run stopped between two parts, with no request in flight."""

    def __init__(self, scope: anyio.CancelScope, *, nbytes: int) -> None:
        self._scope = scope
        self._nbytes = nbytes
        self._acknowledged = 0

    def blob_started(self, digest: str, size: int) -> None:
        """Nothing to do."""

    def bytes_sent(self, digest: str, nbytes: int) -> None:
        """Count, and cancel past the mark."""
        self._acknowledged += nbytes
        if self._acknowledged >= self._nbytes:
            self._scope.cancel()

    def blob_finished(self, digest: str, *, ok: bool) -> None:
        """Nothing to do."""

    def image_finished(self, outcome: ImageOutcome) -> None:
        """Nothing to do."""

    def retried(self, event: RetryEvent) -> None:
        """Nothing to do."""


class FullDisk:
    """A write function that fails with ENOSPC while ``full`` is set."""

    def __init__(self) -> None:
        self.full = False

    def __call__(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.pwrite(fd, data, offset)
