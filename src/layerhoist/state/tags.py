"""Confirmed tags: what each destination tag was last confirmed to hold, kept in the state file.

One row per (destination repository, tag): the digest the destination holds, the source digest
it was copied from and the platforms chosen then (``--platform`` writes a new index whose
digest differs from the source's), and when it was confirmed. ``layerhoist sync`` writes a row
after each tag lands or is found up to date, and on the next run skips asking the destination
about a tag whose source digest and platforms are unchanged: that is what makes a warm run cost
one source HEAD per tag.

Statements run on the event loop's thread: they are single-row reads and writes of a local
SQLite file in WAL mode, and the state file's connection belongs to the thread that opened it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from layerhoist.errors import UsageError
from layerhoist.image import Platform
from layerhoist.state import SQLITE_TIMEOUT, StateFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS confirmed_tags (
    destination TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    source_digest TEXT NOT NULL,
    platforms TEXT NOT NULL,
    confirmed_at REAL NOT NULL,
    PRIMARY KEY (destination, tag)
)
"""


@dataclass(frozen=True)
class Confirmation:
    """What a destination tag was last confirmed to hold."""

    #: The digest the destination tag holds.
    digest: str
    #: The source manifest it was copied from (equal to ``digest`` unless platforms were
    #: chosen from an index).
    source_digest: str
    #: The platforms chosen, as :func:`platforms_key` writes them (``""``: all).
    platforms: str
    #: Seconds since the epoch.
    confirmed_at: float


def platforms_key(platforms: Sequence[Platform]) -> str:
    """The platforms a copy chose, as one comparable text (``""``: every platform); sorted,
    so the order they were written in does not matter."""
    return ",".join(sorted(str(platform) for platform in platforms))


class ConfirmedTags:
    """The confirmed-tags table over a state file's connection.

    Use :meth:`of` for the open, locked state file of a run, :func:`read_confirmed` to look
    without writing (``--dry-run``).
    """

    def __init__(
        self, db: sqlite3.Connection, *, writable: bool, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._writable = writable
        self._clock = clock
        if writable:
            db.execute(_SCHEMA)

    @classmethod
    def of(cls, state: StateFile, *, clock: Callable[[], float] = time.time) -> ConfirmedTags:
        """The table of ``state`` (open), created on first use."""
        return cls(state.db, writable=True, clock=clock)

    def confirmed(self, destination: str, tag: str) -> Confirmation | None:
        """What ``destination`` (a repository reference, no tag) was confirmed to hold under
        ``tag``, or ``None`` when nothing was."""
        try:
            row = self._db.execute(
                "SELECT digest, source_digest, platforms, confirmed_at FROM confirmed_tags "
                "WHERE destination = ? AND tag = ?",
                (destination, tag),
            ).fetchone()
        except sqlite3.OperationalError:
            # A read-only look at a state file no run has written the table into yet.
            if self._writable:
                raise
            return None
        if row is None:
            return None
        return Confirmation(str(row[0]), str(row[1]), str(row[2]), float(row[3]))

    def confirm(
        self,
        destination: str,
        tag: str,
        digest: str,
        *,
        source_digest: str | None = None,
        platforms: str = "",
    ) -> None:
        """Record that ``destination``'s ``tag`` holds ``digest``, copied from
        ``source_digest`` (default ``digest``) with ``platforms`` chosen."""
        self._check_writable()
        self._db.execute(
            "INSERT OR REPLACE INTO confirmed_tags "
            "(destination, tag, digest, source_digest, platforms, confirmed_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (destination, tag, digest, source_digest or digest, platforms, self._clock()),
        )

    def forget(self, destination: str, tag: str) -> None:
        """Drop what is known of ``destination``'s ``tag`` (it is asked about next time)."""
        self._check_writable()
        self._db.execute(
            "DELETE FROM confirmed_tags WHERE destination = ? AND tag = ?", (destination, tag)
        )

    def _check_writable(self) -> None:
        if not self._writable:
            raise RuntimeError("the confirmed tags were opened read-only")


@contextmanager
def read_confirmed(path: Path) -> Iterator[ConfirmedTags | None]:
    """The confirmed tags of the state file at ``path``, read-only and without its lock.

    ``None`` when there is no state file yet: nothing is created. The lock is not taken, so a
    look (``--dry-run``) works while a run holds it; SQLite's write-ahead log keeps what it
    reads consistent.
    """
    if not path.exists():
        yield None
        return
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=SQLITE_TIMEOUT)
    except sqlite3.Error as exc:
        raise UsageError(f"state file {path} cannot be read: {exc}") from exc
    try:
        yield ConfirmedTags(db, writable=False)
    finally:
        db.close()
