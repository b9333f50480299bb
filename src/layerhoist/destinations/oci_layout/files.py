"""The blocking file steps of writing a layout; the destination runs each in a worker thread.

A final name only ever appears through an atomic rename of a complete, fsynced temporary file
that lives in the layout root (the same file system as ``blobs/``, so the rename is atomic).
Temporary names start with :data:`TEMPORARY_PREFIX` and carry a random token, so two runs
writing one layout never share a temporary file. The one file they both rewrite, ``index.json``,
is rewritten under :func:`layout_lock`, so that neither drops the tag the other just wrote.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Every temporary file of a layout being written starts with this (a hidden file).
TEMPORARY_PREFIX = ".layerhoist-"
#: Random bytes in a temporary name.
TEMPORARY_TOKEN_BYTES = 8
#: Permissions of a new file before the umask, what ``open()`` gives new files.
FILE_MODE = 0o666
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """Give an ``OSError`` raised inside the path it concerns, when it names none.

    ``os.pwrite`` and ``os.fsync`` work on descriptors: without this, "No space left on
    device" would not say where.
    """
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


@contextmanager
def layout_lock(root: Path) -> Iterator[None]:
    """Hold the exclusive lock of the layout at ``root``, waiting for it (blocking).

    It is a ``flock`` on the layout directory itself, which leaves no file in the layout;
    processes writing one layout (the shards of a sync, two copies) hold it while they read,
    change and replace ``index.json``. Closing the descriptor releases it, also when the
    process dies.
    """
    with naming(root):
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with naming(root):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def temporary_path(root: Path, label: str) -> Path:
    """A fresh temporary name in ``root`` for what ``label`` names (a digest's hex, a file)."""
    return root / f"{TEMPORARY_PREFIX}{label}-{secrets.token_hex(TEMPORARY_TOKEN_BYTES)}"


def create(path: Path) -> int:
    """Create ``path`` (which must not exist) for writing; its descriptor."""
    with naming(path):
        return os.open(path, _CREATE_FLAGS, FILE_MODE)


def write_at(fd: int, data: memoryview, offset: int, path: Path) -> None:
    """Write all of ``data`` at ``offset`` (a retry rewrites the same bytes in place)."""
    with naming(path):
        while data:
            written = os.pwrite(fd, data, offset)
            data = data[written:]
            offset += written


def publish(fd: int, temporary: Path, final: Path) -> bool:
    """Flush and close ``fd`` (open on ``temporary``), then rename it to ``final``.

    Returns ``False`` when ``final`` was there already (content addressed, so the same
    bytes): the temporary file is removed and the existing one left untouched.
    """
    with naming(temporary):
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if final.exists():
        remove(temporary)
        return False
    with naming(final):
        temporary.replace(final)
        sync_directory(final.parent)
    return True


def write_atomically(root: Path, final: Path, data: bytes) -> None:
    """Replace ``final`` with ``data``, through a fsynced temporary file in ``root``."""
    temporary = temporary_path(root, final.name)
    fd = create(temporary)
    try:
        try:
            write_at(fd, memoryview(data), 0, temporary)
            with naming(temporary):
                os.fsync(fd)
        finally:
            os.close(fd)
        with naming(final):
            temporary.replace(final)
    except BaseException:
        remove(temporary)
        raise
    sync_directory(final.parent)


def sync_directory(path: Path) -> None:
    """fsync a directory, so that a rename into it survives a crash."""
    with naming(path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove(path: Path) -> None:
    """Remove ``path`` if it is there."""
    path.unlink(missing_ok=True)
