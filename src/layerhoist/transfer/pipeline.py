"""The push pipeline: every blob of every image, then the manifests, as fast as allowed.

Shape of a run::

    load images ─▶ destination.missing_blobs ─▶ requeue scheduler ─▶ N blob workers ─┐
                                                     ▲  requeue (backoff)            │
                                                     └───────────────────────────────┤
    one task per image: wait for its blobs ─▶ put children ─▶ put the tagged manifest ◀┘

The pipeline knows only the :class:`~layerhoist.sources.Source` and
:class:`~layerhoist.destinations.Destination` protocols; what is retryable is decided by the
destination's own error table, registered with the retry layer.

- Blobs are the unit of concurrency (the parts of one upload go in order); the most shared
  blobs go first so that the most images become ready early.
- Each blob is uploaded once per run however many images use it (single flight).
- A blob upload is: start, stream parts (read-ahead + hash in one pass), check the digest
  the manifest promised, commit. A failing request is retried in place
  (:func:`layerhoist.transfer.retry.retry_call`); a failing blob goes back to the scheduler
  for a fresh upload after a backoff; what no retry can fix fails the images that need
  it, and only them.
- An image is put only after every blob it references has landed and verified;
  children of an index first, the tag last. Nothing is ever tagged half-pushed.
- With an :class:`~layerhoist.transfer.journal.UploadJournal`, large blobs are uploaded
  resumably and journaled part by part. A blob a killed run left journaled is first resumed:
  the destination takes the session up again, the blob is read from its first byte (every
  part hashed as journaled, the whole blob to its digest) and only what the destination lacks
  is sent. A session gone, a prefix that reads differently or an offset the destination cannot
  continue from starts the blob afresh.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import anyio

from layerhoist.destinations.base import BlobUpload, Destination, ResumeRefused
from layerhoist.errors import LayerhoistError, SourceChangedError
from layerhoist.image import Descriptor, Image
from layerhoist.sources import Source
from layerhoist.transfer.budget import ByteBudget
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.journal import JournaledPart, JournalEntry, UploadJournal, xxh3_hex
from layerhoist.transfer.parts import Part, PartReader
from layerhoist.transfer.report import BlobOutcome, ImageOutcome, PushResult
from layerhoist.transfer.requeue import Scheduler
from layerhoist.transfer.retry import Backoff, RetryBudget, RetryEvent
from layerhoist.transfer.retry import retry_call as _retry_call
from layerhoist.transfer.verdicts import Action, Classifier, to_user_error

R = TypeVar("R")

#: Passes over a resumed blob: from the offset first tried, then once more from the one the
#: destination named instead; past that the blob starts afresh.
RESUME_PASSES = 2


class ProgressSink(Protocol):
    """Receives what the pipeline does, as it does it (the progress display)."""

    def blob_started(self, digest: str, size: int) -> None:
        """A blob upload attempt began (a retry restarts its byte count)."""

    def bytes_sent(self, digest: str, nbytes: int) -> None:
        """A part of ``nbytes`` layer bytes was accepted."""

    def blob_finished(self, digest: str, *, ok: bool) -> None:
        """A blob landed (or failed for good)."""

    def image_finished(self, outcome: ImageOutcome) -> None:
        """An image was tagged (or failed)."""

    def retried(self, event: RetryEvent) -> None:
        """A part or layer is being retried."""


@dataclass
class _Blob:
    descriptor: Descriptor
    outcome: BlobOutcome
    done: anyio.Event = field(default_factory=anyio.Event)
    #: xxh3 of each part at the last read, with the part size they were cut at.
    fingerprints: list[int] = field(default_factory=list)
    fingerprint_part_size: int = 0


class Pipeline:
    """Pushes the images of one source into one destination repository.

    ``clock``, ``sleep`` and ``rng`` decide every backoff: tests pass fakes to run retries
    on a fake clock with a seeded generator. ``journal`` records resumable uploads so that a
    later run over the same destination resumes them (the module docstring).
    """

    def __init__(
        self,
        *,
        source: Source,
        destination: Destination,
        config: PushConfig,
        progress: ProgressSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
        journal: UploadJournal | None = None,
    ) -> None:
        self._source = source
        self._journal = journal
        #: Uploads an earlier run journaled, by digest; each is tried once, on its blob's
        #: first attempt.
        self._resumable: dict[str, JournalEntry] = {}
        self._destination = destination
        self._config = config
        self._progress = progress
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._classify = Classifier((destination.errors,))
        self._budget = ByteBudget(config.memory_budget)
        self._retry_budget = RetryBudget(config.retry_budget)
        self._backoff = Backoff.from_config(config)
        self._events: list[RetryEvent] = []
        self._scheduler: Scheduler[_Blob] = Scheduler(
            backoff=self._backoff,
            max_attempts=config.layer_attempts,
            budget=self._retry_budget,
            clock=clock,
            sleep=sleep,
            rng=self._rng,
            on_retry=self._on_retry,
            retry_for=config.retry_for,
        )
        self._blobs: dict[str, _Blob] = {}

    def _on_retry(self, event: RetryEvent) -> None:
        self._events.append(event)
        if self._progress is not None:
            self._progress.retried(event)

    async def retry(
        self, fn: Callable[[], Awaitable[R]], *, subject: str, retry_for: float | None = None
    ) -> R:
        """Run one request, retrying it in place while the error table says so.

        ``retry_for`` overrides the configuration's time allowance (``0``: attempts only).
        """
        return await _retry_call(
            fn,
            subject=subject,
            attempts=self._config.part_attempts,
            backoff=self._backoff,
            budget=self._retry_budget,
            classify=self._classify,
            sleep=self._sleep,
            clock=self._clock,
            rng=self._rng,
            on_retry=self._on_retry,
            retry_for=self._config.retry_for if retry_for is None else retry_for,
        )

    def user_error(self, exc: Exception, *, subject: str) -> LayerhoistError:
        """The error to report for ``exc`` raised about ``subject``, by the error tables."""
        return to_user_error(self._classify(exc), subject=subject)

    async def run(self, images: Sequence[Image], *, targets: Sequence[str | None]) -> PushResult:
        """Push ``images``, tagging image *i* as ``targets[i]`` (``None``: by digest only)."""
        started = self._clock()
        result = PushResult(
            source=self._source.description, destination=self._destination.description
        )
        uses: Counter[str] = Counter()
        for image in images:
            for descriptor in image.blobs():
                uses[descriptor.digest] += 1
                if descriptor.digest not in self._blobs:
                    blob_outcome = BlobOutcome(digest=descriptor.digest, size=descriptor.size)
                    self._blobs[descriptor.digest] = _Blob(descriptor, blob_outcome)
        missing = await self.retry(
            lambda: self._destination.missing_blobs(self._blobs), subject="layer availability"
        )
        if self._journal is not None:
            pending = self._journal.pending(self._destination.description)
            for digest, entry in pending.items():
                if digest in missing:
                    self._resumable[digest] = entry
                elif digest in self._blobs:
                    self._journal.forget(self._destination.description, digest)
        # Most shared first (more images become ready early), then largest first
        # (the long uploads start before the short ones fill the pool).
        order = sorted(
            self._blobs.values(), key=lambda b: (-uses[b.outcome.digest], -b.outcome.size)
        )
        for blob in order:
            if blob.outcome.digest in missing:
                self._scheduler.submit(blob.outcome.digest, blob)
            else:
                blob.outcome.status = "present"
                blob.done.set()
        self._scheduler.close()
        image_outcomes = [
            ImageOutcome(
                destination=self._target_name(target),
                source=image.description,
                digest=image.manifest.digest,
                blobs=[d.digest for d in image.blobs()],
            )
            for image, target in zip(images, targets, strict=True)
        ]
        async with anyio.create_task_group() as tg:
            for _ in range(self._config.blob_concurrency):
                tg.start_soon(self._blob_worker)
            for image, target, outcome in zip(images, targets, image_outcomes, strict=True):
                tg.start_soon(self._push_image, image, target, outcome)
        result.images = image_outcomes
        result.blobs = [blob.outcome for blob in self._blobs.values()]
        result.retries = list(self._events)
        result.seconds = self._clock() - started
        result.requests = self._destination.metrics.to_json()
        result.memory_peak = self._budget.peak
        return result

    def _target_name(self, tag: str | None) -> str:
        return self._destination.target_name(tag)

    async def _blob_worker(self) -> None:
        async for digest, blob, attempt in self._scheduler:
            blob.outcome.attempts = attempt
            started = self._clock()
            try:
                await self._upload_blob(blob)
            except Exception as exc:
                # A part whose retries ran out classifies as REQUEUE_LAYER: a fresh
                # upload may succeed where the same upload id kept failing.
                verdict = self._classify(exc)
                if verdict.action is not Action.FAIL:
                    event = self._scheduler.requeue(
                        digest,
                        blob,
                        cause=verdict.code,
                        message=verdict.message,
                        retry_after=verdict.retry_after,
                    )
                    if event is not None:
                        continue
                self._fail_blob(blob, exc)
            else:
                blob.outcome.status = "uploaded"
                self._finish_blob(blob, ok=True)
            finally:
                blob.outcome.seconds += self._clock() - started

    def _fail_blob(self, blob: _Blob, exc: Exception) -> None:
        blob.outcome.status = "failed"
        blob.outcome.error = str(self.user_error(exc, subject=blob.outcome.digest))
        self._finish_blob(blob, ok=False)

    def _finish_blob(self, blob: _Blob, *, ok: bool) -> None:
        self._scheduler.finish(blob.outcome.digest)
        blob.done.set()
        if self._progress is not None:
            self._progress.blob_finished(blob.outcome.digest, ok=ok)

    async def _upload_blob(self, blob: _Blob) -> None:
        descriptor = blob.descriptor
        digest = descriptor.digest
        entry = self._resumable.pop(digest, None)
        if entry is not None and await self._resume(blob, entry):
            return
        journal = self._journal
        resumable = journal is not None and descriptor.size >= self._config.resume_min_size
        upload: BlobUpload = await self.retry(
            lambda: self._destination.start_upload(descriptor, resumable=resumable),
            subject=digest,
        )
        session = upload.session
        journal_from: int | None = None
        if journal is not None and resumable and session is not None:
            journal.started(
                self._destination.description, digest, session=session, part_size=upload.part_size
            )
            journal_from = 0
        expected = blob.fingerprints if blob.fingerprint_part_size == upload.part_size else []
        await self._send(blob, upload, expected=expected, journal_from=journal_from)

    async def _resume(self, blob: _Blob, entry: JournalEntry) -> bool:
        """Go on with the upload ``entry`` journaled; ``False``: start the blob afresh."""
        journal = self._journal
        assert journal is not None  # entries come from it
        descriptor = blob.descriptor
        digest = descriptor.digest
        where = self._destination.description
        resumed = await self.retry(
            lambda: self._destination.resume_upload(
                descriptor, session=entry.latest_session, part_size=entry.part_size
            ),
            subject=digest,
        )
        if resumed is None:
            return False
        held = entry.acknowledged if resumed.acknowledged is None else resumed.acknowledged
        for _ in range(RESUME_PASSES):
            if held > descriptor.size:
                break
            # Parts past what the destination holds are journaled again as they land.
            kept = min(len(entry.parts), held // entry.part_size)
            if kept < len(entry.parts):
                journal.truncate(where, digest, parts=kept)
            try:
                await self._send(
                    blob, resumed.upload, expected=entry.fingerprints, held=held, journal_from=kept
                )
            except ResumeRefused as refused:
                if refused.held is None:
                    break
                held = refused.held
            except SourceChangedError:
                # The source no longer reads as the journal says: what the destination holds
                # is not this blob's prefix.
                break
            else:
                return True
        # The fresh upload's journal entry replaces this one.
        return False

    async def _send(
        self,
        blob: _Blob,
        upload: BlobUpload,
        *,
        expected: Sequence[int],
        held: int = 0,
        journal_from: int | None,
    ) -> None:
        """Read the blob through ``upload`` and commit it.

        The first ``held`` bytes the destination holds already and are read, not sent.
        ``journal_from`` is the first part to journal as acknowledged (``None``: none).
        """
        descriptor = blob.descriptor
        digest = descriptor.digest
        journal = self._journal
        if self._progress is not None:
            self._progress.blob_started(digest, descriptor.size)
        part_size = upload.part_size
        reader = PartReader(
            self._source.blob_chunks(descriptor, chunk_size=part_size),
            digest=digest,
            size=descriptor.size,
            part_size=part_size,
            budget=self._budget,
            encode=upload.encode,
            payload_expansion=self._destination.limits.payload_expansion,
            read_ahead=self._config.read_ahead_parts,
            thread_threshold=self._config.thread_hash_threshold,
            expected_fingerprints=expected,
            acknowledged=held,
        )
        done = 0
        async with reader:
            async for part in reader.parts():
                try:
                    if not part.acknowledged:
                        await self.retry(
                            lambda part=part: upload.send_part(part),  # type: ignore[misc]
                            subject=digest,
                        )
                finally:
                    part.release()
                if journal is not None and journal_from is not None and part.index >= journal_from:
                    self._journal_part(journal, digest, upload, part)
                if not part.acknowledged:
                    blob.outcome.bytes_sent += part.size
                if self._progress is not None:
                    self._progress.bytes_sent(digest, part.end - done)
                done = part.end
        blob.fingerprints = reader.fingerprints
        blob.fingerprint_part_size = part_size
        # The destination would recompute the digest and refuse the blob anyway;
        # checking first names the corrupt source blob instead of retrying it.
        reader.verify()
        await self.retry(lambda: upload.commit(digest), subject=digest)
        blob.outcome.bytes_resumed = held
        if journal is not None and journal_from is not None:
            journal.forget(self._destination.description, digest)

    def _journal_part(
        self, journal: UploadJournal, digest: str, upload: BlobUpload, part: Part
    ) -> None:
        """Journal ``part`` as acknowledged, with the session to go on from after it."""
        session = upload.session
        if session is None:
            return
        record = JournaledPart(
            index=part.index, end=part.end, xxh3=xxh3_hex(part.xxh3), session=session
        )
        journal.acknowledged(self._destination.description, digest, record)

    async def _push_image(self, image: Image, tag: str | None, outcome: ImageOutcome) -> None:
        descriptors = image.blobs()
        for descriptor in descriptors:
            await self._blobs[descriptor.digest].done.wait()
        failed = [
            self._blobs[d.digest].outcome
            for d in descriptors
            if self._blobs[d.digest].outcome.status == "failed"
        ]
        if failed:
            outcome.error = f"{outcome.destination}: not tagged: {failed[0].error}"
        else:
            try:
                for manifest in image.manifests_in_push_order():
                    put_tag = tag if manifest is image.manifest else None
                    await self.retry(
                        lambda m=manifest, t=put_tag: self._destination.put_manifest(m, tag=t),  # type: ignore[misc]
                        subject=outcome.destination,
                    )
            except Exception as exc:
                outcome.error = str(self.user_error(exc, subject=outcome.destination))
            else:
                outcome.status = "pushed"
        if self._progress is not None:
            self._progress.image_finished(outcome)
