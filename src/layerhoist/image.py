"""The image model: descriptors, manifests (single or index) and images, all immutable.

A :class:`Manifest` keeps the exact bytes it was parsed from, because a registry identifies a
manifest by the sha256 of those bytes: re-serializing would change the digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from layerhoist.errors import ManifestError, UsageError

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
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"

#: Layer media types that registries must not be sent (Docker's foreign layers, OCI's
#: deprecated non-distributable ones): their bytes live at the descriptor's ``urls``.
NONDISTRIBUTABLE_TYPES = frozenset(
    {
        DOCKER_LAYER_FOREIGN,
        "application/vnd.docker.image.rootfs.foreign.diff.tar",
        OCI_LAYER_NONDISTRIBUTABLE,
        OCI_LAYER_NONDISTRIBUTABLE + "+gzip",
        OCI_LAYER_NONDISTRIBUTABLE + "+zstd",
    }
)

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
    ``platform`` object: ``os``, ``architecture``, ``variant``, ``os.version``. ``urls`` are
    where a non-distributable layer's bytes are served instead of the registry.
    """

    media_type: str
    digest: str
    size: int
    # Left out of the hash: a mapping is not hashable, and digest already identifies the blob.
    platform: Mapping[str, str] | None = field(default=None, hash=False)
    urls: tuple[str, ...] = field(default=(), hash=False)

    @property
    def distributable(self) -> bool:
        """Whether registries may hold this blob: not when it has ``urls`` or a foreign type.

        Docker does not upload such layers (they are fetched from ``urls``); the manifest
        still references them, so its bytes and digest stay as they are.
        """
        return not self.urls and self.media_type not in NONDISTRIBUTABLE_TYPES

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

    #: The digest of the source's index when ``--platform`` cut this image's index from it
    #: (the new index's bytes, and so its digest, differ); ``None`` otherwise.
    source_digest: str | None = None

    def blobs(self) -> tuple[Descriptor, ...]:
        """Config and layers to copy, of the manifest or of every child, once per digest.

        Non-distributable layers are left out (:attr:`Descriptor.distributable`).
        """
        return tuple(d for d in self._all_blobs() if d.distributable)

    def nondistributable_blobs(self) -> tuple[Descriptor, ...]:
        """The layers referenced but not copied, because registries must not hold them."""
        return tuple(d for d in self._all_blobs() if not d.distributable)

    def _all_blobs(self) -> tuple[Descriptor, ...]:
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
    return Descriptor(media_type, digest, size, platform, _urls(value.get("urls"), where))


def _urls(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(url, str) for url in value):
        raise ManifestError(f"{where} has urls that are not a list of strings")
    return tuple(value)


def _platform(value: object, where: str) -> Mapping[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ManifestError(f"{where} has a platform that is not an object")
    fields = {key: item for key, item in value.items() if isinstance(item, str)}
    return MappingProxyType(fields)


@dataclass(frozen=True)
class Platform:
    """A platform as ``--platform`` names it: ``OS/ARCH[/VARIANT]``.

    Without a variant it matches every variant of ``OS/ARCH`` (``linux/arm`` takes ``v7``), as
    ``docker pull --platform`` does.
    """

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``OS/ARCH[/VARIANT]``; :class:`ValueError` naming the expected form."""
        parts = text.split("/")
        if not 2 <= len(parts) <= 3 or not all(parts):
            raise ValueError(f"platform {text!r} is not OS/ARCH[/VARIANT] (e.g. linux/arm64)")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    def matches(self, platform: Mapping[str, str] | None) -> bool:
        """Whether a descriptor's (or an image config's) ``platform`` fields are this one."""
        if platform is None:
            return False
        if (platform.get("os"), platform.get("architecture")) != (self.os, self.architecture):
            return False
        return self.variant is None or platform.get("variant") == self.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p is not None)


def platform_name(platform: Mapping[str, str]) -> str:
    """``os/architecture[/variant]`` of a ``platform`` object (``?`` for what is missing)."""
    return Descriptor("", "", 0, platform).platform_name or "?"


def select_platforms(image: Image, platforms: Sequence[Platform]) -> Image:
    """``image`` with only the children of its index that run on one of ``platforms``.

    The children's bytes are kept; a new index lists them (every other field of the source's
    index kept), so its digest differs from the source's, which :attr:`Image.source_digest`
    records. When every child is chosen the image is returned as it is. A platform that no
    child has is a :class:`~layerhoist.errors.UsageError` listing the platforms there are.
    Single images are checked with :func:`check_image_platform` instead.
    """
    if not image.manifest.is_index:
        raise ValueError("select_platforms needs an index; see check_image_platform")
    entries = image.manifest.manifests
    available = [entry.platform_name or short_digest(entry.digest) for entry in entries]
    for wanted in platforms:
        if not any(wanted.matches(entry.platform) for entry in entries):
            raise UsageError(
                f"{image.name}: no platform {wanted} in its index; it has "
                f"{', '.join(available) or 'none'}"
            )
    keep = [any(w.matches(entry.platform) for w in platforms) for entry in entries]
    if all(keep):
        return image
    document = json.loads(image.manifest.raw)
    entries_json = document["manifests"]
    document["manifests"] = [item for item, kept in zip(entries_json, keep, strict=True) if kept]
    raw = json.dumps(document, indent=2).encode()
    manifest = parse_manifest(raw, media_type=image.manifest.media_type)
    children = tuple(child for child, kept in zip(image.children, keep, strict=True) if kept)
    return Image(image.tag, manifest, children, source_digest=image.manifest.digest)


def check_image_platform(image: Image, config: bytes, platforms: Sequence[Platform]) -> None:
    """Raise :class:`~layerhoist.errors.UsageError` unless the single ``image`` (whose config
    blob is ``config``) runs on one of ``platforms``, naming the platform it has."""
    try:
        document = json.loads(config)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{image.name}: its config is not valid JSON: {exc}") from exc
    fields = document if isinstance(document, dict) else {}
    platform = {k: v for k, v in fields.items() if isinstance(v, str)}
    if not any(wanted.matches(platform) for wanted in platforms):
        wanted_names = ", ".join(str(p) for p in platforms)
        raise UsageError(
            f"{image.name} is a single {platform_name(platform)} image, "
            f"not {wanted_names} (--platform)"
        )
