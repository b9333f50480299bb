"""Progress of a push in CI logs and pipes: plain periodic lines.

:class:`PlainProgress` is a :class:`~layerhoist.transfer.pipeline.ProgressSink` driven by the
pipeline's callbacks. The live display for a terminal is :mod:`layerhoist.transfer.terminal`,
kept apart so that a push in a CI job never loads rich.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from layerhoist.transfer.report import ImageOutcome
from layerhoist.transfer.retry import RetryEvent
from layerhoist.units import format_bytes

#: Seconds between plain progress lines (CI logs should not drown in them).
PLAIN_INTERVAL = 5.0
#: Characters of a digest shown in progress rows.
SHORT_DIGEST = 19


class _Totals:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.started = clock()
        self.sent = 0
        self.blobs_done = 0
        self.blobs_failed = 0
        self.images_done = 0
        self.images_failed = 0
        self.retries = 0


class PlainProgress:
    """One line every ``interval`` seconds and one per image, for logs and pipes."""

    def __init__(
        self,
        stream: TextIO,
        *,
        interval: float = PLAIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._interval = interval
        self._totals = _Totals(clock)
        self._last = self._totals.started

    def _line(self, text: str) -> None:
        elapsed = self._totals.clock() - self._totals.started
        print(f"[{elapsed:7.1f}s] {text}", file=self._stream, flush=True)

    def _tick(self) -> None:
        now = self._totals.clock()
        if now - self._last < self._interval:
            return
        self._last = now
        t = self._totals
        rate = t.sent / max(now - t.started, 1e-9)
        self._line(
            f"{format_bytes(t.sent)} sent ({format_bytes(rate)}/s), "
            f"{t.blobs_done} blobs done, {t.images_done} images done, {t.retries} retries"
        )

    def blob_started(self, digest: str, size: int) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        self._tick()

    def bytes_sent(self, digest: str, nbytes: int) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        self._totals.sent += nbytes
        self._tick()

    def blob_finished(self, digest: str, *, ok: bool) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        self._totals.blobs_done += 1
        self._tick()

    def image_finished(self, outcome: ImageOutcome) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        self._totals.images_done += 1
        if outcome.status == "pushed":
            self._line(f"pushed {outcome.destination} ({outcome.digest})")
        else:
            self._line(f"FAILED {outcome.error}")

    def retried(self, event: RetryEvent) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        self._totals.retries += 1
        self._line(
            f"retry {event.scope} {event.subject[:SHORT_DIGEST]} after {event.cause} "
            f"(attempt {event.attempt}, waiting {event.delay:.2f}s)"
        )
