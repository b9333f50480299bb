"""Progress of a push on a terminal: a live rich display of bytes, rate and blobs in flight.

Like :class:`~layerhoist.transfer.progress.PlainProgress` it is driven by the pipeline's
callbacks and starts no thread (rich's auto-refresh would): the display is redrawn from the
callbacks at most every ``interval`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

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

from layerhoist.transfer.progress import SHORT_DIGEST
from layerhoist.transfer.report import ImageOutcome
from layerhoist.transfer.retry import RetryEvent

#: Seconds between redraws of the terminal display.
TERMINAL_INTERVAL = 0.1


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
