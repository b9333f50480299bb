"""The state file: one SQLite database that a run keeps between runs, held by one run at a time.

``layerhoist sync`` records in it what each destination tag was last confirmed to hold
(:mod:`layerhoist.state.tags`), and ``sync`` and ``copy`` journal the uploads in flight so that a
killed run resumes them (:mod:`layerhoist.state.journal`). Each of those modules owns its
tables and creates them on first use; this module opens the file and holds its lock.

The lock is an exclusive ``flock`` on a file beside the database (``STATE.lock``), taken
without waiting for the whole run: an overlapping run (two cron entries, a slow night) stops at
once with :class:`~layerhoist.errors.StateLockedError` (exit 3) instead of interleaving its
writes. The kernel drops the lock when the process dies, so a killed run leaves no stale lock.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Self

from layerhoist.errors import StateLockedError, UsageError

#: The state file's name under the user's cache directory, when ``--state`` names none.
DEFAULT_STATE_NAME = "sync-state.sqlite"
#: Suffix of the lock file beside the database.
LOCK_SUFFIX = ".lock"
#: Seconds a statement waits for SQLite's own lock (held only by this process's connection).
SQLITE_TIMEOUT = 5.0


def default_state_path() -> Path:
    """Where the state file lives without ``--state``: the user's cache directory."""
    # Imported here: only runs that keep state pay for it.
    from platformdirs import user_cache_path

    return user_cache_path("layerhoist") / DEFAULT_STATE_NAME


class StateFile:
    """The open, locked state file; use as a context manager (``with StateFile(path) as s``).

    :attr:`db` is the connection every table module writes through, in autocommit mode:
    each write is on disk (in SQLite's write-ahead log) when the call returns, so a run
    killed between two writes loses neither.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_state_path()
        self._lock_fd: int | None = None
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        """The database connection (the file must be open)."""
        if self._db is None:
            raise RuntimeError(f"state file {self.path} is not open")
        return self._db

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Take the lock, then open (or create) the database."""
        lock_path = self.path.with_name(self.path.name + LOCK_SUFFIX)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise UsageError(f"state file {self.path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateLockedError(
                f"state file {self.path} is in use by another run (its lock {lock_path} is "
                "held); this run stops so that the two do not interleave"
            ) from None
        self._lock_fd = fd
        try:
            db = sqlite3.connect(self.path, timeout=SQLITE_TIMEOUT, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # A process crash loses nothing in WAL mode at NORMAL; only a power cut may drop
            # the last writes, which the next run then simply does again.
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            self.close()
            raise UsageError(f"state file {self.path} cannot be used: {exc}") from exc
        self._db = db

    def close(self) -> None:
        """Close the database and release the lock."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
