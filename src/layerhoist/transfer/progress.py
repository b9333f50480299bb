"""Progress of a push: a live display on a terminal, plain periodic lines in CI logs.

Both are :class:`~layerhoist.transfer.pipeline.ProgressSink` implementations driven by the
pipeline's callbacks; neither starts a thread (rich's auto-refresh would), so the
display is redrawn from the callbacks at most every ``interval`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from layerhoist.transfer.report import ImageOutcome
from layerhoist.transfer.retry import RetryEvent
from layerhoist.units import format_bytes

#: Seconds between redraws of the terminal display.
TERMINAL_INTERVAL = 0.1
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


class TerminalProgress:
    """A rich display: total bytes and rate, one row per blob in flight, retries."""

    def __init__(
        self,
        console: Console,
        *,
        interval: float = TERMINAL_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console
        self._interval = interval
        self._clock = clock
        self._last = 0.0
        self._retries = 0
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,
            transient=False,
        )
        self._total = self._progress.add_task("total", total=0)
        self._rows: dict[str, TaskID] = {}

    def __enter__(self) -> TerminalProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.refresh()
        self._progress.stop()

    def _refresh(self, *, force: bool = False) -> None:
        now = self._clock()
        if force or now - self._last >= self._interval:
            self._last = now
            self._progress.refresh()

    def blob_started(self, digest: str, size: int) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        row = self._rows.get(digest)
        if row is None:
            self._rows[digest] = self._progress.add_task(digest[:SHORT_DIGEST], total=size)
            total = self._progress.tasks[self._total].total or 0
            self._progress.update(self._total, total=total + size)
        else:
            # A retried layer starts over: rewind its row and the total.
            done = self._progress.tasks[row].completed
            self._progress.reset(row, total=size)
            self._progress.advance(self._total, -done)
        self._refresh()

    def bytes_sent(self, digest: str, nbytes: int) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        self._progress.advance(self._rows[digest], nbytes)
        self._progress.advance(self._total, nbytes)
        self._refresh()

    def blob_finished(self, digest: str, *, ok: bool) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        row = self._rows.pop(digest, None)
        if row is not None:
            self._progress.remove_task(row)
        self._refresh(force=True)

    def image_finished(self, outcome: ImageOutcome) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        if outcome.status == "pushed":
            self._progress.console.print(f"[green]pushed[/] {outcome.destination}")
        else:
            self._progress.console.print(f"[red]failed[/] {outcome.error}", markup=True)
        self._refresh(force=True)

    def retried(self, event: RetryEvent) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        self._retries += 1
        self._progress.update(self._total, description=f"total ({self._retries} retries)")
        self._refresh()
