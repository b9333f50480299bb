"""What PutImage needs to know about a manifest: its kind and what it references.

Four kinds are accepted: Docker image manifest v2 schema 2, Docker manifest list,
OCI image manifest and OCI image index. The manifest's bytes are never rewritten;
this module only reads them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from layerhoist.registry.errors import Code, EcrError
from layerhoist.registry.validation import is_digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_MANIFESTS = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEXES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
#: Layers the registry is not expected to hold: their bytes live at ``urls`` elsewhere.
FOREIGN_LAYERS = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


@dataclass(frozen=True, kw_only=True)
class ManifestInfo:
    """The parts of a manifest the registry checks and reports."""

    media_type: str
    #: The config's media type of an image manifest (``artifactMediaType`` in DescribeImages).
    artifact_media_type: str | None
    #: Blobs the repository must hold: config and distributable layers.
    blobs: tuple[str, ...]
    #: Manifests an index references (images the repository must hold).
    children: tuple[str, ...]
    #: Bytes of the image as ECR counts them: config and layers (or children manifests).
    size: int


def _bad(problem: str) -> EcrError:
    return EcrError(Code.INVALID_PARAMETER, f"Invalid parameter at 'imageManifest': {problem}")


def _descriptor(value: object, where: str) -> tuple[str, int, Mapping[str, object]]:
    if not isinstance(value, Mapping):
        raise _bad(f"{where} must be an object")
    digest = value.get("digest")
    if not isinstance(digest, str) or not is_digest(digest):
        raise _bad(f"{where} has no valid sha256 digest")
    size = value.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _bad(f"{where} has no valid size")
    return digest, size, value


def _kind(document: Mapping[str, object], declared: str | None) -> str:
    inner = document.get("mediaType")
    if inner is not None and not isinstance(inner, str):
        raise _bad("mediaType must be a string")
    if declared is not None and inner is not None and declared != inner:
        raise EcrError(
            Code.INVALID_PARAMETER,
            f"Invalid parameter at 'imageManifestMediaType': '{declared}' does not match "
            f"the manifest's mediaType '{inner}'",
        )
    kind = declared or inner
    if kind is None:
        # The OCI specs make mediaType optional; the shape tells the kind apart.
        kind = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    if kind not in IMAGE_MANIFESTS | INDEXES:
        raise EcrError(
            Code.INVALID_PARAMETER,
            f"Invalid parameter at 'imageManifestMediaType': unsupported media type '{kind}'",
        )
    return kind


def inspect_manifest(raw: bytes, declared_media_type: str | None) -> ManifestInfo:
    """Parse ``raw`` enough to check it; ``InvalidParameterException`` when malformed."""
    try:
        document = json.loads(raw)
    except ValueError:
        raise _bad("not valid JSON") from None
    if not isinstance(document, Mapping):
        raise _bad("must be a JSON object")
    kind = _kind(document, declared_media_type)
    if kind in INDEXES:
        entries = document.get("manifests")
        if not isinstance(entries, list):
            raise _bad("an index needs a 'manifests' list")
        children = [_descriptor(entry, "manifests[]") for entry in entries]
        return ManifestInfo(
            media_type=kind,
            artifact_media_type=None,
            blobs=(),
            children=tuple(dict.fromkeys(digest for digest, _, _ in children)),
            size=sum(size for _, size, _ in children),
        )
    config_digest, config_size, config = _descriptor(document.get("config"), "config")
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise _bad("an image manifest needs a 'layers' list")
    blobs = [config_digest]
    size = config_size
    for layer in layers:
        digest, layer_size, descriptor = _descriptor(layer, "layers[]")
        size += layer_size
        if descriptor.get("mediaType") not in FOREIGN_LAYERS:
            blobs.append(digest)
    config_type = config.get("mediaType")
    return ManifestInfo(
        media_type=kind,
        artifact_media_type=config_type if isinstance(config_type, str) else None,
        blobs=tuple(dict.fromkeys(blobs)),
        children=(),
        size=size,
    )
