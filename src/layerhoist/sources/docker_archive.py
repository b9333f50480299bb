"""``docker-archive:FILE[:TAG]``: ``docker save`` output, read in place (never unpacked).

Docker 25+ and containerd write an OCI layout inside the tar, which is preferred when present;
older Docker and skopeo write the legacy form (``manifest.json`` with ``Config``/``RepoTags``/
``Layers``), for which a Docker schema 2 manifest of the uncompressed layers is synthesized.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import anyio

from layerhoist.errors import BlobMissingError, ManifestError, SourceError
from layerhoist.image import (
    DIGEST_PATTERN,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    SCHEMA_VERSION,
    Image,
    parse_manifest,
    sha256_digest,
)
from layerhoist.refs import split_name_tag
from layerhoist.sources._select import Candidate, familiar, select_images
from layerhoist.sources._stores import Store, StoreSource, TarStore, load_json
from layerhoist.sources.oci_layout import OCI_INDEX_FILE, OciLayoutReader, oci_blob_name

DOCKER_MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class _LegacyEntry:
    config: str
    layers: tuple[str, ...]
    repo_tags: tuple[str, ...]


class _LegacyArchiveReader:
    """Reads the images of a legacy ``docker save`` archive (``manifest.json`` form)."""

    def __init__(self, store: Store, *, where: str) -> None:
        self._store = store
        self._where = where
        #: Which member holds each blob of the images loaded so far.
        self.blob_names: dict[str, str] = {}

    async def candidates(self) -> list[Candidate[_LegacyEntry]]:
        """One candidate per ``RepoTags`` entry (one untagged candidate for an image without)."""
        where = self._store.describe(DOCKER_MANIFEST_FILE)
        document = load_json(await self._store.read(DOCKER_MANIFEST_FILE), where=where)
        if not isinstance(document, list):
            raise ManifestError(f"{where} is not a JSON list")
        candidates = []
        for position, item in enumerate(document):
            entry = _legacy_entry(item, where=f"{where} entry {position}")
            if not entry.repo_tags:
                candidates.append(Candidate(entry, None, frozenset(), entry.config))
            for repo_tag in entry.repo_tags:
                _, tag = split_name_tag(repo_tag)
                candidates.append(
                    Candidate(entry, tag, frozenset({familiar(repo_tag)}), entry.config)
                )
        return candidates

    async def image(self, entry: _LegacyEntry, tag: str | None) -> Image:
        """Synthesize the Docker schema 2 manifest of ``entry`` and check its layers exist."""
        where = f"{self._where}: image {tag if tag is not None else entry.config}"
        config_raw = await self._read(entry.config, where=where)
        config = load_json(config_raw, where=f"{where}: config {entry.config}")
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


class DockerArchiveSource(StoreSource):
    """``docker-archive:FILE[:TAG]``: ``docker save`` output, OCI-in-tar or legacy."""

    async def load(self) -> list[Image]:
        """The selected image (or every tagged image) of the archive, checked."""
        path = anyio.Path(self.ref.file_path)
        if not await path.exists():
            raise SourceError(f"{self.where}: no such file")
        if await path.is_dir():
            raise SourceError(f"{self.where}: is a directory, not a tar archive")
        if self._store is None:
            self._store = await TarStore.open(self.ref.file_path, where=self.where)
        store = self._store
        if await store.size(OCI_INDEX_FILE) is not None:
            oci = OciLayoutReader(store, where=self.where)
            chosen = select_images(await oci.candidates(), self.ref.tag, where=self.where)
            images = [await oci.image(candidate.target, candidate.tag) for candidate in chosen]
            self._remember_blobs(images, oci_blob_name)
            return images
        if await store.size(DOCKER_MANIFEST_FILE) is None:
            raise SourceError(
                f"{self.where}: neither {OCI_INDEX_FILE} nor {DOCKER_MANIFEST_FILE} found, "
                "so not a docker save archive"
            )
        legacy = _LegacyArchiveReader(store, where=self.where)
        picked = select_images(await legacy.candidates(), self.ref.tag, where=self.where)
        images = [await legacy.image(candidate.target, candidate.tag) for candidate in picked]
        self._remember_blobs(images, legacy.blob_names.__getitem__)
        return images
