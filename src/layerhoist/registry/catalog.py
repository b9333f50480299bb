"""Repositories, the blobs each repository holds, images and tags, in SQLite.

Manifests are stored here byte for byte (they are small, at most 4 MiB by the API
model); layer bytes live in :mod:`layerhoist.registry.storage`. Every call is one
short statement or transaction, fast enough to run on the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

CATALOG_FILE = "catalog.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS repositories (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    mutability TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS repository_blobs (
    repository TEXT NOT NULL REFERENCES repositories(name) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE TABLE IF NOT EXISTS images (
    repository TEXT NOT NULL REFERENCES repositories(name) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    manifest BLOB NOT NULL,
    media_type TEXT NOT NULL,
    artifact_media_type TEXT,
    size INTEGER NOT NULL,
    pushed_at REAL NOT NULL,
    PRIMARY KEY (repository, digest)
);
CREATE TABLE IF NOT EXISTS image_children (
    repository TEXT NOT NULL,
    parent TEXT NOT NULL,
    child TEXT NOT NULL,
    PRIMARY KEY (repository, parent, child),
    FOREIGN KEY (repository, parent) REFERENCES images(repository, digest) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS image_blobs (
    repository TEXT NOT NULL,
    image TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repository, image, digest),
    FOREIGN KEY (repository, image) REFERENCES images(repository, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS image_blobs_by_digest ON image_blobs (repository, digest);
CREATE TABLE IF NOT EXISTS tags (
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (repository, tag),
    FOREIGN KEY (repository, digest) REFERENCES images(repository, digest) ON DELETE CASCADE
);
"""


class Mutability(StrEnum):
    """Whether a tag of a repository may be moved to another image."""

    MUTABLE = "MUTABLE"
    IMMUTABLE = "IMMUTABLE"


@dataclass(frozen=True, kw_only=True)
class RepositoryRecord:
    """One repository."""

    name: str
    created_at: float
    mutability: Mutability


@dataclass(frozen=True, kw_only=True)
class ImageRecord:
    """One image (manifest or index) of a repository."""

    repository: str
    digest: str
    manifest: bytes
    media_type: str
    artifact_media_type: str | None
    size: int
    pushed_at: float
    tags: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class TagRecord:
    """One tag and the image it names."""

    tag: str
    digest: str
    created_at: float


@dataclass(frozen=True, kw_only=True)
class NewImage:
    """An image about to be stored by :meth:`Catalog.put_image`."""

    repository: str
    digest: str
    manifest: bytes
    media_type: str
    artifact_media_type: str | None
    size: int
    children: tuple[str, ...]
    #: Blobs the manifest references (its config and layers; none for an index).
    blobs: tuple[str, ...] = ()


