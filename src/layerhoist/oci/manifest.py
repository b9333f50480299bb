"""Manifests over the distribution API: HEAD and GET by tag or digest, verified.

Requests ``Accept`` OCI and Docker schema 2 manifests and indexes only, so a registry that
could convert (distribution converts nothing, some serve schema 1 to old clients) hands over
the document as stored. The answer's media type decides how it is parsed: Docker schema 1
and anything unknown are refused with one line. A manifest larger than
:attr:`~layerhoist.oci.client.ClientSettings.max_manifest_size` is refused before it is read
whole. The sha256 of the bytes must equal the requested digest and the registry's
``Docker-Content-Digest``, whichever are known.
"""

from __future__ import annotations

import hashlib

import aiohttp

from layerhoist.errors import CorruptBlobError, ManifestError
from layerhoist.image import (
    DIGEST_PATTERN,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    SHA256_PREFIX,
    Descriptor,
    Manifest,
    parse_manifest,
    short_digest,
)
from layerhoist.oci.client import RegistryClient, pull_scope

#: Media types a manifest request accepts, preferred first.
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST))
DIGEST_HEADER = "Docker-Content-Digest"


def is_digest(reference: str) -> bool:
    """Whether a manifest reference is a digest (rather than a tag)."""
    return DIGEST_PATTERN.fullmatch(reference) is not None


def manifest_path(repository: str, reference: str) -> str:
    """The API path of manifest ``reference`` (tag or digest) of ``repository``."""
    return f"/v2/{repository}/manifests/{reference}"


def check_media_type(content_type: str | None, *, where: str) -> str:
    """The media type of a manifest answer; :class:`ManifestError` unless one we can copy."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in DOCKER_SCHEMA1_TYPES:
        raise ManifestError(
            f"{where} is a Docker schema 1 manifest, which is not supported "
            "(rebuild or re-push the image with a current client)"
        )
    if media_type not in MANIFEST_TYPES:
        raise ManifestError(f"{where} has unsupported media type {media_type or 'none'!r}")
    return media_type


async def head_manifest(
    client: RegistryClient, repository: str, reference: str, *, where: str
) -> Descriptor:
    """The descriptor of a manifest, from a HEAD request (free of Docker Hub's pull limit).

    The digest is the registry's ``Docker-Content-Digest`` (or ``reference`` itself when it
    is a digest); :class:`ManifestError` when neither is known.
    """
    async with await _send(client, "HEAD", repository, reference, where=where) as response:
        media_type = check_media_type(response.content_type, where=where)
        digest = response.headers.get(DIGEST_HEADER) or (
            reference if is_digest(reference) else None
        )
        size = response.content_length
    if digest is None or not is_digest(digest):
        raise ManifestError(f"{where}: the registry sent no usable {DIGEST_HEADER}")
    if size is None:
        raise ManifestError(f"{where}: the registry sent no Content-Length")
    return Descriptor(media_type, digest, size)


async def _send(
    client: RegistryClient, method: str, repository: str, reference: str, *, where: str
) -> aiohttp.ClientResponse:
    return await client.send(
        method,
        manifest_path(repository, reference),
        scope=pull_scope(repository),
        what=where,
        headers={"Accept": MANIFEST_ACCEPT},
    )


async def get_manifest(
    client: RegistryClient, repository: str, reference: str, *, where: str
) -> Manifest:
    """GET and verify manifest ``reference`` (tag or digest) of ``repository``."""
    limit = client.settings.max_manifest_size
    async with await _send(client, "GET", repository, reference, where=where) as response:
        media_type = check_media_type(response.content_type, where=where)
        announced = response.content_length
        if announced is not None and announced > limit:
            raise ManifestError(f"{where} is {announced} bytes, more than the {limit} allowed")
        raw = await response.content.read(limit + 1)
        if len(raw) > limit:
            raise ManifestError(f"{where} is more than the {limit} bytes allowed")
        header_digest = response.headers.get(DIGEST_HEADER)
    digest = SHA256_PREFIX + hashlib.sha256(raw).hexdigest()
    for expected in (reference if is_digest(reference) else None, header_digest):
        if expected is not None and expected.startswith(SHA256_PREFIX) and expected != digest:
            raise CorruptBlobError(
                f"{where}: the manifest's bytes hash to {short_digest(digest)}, "
                f"not {short_digest(expected)}",
                digest=expected,
            )
    try:
        return parse_manifest(raw, media_type=media_type)
    except ManifestError as exc:
        raise ManifestError(f"{where}: {exc}") from exc
