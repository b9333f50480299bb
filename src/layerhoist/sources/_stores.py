"""Where source bytes live: a directory or a tar archive, read with ``pread`` in threads.

A :class:`Store` names files by their path inside the layout or archive; :class:`StoreSource`
is what both file-based sources share: blob streaming from a store, and closing it.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import stat
import tarfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from layerhoist.errors import BlobMissingError, CorruptBlobError, ManifestError, SourceError
from layerhoist.image import (
    Descriptor,
    Image,
    short_digest,
)
from layerhoist.refs import SourceRef
from layerhoist.units import MiB

#: The most bytes of one JSON document (index, manifest, config) read into memory: far above any
#: real document, it stops a layer mistakenly referenced as a manifest from being read whole.
MAX_DOCUMENT_SIZE = 64 * MiB
#: A chain of links in an archive longer than this is treated as a loop.
MAX_LINK_DEPTH = 16
#: Leading bytes of the compressed formats a user may hand over instead of a plain tar.
COMPRESSION_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
}
_MAGIC_LENGTH = max(len(magic) for magic in COMPRESSION_MAGIC)


class Store(ABC):
    """Named files of a layout directory or an archive, read without loading blobs whole."""

    @abstractmethod
    def describe(self, name: str) -> str:
        """Where ``name`` lives, for messages."""

    @abstractmethod
    async def size(self, name: str) -> int | None:
        """Size of the regular file ``name``, or ``None`` when there is none."""

    @abstractmethod
    async def pread(self, name: str, *, length: int, position: int) -> bytes:
        """``length`` bytes of ``name`` from ``position``, fewer only where the file ends."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close what the store holds open."""

    async def read(self, name: str) -> bytes:
        """The whole of the small file ``name``; :class:`BlobMissingError` when it is absent."""
        size = await self.size(name)
        if size is None:
            raise BlobMissingError(f"{self.describe(name)} is missing")
        if size > MAX_DOCUMENT_SIZE:
            raise ManifestError(
                f"{self.describe(name)} is {size} bytes, more than the {MAX_DOCUMENT_SIZE} "
                "bytes a manifest or config may have"
            )
        return await self.pread(name, length=size, position=0)

    async def chunks(
        self, name: str, *, digest: str, length: int, offset: int, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """``length`` bytes of blob ``digest`` (file ``name``) from ``offset``.

        Chunks are exactly ``chunk_size`` bytes, the last one shorter. Nothing stays open
        between chunks, so a consumer that stops early leaks nothing.
        """
        position = offset
        end = offset + length
        while position < end:
            want = min(chunk_size, end - position)
            data = await self.pread(name, length=want, position=position)
            if len(data) < want:
                missing = end - position - len(data)
                raise CorruptBlobError(
                    f"{self.describe(name)} ends {missing} bytes early", digest=digest
                )
            position += want
            # Hand the chunk over without keeping it in this frame: a suspended
            # generator would otherwise hold the previous chunk until it is resumed,
            # outside the memory budget of whoever consumes it.
            handed = [data]
            del data
            yield handed.pop()


def _pread_full(fd: int, *, length: int, position: int) -> bytes:
    """``length`` bytes at ``position`` (``pread`` may return less than asked: ask again)."""
    data = os.pread(fd, length, position)
    if len(data) == length or not data:
        return data
    pieces = [data]
    received = len(data)
    while received < length:
        more = os.pread(fd, length - received, position + received)
        if not more:
            break
        pieces.append(more)
        received += len(more)
    return b"".join(pieces)


#: What a file that is not a regular file is, for messages.
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_regular(mode: int) -> str | None:
    """How a file of ``mode`` is described when it is not a regular file (``None`` if it is)."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _FILE_KINDS if test(mode)), "not a regular file")


def open_regular(path: Path, *, where: str) -> int:
    """A read-only descriptor of the regular file ``path``; :class:`SourceError` otherwise.

    Opened without blocking, so a FIFO or device put where a blob was expected fails at once
    instead of hanging the push (and its Ctrl-C) in an ``open`` that waits for a writer.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    kind = _not_regular(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise SourceError(f"{where} is {kind}, not a regular file")
    return fd


def _pread_file(path: Path, *, length: int, position: int) -> bytes:
    fd = open_regular(path, where=str(path))
    try:
        return _pread_full(fd, length=length, position=position)
    finally:
        os.close(fd)


class DirectoryStore(Store):
    """Files of a layout directory; every stream opens its own descriptor."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self, name: str) -> str:
        return str(self.root / name)

    async def size(self, name: str) -> int | None:
        try:
            status = await anyio.Path(self.root / name).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SourceError(f"{self.describe(name)}: {exc.strerror}") from exc
        kind = _not_regular(status.st_mode)
        if kind is not None:
            raise SourceError(f"{self.describe(name)} is {kind}, not a regular file")
        return status.st_size

    async def pread(self, name: str, *, length: int, position: int) -> bytes:
        # Open per read: no descriptor outlives a chunk, whoever abandons a stream.
        read = functools.partial(_pread_file, self.root / name, length=length, position=position)
        try:
            # Abandoned on cancellation: Ctrl-C must not wait on a read that hangs.
            return await anyio.to_thread.run_sync(read, abandon_on_cancel=True)
        except FileNotFoundError as exc:
            raise BlobMissingError(f"{self.describe(name)} is missing") from exc
        except OSError as exc:
            raise SourceError(f"{self.describe(name)}: {exc.strerror}") from exc

    async def aclose(self) -> None:
        """Nothing to close: each stream opens and closes its own descriptor."""


@dataclass(frozen=True)
class _Member:
    offset: int
    size: int


class TarStore(Store):
    """Members of an uncompressed tar, indexed once and read in place through one descriptor."""

    def __init__(self, path: Path, fd: int, members: dict[str, _Member]) -> None:
        self.path = path
        self._fd: int | None = fd
        self._members = members

    @classmethod
    async def open(cls, path: Path, *, where: str) -> TarStore:
        """Index the archive at ``path`` (``where`` names it in messages)."""
        fd, members = await anyio.to_thread.run_sync(
            _index_tar, path, where, abandon_on_cancel=True
        )
        return cls(path, fd, members)

    def describe(self, name: str) -> str:
        return f"{name} in {self.path}"

    async def size(self, name: str) -> int | None:
        member = self._members.get(_clean_member_name(name))
        return None if member is None else member.size

    async def pread(self, name: str, *, length: int, position: int) -> bytes:
        member = self._members.get(_clean_member_name(name))
        if member is None:
            raise BlobMissingError(f"{self.describe(name)} is missing")
        if self._fd is None:
            raise SourceError(f"{self.path} was closed while still being read")
        # Never past the member's end, which is where the next member's bytes begin.
        length = max(0, min(length, member.size - position))
        read = functools.partial(
            _pread_full, self._fd, length=length, position=member.offset + position
        )
        return await anyio.to_thread.run_sync(read, abandon_on_cancel=True)

    async def aclose(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            await anyio.to_thread.run_sync(os.close, fd)


def _clean_member_name(name: str) -> str:
    return posixpath.normpath(name.lstrip("/"))


def _index_tar(path: Path, where: str) -> tuple[int, dict[str, _Member]]:
    """Map each regular member (and each link, to its target) to its bytes; open ``path``."""
    try:
        fd = open_regular(path, where=where)
    except OSError as exc:
        raise SourceError(f"{where}: {exc.strerror}") from exc
    try:
        _check_uncompressed(_pread_full(fd, length=_MAGIC_LENGTH, position=0), where=where)
        # tarfile refuses an archive cut short inside a member ("unexpected end of data").
        with open(fd, "rb", closefd=False) as file:
            members, links = _scan_tar(file, where)
    except BaseException:
        os.close(fd)
        raise
    for name in links:
        target = _resolve_link(name, links, members)
        if target is not None:
            members[name] = members[target]
    return fd, members


def _check_uncompressed(magic: bytes, *, where: str) -> None:
    for prefix, compression in COMPRESSION_MAGIC.items():
        if magic.startswith(prefix):
            raise SourceError(
                f"{where} is {compression}-compressed: decompress it first "
                "(docker save writes a plain tar)"
            )


def _scan_tar(file: BinaryIO, where: str) -> tuple[dict[str, _Member], dict[str, str]]:
    members: dict[str, _Member] = {}
    links: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=file, mode="r:") as archive:
            for info in archive:
                name = _clean_member_name(info.name)
                if info.isreg():
                    members[name] = _Member(info.offset_data, info.size)
                elif info.issym():
                    links[name] = posixpath.normpath(
                        posixpath.join(posixpath.dirname(name), info.linkname)
                    )
                elif info.islnk():
                    links[name] = _clean_member_name(info.linkname)
    except (tarfile.TarError, EOFError) as exc:
        raise SourceError(f"{where} is not a readable tar archive: {exc}") from exc
    except OSError as exc:
        raise SourceError(f"{where}: {exc.strerror or exc}") from exc
    return members, links


def _resolve_link(name: str, links: dict[str, str], members: dict[str, _Member]) -> str | None:
    current = name
    for _ in range(MAX_LINK_DEPTH):
        current = links[current]
        if current in members:
            return current
        if current not in links:
            return None
    return None


def check_size(size: int, descriptor: Descriptor, *, where: str, what: str) -> None:
    if size != descriptor.size:
        raise CorruptBlobError(
            f"{where}: {what} {short_digest(descriptor.digest)} is {size} bytes but its "
            f"descriptor says {descriptor.size}",
            digest=descriptor.digest,
        )


def load_json(raw: bytes, *, where: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{where} is not valid JSON: {exc}") from exc


class StoreSource:
    """What both transports share: blob streaming from a store, and closing it."""

    def __init__(self, ref: SourceRef) -> None:
        self.ref = ref
        self.description = str(ref)
        #: ``transport:PATH``, the prefix of every message about this source.
        self.where = f"{ref.transport}:{ref.path}"
        self._store: Store | None = None
        self._blob_names: dict[str, str] = {}

    def blob_chunks(
        self, descriptor: Descriptor, *, offset: int = 0, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """Stream a loaded blob from ``offset`` in chunks of exactly ``chunk_size`` (last shorter).

        Raises :class:`BlobMissingError` for a blob of no loaded image, and
        :class:`CorruptBlobError` if the file turns out shorter than the descriptor says.
        """
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        if not 0 <= offset <= descriptor.size:
            raise ValueError(f"offset {offset} is outside blob of {descriptor.size} bytes")
        name = self._blob_names.get(descriptor.digest)
        if self._store is None or name is None:
            raise BlobMissingError(
                f"{self.where}: blob {short_digest(descriptor.digest)} belongs to no loaded image"
            )
        return self._store.chunks(
            name,
            digest=descriptor.digest,
            length=descriptor.size - offset,
            offset=offset,
            chunk_size=chunk_size,
        )

    async def aclose(self) -> None:
        """Close the archive, if one is open; streams still running fail afterwards."""
        if self._store is not None:
            await self._store.aclose()

    def _remember_blobs(self, images: Sequence[Image], blob_name: Callable[[str], str]) -> None:
        for image in images:
            for descriptor in image.blobs():
                self._blob_names.setdefault(descriptor.digest, blob_name(descriptor.digest))