class Catalog:
    """The SQLite catalog of one data directory."""

    def __init__(self, data_dir: Path) -> None:
        self._db = sqlite3.connect(data_dir / CATALOG_FILE, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    # Repositories

    def create_repository(
        self, name: str, *, mutability: Mutability, now: float
    ) -> RepositoryRecord | None:
        """Create a repository; ``None`` when one of that name exists already."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO repositories (name, created_at, mutability) VALUES (?, ?, ?)",
            (name, now, mutability.value),
        )
        if cursor.rowcount == 0:
            return None
        return RepositoryRecord(name=name, created_at=now, mutability=mutability)

    def repository(self, name: str) -> RepositoryRecord | None:
        """The repository called ``name``, if any."""
        row = self._db.execute(
            "SELECT name, created_at, mutability FROM repositories WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else _repository(row)

    def repositories(self) -> list[RepositoryRecord]:
        """Every repository, by name."""
        rows = self._db.execute(
            "SELECT name, created_at, mutability FROM repositories ORDER BY name"
        ).fetchall()
        return [_repository(row) for row in rows]

    def image_count(self, repository: str | None = None) -> int:
        """Images stored in one repository, or in all of them."""
        if repository is None:
            row = self._db.execute("SELECT count(*) FROM images").fetchone()
        else:
            row = self._db.execute(
                "SELECT count(*) FROM images WHERE repository = ?", (repository,)
            ).fetchone()
        return int(row[0])

    def blob_count(self) -> int:
        """Distinct blobs held by any repository."""
        row = self._db.execute("SELECT count(DISTINCT digest) FROM repository_blobs").fetchone()
        return int(row[0])

    def delete_repository(self, name: str) -> None:
        """Delete a repository with its images, tags and blob memberships."""
        with self._transaction():
            self._db.execute("DELETE FROM repositories WHERE name = ?", (name,))

    # Blobs

    def add_blob(self, repository: str, digest: str, size: int) -> None:
        """Record that ``repository`` holds the blob ``digest``."""
        self._db.execute(
            "INSERT OR IGNORE INTO repository_blobs (repository, digest, size) VALUES (?, ?, ?)",
            (repository, digest, size),
        )

    def blob_size(self, repository: str, digest: str) -> int | None:
        """Size of the blob in ``repository``, or ``None`` when the repository lacks it."""
        row = self._db.execute(
            "SELECT size FROM repository_blobs WHERE repository = ? AND digest = ?",
            (repository, digest),
        ).fetchone()
        return None if row is None else int(row[0])

    def blob_referenced(self, repository: str, digest: str) -> bool:
        """Whether an image of ``repository`` references the blob ``digest``."""
        row = self._db.execute(
            "SELECT 1 FROM image_blobs WHERE repository = ? AND digest = ? LIMIT 1",
            (repository, digest),
        ).fetchone()
        return row is not None

    def missing_blobs(self, repository: str, digests: Iterable[str]) -> list[str]:
        """Those of ``digests`` the repository does not hold, in the given order."""
        return [d for d in dict.fromkeys(digests) if self.blob_size(repository, d) is None]

    # Images and tags

    def image(self, repository: str, digest: str) -> ImageRecord | None:
        """The image ``digest`` of ``repository``, if stored."""
        row = self._db.execute(
            "SELECT repository, digest, manifest, media_type, artifact_media_type, size,"
            " pushed_at FROM images WHERE repository = ? AND digest = ?",
            (repository, digest),
        ).fetchone()
        return None if row is None else self._image(row)

    def images(self, repository: str) -> list[ImageRecord]:
        """Every image of ``repository``, oldest first."""
        rows = self._db.execute(
            "SELECT repository, digest, manifest, media_type, artifact_media_type, size,"
            " pushed_at FROM images WHERE repository = ? ORDER BY pushed_at, digest",
            (repository,),
        ).fetchall()
        return [self._image(row) for row in rows]

    def missing_images(self, repository: str, digests: Iterable[str]) -> list[str]:
        """Those of ``digests`` that are not images of ``repository``."""
        missing = []
        for digest in dict.fromkeys(digests):
            row = self._db.execute(
                "SELECT 1 FROM images WHERE repository = ? AND digest = ?", (repository, digest)
            ).fetchone()
            if row is None:
                missing.append(digest)
        return missing

    def resolve_tag(self, repository: str, tag: str) -> str | None:
        """The digest ``tag`` names in ``repository``, if any."""
        row = self._db.execute(
            "SELECT digest FROM tags WHERE repository = ? AND tag = ?", (repository, tag)
        ).fetchone()
        return None if row is None else str(row[0])

    def tags(self, repository: str) -> list[TagRecord]:
        """Every tag of ``repository``, sorted by name."""
        rows = self._db.execute(
            "SELECT tag, digest, created_at FROM tags WHERE repository = ? ORDER BY tag",
            (repository,),
        ).fetchall()
        return [TagRecord(tag=r[0], digest=r[1], created_at=r[2]) for r in rows]

    def parents(self, repository: str, digest: str) -> list[str]:
        """Indexes of ``repository`` that reference the image ``digest``."""
        rows = self._db.execute(
            "SELECT parent FROM image_children WHERE repository = ? AND child = ?",
            (repository, digest),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def put_image(self, image: NewImage, *, tag: str | None, now: float) -> None:
        """Store an image (unless stored already) and point ``tag`` at it."""
        with self._transaction():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO images (repository, digest, manifest, media_type,"
                " artifact_media_type, size, pushed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    image.repository,
                    image.digest,
                    image.manifest,
                    image.media_type,
                    image.artifact_media_type,
                    image.size,
                    now,
                ),
            )
            if cursor.rowcount:
                self._db.executemany(
                    "INSERT OR IGNORE INTO image_children (repository, parent, child)"
                    " VALUES (?, ?, ?)",
                    [(image.repository, image.digest, child) for child in image.children],
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO image_blobs (repository, image, digest)"
                    " VALUES (?, ?, ?)",
                    [(image.repository, image.digest, blob) for blob in image.blobs],
                )
            if tag is not None:
                self._db.execute(
                    "INSERT INTO tags (repository, tag, digest, created_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest,"
                    " created_at = excluded.created_at",
                    (image.repository, tag, image.digest, now),
                )

    def delete_tag(self, repository: str, tag: str) -> None:
        """Remove one tag, and its image when that was the image's last tag."""
        digest = self.resolve_tag(repository, tag)
        if digest is None:
            return
        with self._transaction():
            self._db.execute("DELETE FROM tags WHERE repository = ? AND tag = ?", (repository, tag))
            remaining = self._db.execute(
                "SELECT count(*) FROM tags WHERE repository = ? AND digest = ?",
                (repository, digest),
            ).fetchone()
            if int(remaining[0]) == 0:
                self._db.execute(
                    "DELETE FROM images WHERE repository = ? AND digest = ?", (repository, digest)
                )

    def delete_image(self, repository: str, digest: str) -> None:
        """Remove an image with all its tags."""
        self._db.execute(
            "DELETE FROM images WHERE repository = ? AND digest = ?", (repository, digest)
        )

    def _image(self, row: tuple[Any, ...]) -> ImageRecord:
        repository, digest, manifest, media_type, artifact_media_type, size, pushed_at = row
        tag_rows = self._db.execute(
            "SELECT tag FROM tags WHERE repository = ? AND digest = ? ORDER BY tag",
            (repository, digest),
        ).fetchall()
        return ImageRecord(
            repository=repository,
            digest=digest,
            manifest=bytes(manifest),
            media_type=media_type,
            artifact_media_type=artifact_media_type,
            size=size,
            pushed_at=pushed_at,
            tags=tuple(r[0] for r in tag_rows),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN … COMMIT (or ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _repository(row: tuple[Any, ...]) -> RepositoryRecord:
    name, created_at, mutability = row
    return RepositoryRecord(name=name, created_at=created_at, mutability=Mutability(mutability))
