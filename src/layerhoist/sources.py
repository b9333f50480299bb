"""Sources: where images come from, each blob handed out as an async stream of chunks.

Two transports, as skopeo names them:

* ``oci:DIR[:TAG]`` — an OCI image layout directory (``oci-layout``, ``index.json``,
  ``blobs/sha256/…``). Tags are the ``org.opencontainers.image.ref.name`` annotations of
  ``index.json``; an entry may be a manifest or a multi-arch index.
* ``docker-archive:FILE[:TAG]`` — ``docker save`` output, read in place (never unpacked). Docker
  25+ and containerd write an OCI layout inside the tar, which is preferred when present; older
  Docker and skopeo write the legacy form (``manifest.json`` with ``Config``/``RepoTags``/
  ``Layers``), for which a Docker schema 2 manifest of the uncompressed layers is synthesized.

Without a tag, every tagged image is loaded; a source with a single untagged image yields it with
tag ``None`` (the destination's tag then applies).

``load()`` checks everything that can be checked without reading layer bytes: the layout files,
every manifest (size and digest), and that every blob exists with the size its descriptor
promises. Layer bytes are hashed later, as the pipeline streams them. Each failure is one line
naming the path, tag or digest at fault.

File I/O runs in anyio worker threads. Blobs are read with ``os.pread``, so any number of streams
can share one archive descriptor, and no more than one chunk of a blob is held at a time.
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
from typing import Any, Generic, Protocol, TypeVar

import anyio

from layerhoist.config import MiB
from layerhoist.errors import BlobMissingError, CorruptBlobError, ManifestError, SourceError
from layerhoist.image import (
    DIGEST_PATTERN,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    MANIFEST_TYPES,
    SCHEMA_VERSION,
    SHA256_PREFIX,
    Descriptor,
    Image,
    Manifest,
    parse_manifest,
    sha256_digest,
    short_digest,
)
from layerhoist.reference import SourceRef, is_valid_tag, split_name_tag

#: The most bytes of one JSON document (index, manifest, config) read into memory: far above any
#: real document, it stops a layer mistakenly referenced as a manifest from being read whole.
MAX_DOCUMENT_SIZE = 64 * MiB
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
#: Set by containerd and Docker 25+ on index.json entries: the full image name with its tag.
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
#: A chain of links in an archive longer than this is treated as a loop.
MAX_LINK_DEPTH = 16
#: Tags listed in a "no such tag" message before it says "…".
MAX_LISTED_TAGS = 10
OCI_LAYOUT_FILE = "oci-layout"
OCI_INDEX_FILE = "index.json"
DOCKER_MANIFEST_FILE = "manifest.json"
SUPPORTED_LAYOUT_VERSION_PREFIX = "1."
#: Leading bytes of the compressed formats a user may hand over instead of a plain tar.
COMPRESSION_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
}
_MAGIC_LENGTH = max(len(magic) for magic in COMPRESSION_MAGIC)
_DOCKER_HUB_PREFIXES = ("docker.io/", "index.docker.io/")
_DOCKER_HUB_LIBRARY = "library/"


class Source(Protocol):
    """Where images come from; the pipeline asks it for images and for blob bytes."""

    #: The source as the user wrote it, for messages and reports.
    description: str

    async def load(self) -> list[Image]:
        """Read and validate the images to push: one for a tag, every tagged image without."""
        ...

    def blob_chunks(
        self, descriptor: Descriptor, *, offset: int = 0, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """Stream a blob from ``offset``: chunks of ``chunk_size`` bytes, the last one shorter."""
        ...

    async def aclose(self) -> None:
        """Release what the source holds open."""
        ...


def open_source(ref: SourceRef) -> Source:
    """The source for ``ref``. Nothing is read until :meth:`Source.load`."""
    if ref.transport == "oci":
        return OciLayoutSource(ref)
    return DockerArchiveSource(ref)


# ------------------------------------------------------------------------------------ storage


class _Store(ABC):
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


def _pread_file(path: Path, *, length: int, position: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _pread_full(fd, length=length, position=position)
    finally:
        os.close(fd)


class _DirectoryStore(_Store):
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
        return status.st_size if stat.S_ISREG(status.st_mode) else None

    async def pread(self, name: str, *, length: int, position: int) -> bytes:
        # Open per read: no descriptor outlives a chunk, whoever abandons a stream.
        read = functools.partial(_pread_file, self.root / name, length=length, position=position)
        try:
            return await anyio.to_thread.run_sync(read)
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


class _TarStore(_Store):
    """Members of an uncompressed tar, indexed once and read in place through one descriptor."""

    def __init__(self, path: Path, fd: int, members: dict[str, _Member]) -> None:
        self.path = path
        self._fd: int | None = fd
        self._members = members

    @classmethod
    async def open(cls, path: Path, *, where: str) -> _TarStore:
        """Index the archive at ``path`` (``where`` names it in messages)."""
        fd, members = await anyio.to_thread.run_sync(_index_tar, path, where)
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
        return await anyio.to_thread.run_sync(read)

    async def aclose(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            await anyio.to_thread.run_sync(os.close, fd)


def _clean_member_name(name: str) -> str:
    return posixpath.normpath(name.lstrip("/"))


def _index_tar(path: Path, where: str) -> tuple[int, dict[str, _Member]]:
    """Map each regular member (and each link, to its target) to its bytes; open ``path``."""
    try:
        with path.open("rb") as file:
            magic = file.read(_MAGIC_LENGTH)
    except OSError as exc:
        raise SourceError(f"{where}: {exc.strerror}") from exc
    for prefix, compression in COMPRESSION_MAGIC.items():
        if magic.startswith(prefix):
            raise SourceError(
                f"{where} is {compression}-compressed: decompress it first "
                "(docker save writes a plain tar)"
            )
    # tarfile itself refuses an archive cut short inside a member ("unexpected end of data").
    members, links = _scan_tar(path, where)
    for name in links:
        target = _resolve_link(name, links, members)
        if target is not None:
            members[name] = members[target]
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise SourceError(f"{where}: {exc.strerror}") from exc
    return fd, members


def _scan_tar(path: Path, where: str) -> tuple[dict[str, _Member], dict[str, str]]:
    members: dict[str, _Member] = {}
    links: dict[str, str] = {}
    try:
        with tarfile.open(path, mode="r:") as archive:
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


# --------------------------------------------------------------------------- selecting images

_Target = TypeVar("_Target")


@dataclass(frozen=True)
class _Candidate(Generic[_Target]):
    """An image a source could load, before it is read.

    ``names`` are the ``NAME:TAG`` forms it is known by (in familiar form); ``key`` identifies
    the image: two candidates with one key are the same image.
    """

    target: _Target
    tag: str | None
    names: frozenset[str]
    key: str


def _familiar(name: str) -> str:
    """``name`` as ``docker images`` shows it: without ``docker.io/`` and ``library/``."""
    for prefix in _DOCKER_HUB_PREFIXES:
        if name.startswith(prefix):
            return name.removeprefix(prefix).removeprefix(_DOCKER_HUB_LIBRARY)
    return name


def _select(
    candidates: Sequence[_Candidate[_Target]], selector: str | None, *, where: str
) -> list[_Candidate[_Target]]:
    """The candidates ``selector`` (``NAME:TAG``, a tag, or ``None`` for all) picks."""
    if selector is None:
        return _select_all(candidates, where=where)
    name, tag = split_name_tag(selector)
    if name is None:
        matches = [candidate for candidate in candidates if candidate.tag == tag]
    else:
        wanted = _familiar(selector)
        matches = [candidate for candidate in candidates if wanted in candidate.names]
    distinct = list({candidate.key: candidate for candidate in matches}.values())
    if not distinct:
        raise SourceError(
            f"{where}: no image tagged {selector!r} (tags present: {_list_tags(candidates)})"
        )
    if len(distinct) > 1:
        raise SourceError(
            f"{where}: tag {selector!r} names {len(distinct)} different images "
            f"({_describe(distinct)}); "
            "select one as NAME:TAG"
        )
    return distinct


def _select_all(
    candidates: Sequence[_Candidate[_Target]], *, where: str
) -> list[_Candidate[_Target]]:
    if all(candidate.tag is None for candidate in candidates):
        if len({candidate.key for candidate in candidates}) == 1:
            return [candidates[0]]
        if not candidates:
            raise SourceError(f"{where} holds no images")
        raise SourceError(
            f"{where} holds {len(candidates)} untagged images and no tags to tell them apart"
        )
    chosen: dict[str, _Candidate[_Target]] = {}
    for candidate in candidates:
        tag = candidate.tag
        if tag is None:
            continue
        if not is_valid_tag(tag):
            raise SourceError(
                f"{where}: {tag!r} cannot be used as a tag; push its images one at a time "
                "with a destination tag"
            )
        previous = chosen.setdefault(tag, candidate)
        if previous.key != candidate.key:
            raise SourceError(
                f"{where}: tag {tag!r} names two different images "
                f"({_describe([previous, candidate])}); "
                "select one in the source reference"
            )
    return list(chosen.values())


def _describe(candidates: Sequence[_Candidate[_Target]]) -> str:
    """The names of ``candidates``, or their short keys when they have no names."""
    names = sorted({name for candidate in candidates for name in candidate.names})
    return ", ".join(names or [short_digest(candidate.key) for candidate in candidates])


def _list_tags(candidates: Sequence[_Candidate[_Target]]) -> str:
    tags = sorted({candidate.tag for candidate in candidates if candidate.tag is not None})
    if not tags:
        return "none"
    listed = ", ".join(tags[:MAX_LISTED_TAGS])
    return listed + (", …" if len(tags) > MAX_LISTED_TAGS else "")


# ------------------------------------------------------------------------------ OCI layouts


def _oci_blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix(SHA256_PREFIX)


def _label(tag: str | None, digest: str) -> str:
    return f"image {tag}" if tag is not None else f"image {short_digest(digest)}"


class _OciLayoutReader:
    """Reads the images of an OCI image layout held by a store."""

    def __init__(self, store: _Store, *, where: str) -> None:
        self._store = store
        self._where = where
        self._manifests: dict[str, Manifest] = {}

    async def candidates(self) -> list[_Candidate[Descriptor]]:
        """The entries of ``index.json`` with the names their annotations give them."""
        await self._check_layout_version()
        raw = await self._store.read(OCI_INDEX_FILE)
        try:
            index = parse_manifest(raw)
        except ManifestError as exc:
            raise ManifestError(f"{self._store.describe(OCI_INDEX_FILE)}: {exc}") from exc
        if not index.is_index:
            raise ManifestError(f"{self._store.describe(OCI_INDEX_FILE)} is not an image index")
        entries = json.loads(raw)["manifests"]
        return [
            _oci_candidate(descriptor, entry.get("annotations"))
            for descriptor, entry in zip(index.manifests, entries, strict=True)
        ]

    async def _check_layout_version(self) -> None:
        if await self._store.size(OCI_LAYOUT_FILE) is None:
            return
        raw = await self._store.read(OCI_LAYOUT_FILE)
        where = self._store.describe(OCI_LAYOUT_FILE)
        document = _load_json(raw, where=where)
        version = document.get("imageLayoutVersion") if isinstance(document, dict) else None
        if not isinstance(version, str) or not version.startswith(SUPPORTED_LAYOUT_VERSION_PREFIX):
            raise ManifestError(f"{where}: unsupported imageLayoutVersion {version!r}")

    async def image(self, descriptor: Descriptor, tag: str | None) -> Image:
        """Load the image ``descriptor`` points at and check that all of its blobs are present."""
        label = _label(tag, descriptor.digest)
        top = await self._manifest(descriptor, label)
        children: list[Manifest] = []
        for child in top.manifests:
            child_label = f"{label} ({child.platform_name or short_digest(child.digest)})"
            manifest = await self._manifest(child, child_label)
            if manifest.is_index:
                raise ManifestError(
                    f"{self._where}: {child_label}: nested index {short_digest(child.digest)} "
                    "is not supported"
                )
            children.append(manifest)
        image = Image(tag, top, tuple(children))
        await _check_blobs(self._store, image, _oci_blob_name, where=f"{self._where}: {label}")
        return image

    async def _manifest(self, descriptor: Descriptor, label: str) -> Manifest:
        where = f"{self._where}: {label}"
        digest = descriptor.digest
        if descriptor.media_type not in MANIFEST_TYPES:
            raise ManifestError(
                f"{where}: {short_digest(digest)} has media type {descriptor.media_type!r}, "
                "not an image manifest or index"
            )
        cached = self._manifests.get(digest)
        if cached is not None:
            return cached
        name = _oci_blob_name(digest)
        size = await self._store.size(name)
        if size is None:
            location = self._store.describe(name)
            raise BlobMissingError(
                f"{where}: manifest {short_digest(digest)} is missing ({location})"
            )
        _check_size(size, descriptor, where=where, what="manifest")
        raw = await self._store.read(name)
        if sha256_digest(raw) != digest:
            raise CorruptBlobError(
                f"{where}: manifest {short_digest(digest)} does not match its digest "
                f"(its bytes hash to {short_digest(sha256_digest(raw))})",
                digest=digest,
            )
        try:
            manifest = parse_manifest(raw, media_type=descriptor.media_type)
        except ManifestError as exc:
            raise ManifestError(f"{where}: {exc}") from exc
        self._manifests[digest] = manifest
        return manifest


def _oci_candidate(descriptor: Descriptor, annotations: object) -> _Candidate[Descriptor]:
    values = annotations if isinstance(annotations, dict) else {}
    ref_name = values.get(REF_NAME_ANNOTATION)
    image_name = values.get(IMAGE_NAME_ANNOTATION)
    names: set[str] = set()
    tag: str | None = None
    if isinstance(ref_name, str) and ref_name:
        repository, tag = split_name_tag(ref_name)
        if repository is not None:
            names.add(_familiar(ref_name))
    if isinstance(image_name, str):
        repository, image_tag = split_name_tag(image_name)
        if repository is not None:
            names.add(_familiar(image_name))
            tag = tag if tag is not None else image_tag
    return _Candidate(descriptor, tag, frozenset(names), descriptor.digest)


async def _check_blobs(
    store: _Store, image: Image, blob_name: Callable[[str], str], *, where: str
) -> None:
    for descriptor in image.blobs():
        name = blob_name(descriptor.digest)
        size = await store.size(name)
        if size is None:
            raise BlobMissingError(
                f"{where}: blob {short_digest(descriptor.digest)} is missing "
                f"({store.describe(name)})"
            )
        _check_size(size, descriptor, where=where, what="blob")


def _check_size(size: int, descriptor: Descriptor, *, where: str, what: str) -> None:
    if size != descriptor.size:
        raise CorruptBlobError(
            f"{where}: {what} {short_digest(descriptor.digest)} is {size} bytes but its "
            f"descriptor says {descriptor.size}",
            digest=descriptor.digest,
        )


def _load_json(raw: bytes, *, where: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{where} is not valid JSON: {exc}") from exc


# ----------------------------------------------------------------- legacy docker save archives


@dataclass(frozen=True)
class _LegacyEntry:
    config: str
    layers: tuple[str, ...]
    repo_tags: tuple[str, ...]


class _LegacyArchiveReader:
    """Reads the images of a legacy ``docker save`` archive (``manifest.json`` form)."""

    def __init__(self, store: _Store, *, where: str) -> None:
        self._store = store
        self._where = where
        #: Which member holds each blob of the images loaded so far.
        self.blob_names: dict[str, str] = {}

    async def candidates(self) -> list[_Candidate[_LegacyEntry]]:
        """One candidate per ``RepoTags`` entry (one untagged candidate for an image without)."""
        where = self._store.describe(DOCKER_MANIFEST_FILE)
        document = _load_json(await self._store.read(DOCKER_MANIFEST_FILE), where=where)
        if not isinstance(document, list):
            raise ManifestError(f"{where} is not a JSON list")
        candidates = []
        for position, item in enumerate(document):
            entry = _legacy_entry(item, where=f"{where} entry {position}")
            if not entry.repo_tags:
                candidates.append(_Candidate(entry, None, frozenset(), entry.config))
            for repo_tag in entry.repo_tags:
                _, tag = split_name_tag(repo_tag)
                candidates.append(
                    _Candidate(entry, tag, frozenset({_familiar(repo_tag)}), entry.config)
                )
        return candidates

    async def image(self, entry: _LegacyEntry, tag: str | None) -> Image:
        """Synthesize the Docker schema 2 manifest of ``entry`` and check its layers exist."""
        where = f"{self._where}: image {tag if tag is not None else entry.config}"
        config_raw = await self._read(entry.config, where=where)
        config = _load_json(config_raw, where=f"{where}: config {entry.config}")
        rootfs = config.get("rootfs") if isinstance(config, dict) else None
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or not all(
            isinstance(item, str) and DIGEST_PATTERN.fullmatch(item) for item in diff_ids
        ):
            raise ManifestError(f"{where}: config {entry.config} has no valid rootfs.diff_ids")
        if len(diff_ids) != len(entry.layers):
            raise ManifestError(
                f"{where}: config {entry.config} lists {len(diff_ids)} diff_ids but "
                f"manifest.json lists {len(entry.layers)} layers"
            )
        layers = []
        for diff_id, member in zip(diff_ids, entry.layers, strict=True):
            size = await self._store.size(member)
            if size is None:
                raise BlobMissingError(f"{where}: layer {self._store.describe(member)} is missing")
            layers.append({"mediaType": DOCKER_LAYER, "size": size, "digest": diff_id})
        config_digest = sha256_digest(config_raw)
        document = {
            "schemaVersion": SCHEMA_VERSION,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG,
                "size": len(config_raw),
                "digest": config_digest,
            },
            "layers": layers,
        }
        # Compact and in a fixed key order: the same archive always gives the same manifest
        # digest, so a second run finds everything already pushed.
        raw = json.dumps(document, separators=(",", ":")).encode()
        manifest = parse_manifest(raw, media_type=DOCKER_MANIFEST)
        self.blob_names.setdefault(config_digest, entry.config)
        for diff_id, member in zip(diff_ids, entry.layers, strict=True):
            self.blob_names.setdefault(diff_id, member)
        return Image(tag, manifest)

    async def _read(self, name: str, *, where: str) -> bytes:
        try:
            return await self._store.read(name)
        except BlobMissingError as exc:
            raise BlobMissingError(f"{where}: {exc}") from exc


def _legacy_entry(item: object, *, where: str) -> _LegacyEntry:
    if not isinstance(item, dict):
        raise ManifestError(f"{where} is not an object")
    config = item.get("Config")
    layers = item.get("Layers")
    repo_tags = item.get("RepoTags") or []
    if not isinstance(config, str) or not config:
        raise ManifestError(f"{where} has no Config")
    if not isinstance(layers, list) or not all(isinstance(layer, str) for layer in layers):
        raise ManifestError(f"{where} has no Layers list")
    if not isinstance(repo_tags, list) or not all(isinstance(tag, str) for tag in repo_tags):
        raise ManifestError(f"{where} has a RepoTags that is not a list of names")
    return _LegacyEntry(config, tuple(layers), tuple(repo_tags))


# ----------------------------------------------------------------------------------- sources


class _StoreSource:
    """What both transports share: blob streaming from a store, and closing it."""

    def __init__(self, ref: SourceRef) -> None:
        self.ref = ref
        self.description = str(ref)
        #: ``transport:PATH``, the prefix of every message about this source.
        self.where = f"{ref.transport}:{ref.path}"
        self._store: _Store | None = None
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


class OciLayoutSource(_StoreSource):
    """``oci:DIR[:TAG]``: an OCI image layout directory."""

    async def load(self) -> list[Image]:
        """The tagged image (or every tagged image) of the layout, checked."""
        root = anyio.Path(self.ref.path)
        if not await root.exists():
            raise SourceError(f"{self.where}: no such directory")
        if not await root.is_dir():
            raise SourceError(f"{self.where}: not a directory")
        store = _DirectoryStore(self.ref.path)
        if await store.size(OCI_INDEX_FILE) is None:
            raise SourceError(f"{self.where}: no {OCI_INDEX_FILE}, so not an OCI image layout")
        self._store = store
        reader = _OciLayoutReader(store, where=self.where)
        chosen = _select(await reader.candidates(), self.ref.tag, where=self.where)
        images = [await reader.image(candidate.target, candidate.tag) for candidate in chosen]
        self._remember_blobs(images, _oci_blob_name)
        return images


class DockerArchiveSource(_StoreSource):
    """``docker-archive:FILE[:TAG]``: ``docker save`` output, OCI-in-tar or legacy."""

    async def load(self) -> list[Image]:
        """The selected image (or every tagged image) of the archive, checked."""
        path = anyio.Path(self.ref.path)
        if not await path.exists():
            raise SourceError(f"{self.where}: no such file")
        if await path.is_dir():
            raise SourceError(f"{self.where}: is a directory, not a tar archive")
        if self._store is None:
            self._store = await _TarStore.open(self.ref.path, where=self.where)
        store = self._store
        if await store.size(OCI_INDEX_FILE) is not None:
            oci = _OciLayoutReader(store, where=self.where)
            chosen = _select(await oci.candidates(), self.ref.tag, where=self.where)
            images = [await oci.image(candidate.target, candidate.tag) for candidate in chosen]
            self._remember_blobs(images, _oci_blob_name)
            return images
        if await store.size(DOCKER_MANIFEST_FILE) is None:
            raise SourceError(
                f"{self.where}: neither {OCI_INDEX_FILE} nor {DOCKER_MANIFEST_FILE} found, "
                "so not a docker save archive"
            )
        legacy = _LegacyArchiveReader(store, where=self.where)
        picked = _select(await legacy.candidates(), self.ref.tag, where=self.where)
        images = [await legacy.image(candidate.target, candidate.tag) for candidate in picked]
        self._remember_blobs(images, legacy.blob_names.__getitem__)
        return images
