"""``oci:DIR[:TAG]``: an OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/``).

Tags are the ``org.opencontainers.image.ref.name`` annotations of ``index.json``; an entry may be
a manifest or a multi-arch index. :class:`OciLayoutReader` also reads the OCI layout that
Docker 25+ and containerd write inside a ``docker save`` archive.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import anyio

from layerhoist.errors import BlobMissingError, CorruptBlobError, ManifestError, SourceError
from layerhoist.image import (
    MANIFEST_TYPES,
    SHA256_PREFIX,
    Descriptor,
    Image,
    Manifest,
    parse_manifest,
    sha256_digest,
    short_digest,
)
from layerhoist.refs import split_name_tag
from layerhoist.sources._select import Candidate, familiar, select_images
from layerhoist.sources._stores import (
    DirectoryStore,
    Store,
    StoreSource,
    check_size,
    load_json,
)

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
#: Set by containerd and Docker 25+ on index.json entries: the full image name with its tag.
IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
OCI_LAYOUT_FILE = "oci-layout"
OCI_INDEX_FILE = "index.json"
SUPPORTED_LAYOUT_VERSION_PREFIX = "1."


def oci_blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix(SHA256_PREFIX)


def _label(tag: str | None, digest: str) -> str:
    return f"image {tag}" if tag is not None else f"image {short_digest(digest)}"


class OciLayoutReader:
    """Reads the images of an OCI image layout held by a store."""

    def __init__(self, store: Store, *, where: str) -> None:
        self._store = store
        self._where = where
        self._manifests: dict[str, Manifest] = {}

    async def candidates(self) -> list[Candidate[Descriptor]]:
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
        document = load_json(raw, where=where)
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
        await _check_blobs(self._store, image, oci_blob_name, where=f"{self._where}: {label}")
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
        name = oci_blob_name(digest)
        size = await self._store.size(name)
        if size is None:
            location = self._store.describe(name)
            raise BlobMissingError(
                f"{where}: manifest {short_digest(digest)} is missing ({location})"
            )
        check_size(size, descriptor, where=where, what="manifest")
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


def _oci_candidate(descriptor: Descriptor, annotations: object) -> Candidate[Descriptor]:
    values = annotations if isinstance(annotations, dict) else {}
    ref_name = values.get(REF_NAME_ANNOTATION)
    image_name = values.get(IMAGE_NAME_ANNOTATION)
    names: set[str] = set()
    tag: str | None = None
    if isinstance(ref_name, str) and ref_name:
        repository, tag = split_name_tag(ref_name)
        if repository is not None:
            names.add(familiar(ref_name))
    if isinstance(image_name, str):
        repository, image_tag = split_name_tag(image_name)
        if repository is not None:
            names.add(familiar(image_name))
            tag = tag if tag is not None else image_tag
    return Candidate(descriptor, tag, frozenset(names), descriptor.digest)


async def _check_blobs(
    store: Store, image: Image, blob_name: Callable[[str], str], *, where: str
) -> None:
    for descriptor in image.blobs():
        name = blob_name(descriptor.digest)
        size = await store.size(name)
        if size is None:
            raise BlobMissingError(
                f"{where}: blob {short_digest(descriptor.digest)} is missing "
                f"({store.describe(name)})"
            )
        check_size(size, descriptor, where=where, what="blob")


class OciLayoutSource(StoreSource):
    """``oci:DIR[:TAG]``: an OCI image layout directory."""

    async def load(self) -> list[Image]:
        """The tagged image (or every tagged image) of the layout, checked."""
        root = anyio.Path(self.ref.file_path)
        if not await root.exists():
            raise SourceError(f"{self.where}: no such directory")
        if not await root.is_dir():
            raise SourceError(f"{self.where}: not a directory")
        store = DirectoryStore(self.ref.file_path)
        if await store.size(OCI_INDEX_FILE) is None:
            raise SourceError(f"{self.where}: no {OCI_INDEX_FILE}, so not an OCI image layout")
        self._store = store
        reader = OciLayoutReader(store, where=self.where)
        chosen = select_images(await reader.candidates(), self.ref.tag, where=self.where)
        images = [await reader.image(candidate.target, candidate.tag) for candidate in chosen]
        self._remember_blobs(images, oci_blob_name)
        return images
