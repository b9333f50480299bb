"""The image model: descriptors, manifests (single or index) and images, all immutable.

A :class:`Manifest` keeps the exact bytes it was parsed from, because a registry identifies a
manifest by the sha256 of those bytes: re-serializing would change the digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from layerhoist.errors import ManifestError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

#: Media types of a single-image manifest.
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
#: Media types of a manifest that lists other manifests.
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_MANIFEST_TYPES | INDEX_TYPES
#: Docker's legacy schema 1 types: refused with a clear message, ECR cannot take them by layer.
DOCKER_SCHEMA1_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)

SHA256_PREFIX = "sha256:"
DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")
#: The only manifest schema version of OCI and Docker schema 2.
SCHEMA_VERSION = 2
#: Characters of the hex digest shown in short names (as ``docker images`` does).
SHORT_DIGEST_HEX = 12


def sha256_digest(data: bytes) -> str:
    """``sha256:`` + the lowercase hex sha256 of ``data``."""
    return SHA256_PREFIX + hashlib.sha256(data).hexdigest()


def short_digest(digest: str) -> str:
    """The digest cut to ``sha256:`` + 12 hex characters, for messages."""
    return digest[: len(SHA256_PREFIX) + SHORT_DIGEST_HEX]


@dataclass(frozen=True)
class Descriptor:
    """A reference to a blob or manifest: its media type, digest and size.

    ``platform`` (for an index's children) holds the string fields of the descriptor's
    ``platform`` object: ``os``, ``architecture``, ``variant``, ``os.version``.
    """

    media_type: str
    digest: str
    size: int
    # Left out of the hash: a mapping is not hashable, and digest already identifies the blob.
    platform: Mapping[str, str] | None = field(default=None, hash=False)

    @property
    def platform_name(self) -> str | None:
        """``os/architecture[/variant]``, or ``None`` without a platform."""
        if self.platform is None:
            return None
        parts = [self.platform.get("os", "?"), self.platform.get("architecture", "?")]
        if "variant" in self.platform:
            parts.append(self.platform["variant"])
        return "/".join(parts)


@dataclass(frozen=True)
class Manifest:
    """A parsed image manifest or index, with the exact bytes it came from.

    ``config`` and ``layers`` are set for a single image; ``manifests`` lists the children of an
    index (or Docker manifest list).
    """

    raw: bytes
    media_type: str
    digest: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]

    @property
    def is_index(self) -> bool:
        """Whether this manifest lists other manifests instead of layers."""
        return self.media_type in INDEX_TYPES

    @property
    def size(self) -> int:
        """Length of the manifest bytes."""
        return len(self.raw)


@dataclass(frozen=True)
class Image:
    """One image to push: a manifest (or index with its children) and the tag it goes under.

    ``tag`` is ``None`` for an untagged image (the destination's tag then applies).
    ``children`` are the child manifests of an index, in index order; empty for a single image.
    """

    tag: str | None
    manifest: Manifest
    children: tuple[Manifest, ...] = ()

    def blobs(self) -> tuple[Descriptor, ...]:
        """Config and layers of the manifest or of every child, once per digest, in order."""
        seen: dict[str, Descriptor] = {}
        for manifest in self.children if self.manifest.is_index else (self.manifest,):
            candidates = (manifest.config, *manifest.layers) if manifest.config else manifest.layers
            for descriptor in candidates:
                seen.setdefault(descriptor.digest, descriptor)
        return tuple(seen.values())

    def manifests_in_push_order(self) -> tuple[Manifest, ...]:
        """Children first (a registry refuses an index whose children are missing), then the top."""
        return (*self.children, self.manifest)

    @property
    def name(self) -> str:
        """The tag, or the short manifest digest of an untagged image."""
        return self.tag if self.tag is not None else short_digest(self.manifest.digest)

    @property
    def description(self) -> str:
        """A short phrase for messages: name, digest and shape."""
        blobs = self.blobs()
        total = sum(blob.size for blob in blobs)
        shape = f"{len(blobs)} blobs, {total} bytes"
        if self.manifest.is_index:
            shape = f"{len(self.children)} platforms, {shape}"
        return f"{self.name} ({short_digest(self.manifest.digest)}, {shape})"


def parse_manifest(raw: bytes, *, media_type: str | None = None) -> Manifest:
    """Parse and validate manifest bytes.

    ``media_type`` is what the referring descriptor (or the registry) says the document is;
    without it the kind is read from the JSON's ``mediaType``, or from its shape (``manifests``
    or ``config``) for OCI documents that omit it. Raises :class:`ManifestError` naming the
    first problem found.
    """
    digest = sha256_digest(raw)
    where = f"manifest {short_digest(digest)}"
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{where} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ManifestError(f"{where} is not a JSON object")
    kind = _manifest_kind(document, media_type, where)
    if kind in INDEX_TYPES:
        children = _descriptor_list(document, "manifests", where, with_platform=True)
        return Manifest(raw, kind, digest, None, (), children)
    config_value = document.get("config")
    if config_value is None:
        raise ManifestError(f"{where} has no config descriptor")
    config = _descriptor(config_value, f"{where} config")
    layers = _descriptor_list(document, "layers", where, with_platform=False)
    return Manifest(raw, kind, digest, config, layers, ())


def _manifest_kind(document: Mapping[str, Any], media_type: str | None, where: str) -> str:
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestError(f"{where} has a non-string mediaType")
    if declared in DOCKER_SCHEMA1_TYPES or media_type in DOCKER_SCHEMA1_TYPES:
        raise ManifestError(f"{where} is a Docker schema 1 manifest, which is not supported")
    version = document.get("schemaVersion")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise ManifestError(f"{where} has schemaVersion {version!r}, expected {SCHEMA_VERSION}")
    if media_type is not None and declared is not None and declared != media_type:
        raise ManifestError(
            f"{where} declares mediaType {declared!r} but is referenced as {media_type!r}"
        )
    kind = declared or media_type
    if kind is None:
        if "manifests" in document:
            kind = OCI_INDEX
        elif "config" in document:
            kind = OCI_MANIFEST
        else:
            raise ManifestError(f"{where} has no mediaType, config or manifests")
    if kind not in MANIFEST_TYPES:
        raise ManifestError(f"{where} has unsupported mediaType {kind!r}")
    return kind


def _descriptor_list(
    document: Mapping[str, Any], key: str, where: str, *, with_platform: bool
) -> tuple[Descriptor, ...]:
    values = document.get(key)
    if not isinstance(values, list):
        raise ManifestError(f"{where} has no {key} list")
    return tuple(
        _descriptor(value, f"{where} {key}[{index}]", with_platform=with_platform)
        for index, value in enumerate(values)
    )


def _descriptor(value: object, where: str, *, with_platform: bool = False) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestError(f"{where} is not a descriptor object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestError(f"{where} has no mediaType")
    digest = value.get("digest")
    if not isinstance(digest, str) or DIGEST_PATTERN.fullmatch(digest) is None:
        raise ManifestError(f"{where} has invalid digest {digest!r} (expected sha256:<64 hex>)")
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{where} has invalid size {size!r}")
    platform = _platform(value.get("platform"), where) if with_platform else None
    return Descriptor(media_type, digest, size, platform)


def _platform(value: object, where: str) -> Mapping[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ManifestError(f"{where} has a platform that is not an object")
    fields = {key: item for key, item in value.items() if isinstance(item, str)}
    return MappingProxyType(fields)
