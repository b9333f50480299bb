"""The upload journal in the state file: the SQLite side of
:class:`~layerhoist.transfer.journal.UploadJournal`.

Two tables of its own, created on first use: one row per upload in flight (its session and
part size) and one row per acknowledged part (end offset, xxh3, the session after it). The
write the pipeline makes per part is one small ``INSERT``; the connection is in autocommit
mode over SQLite's write-ahead log, so the row survives the process being killed the moment
after. The few writes that change several rows run in one transaction, so a killed run never
leaves an upload's parts without its session or the other way round.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from layerhoist.transfer.journal import JournaledPart, JournalEntry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal_uploads (
    destination TEXT NOT NULL,
    digest TEXT NOT NULL,
    session TEXT NOT NULL,
    part_size INTEGER NOT NULL,
    PRIMARY KEY (destination, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal_parts (
    destination TEXT NOT NULL,
    digest TEXT NOT NULL,
    part INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    xxh3 TEXT NOT NULL,
    session TEXT NOT NULL,
    PRIMARY KEY (destination, digest, part)
) WITHOUT ROWID;
"""


class StateJournal:
    """The upload journal kept in a state file's database (``StateFile.db``)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def pending(self, destination: str) -> dict[str, JournalEntry]:
        """The uploads journaled for ``destination``, by blob digest.

        An entry keeps its parts from the first up to the first one missing: only a prefix
        without holes says which bytes the service holds.
        """
        uploads = self._db.execute(
            "SELECT digest, session, part_size FROM journal_uploads WHERE destination = ?",
            (destination,),
        ).fetchall()
        parts: dict[str, list[JournaledPart]] = {}
        rows = self._db.execute(
            "SELECT digest, part, end_offset, xxh3, session FROM journal_parts "
            "WHERE destination = ? ORDER BY digest, part",
            (destination,),
        )
        for digest, index, end, xxh3, session in rows:
            kept = parts.setdefault(digest, [])
            if index == len(kept):
                kept.append(JournaledPart(index=index, end=end, xxh3=xxh3, session=session))
        return {
            digest: JournalEntry(
                destination=destination,
                digest=digest,
                session=session,
                part_size=part_size,
                parts=tuple(parts.get(digest, ())),
            )
            for digest, session, part_size in uploads
        }

    def started(self, destination: str, digest: str, *, session: str, part_size: int) -> None:
        """An upload began: it replaces any entry of the blob, parts included."""
        with self._transaction():
            self._delete_parts(destination, digest, first=0)
            self._db.execute(
                "INSERT OR REPLACE INTO journal_uploads VALUES (?, ?, ?, ?)",
                (destination, digest, session, part_size),
            )

    def acknowledged(self, destination: str, digest: str, part: JournaledPart) -> None:
        """The service accepted ``part``; one ``INSERT``."""
        self._db.execute(
            "INSERT OR REPLACE INTO journal_parts VALUES (?, ?, ?, ?, ?, ?)",
            (destination, digest, part.index, part.end, part.xxh3, part.session),
        )

    def truncate(self, destination: str, digest: str, *, parts: int) -> None:
        """Keep only the first ``parts`` parts of the blob's entry."""
        self._delete_parts(destination, digest, first=parts)

    def forget(self, destination: str, digest: str) -> None:
        """Drop the blob's entry and its parts."""
        with self._transaction():
            self._delete_parts(destination, digest, first=0)
            self._db.execute(
                "DELETE FROM journal_uploads WHERE destination = ? AND digest = ?",
                (destination, digest),
            )

    def _delete_parts(self, destination: str, digest: str, *, first: int) -> None:
        self._db.execute(
            "DELETE FROM journal_parts WHERE destination = ? AND digest = ? AND part >= ?",
            (destination, digest, first),
        )
