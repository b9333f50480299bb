"""The push side of the distribution API, one small function per protocol step.

::

    blob_exists     HEAD /v2/<name>/blobs/<digest>                      200 there, 404 not
    open_upload     POST /v2/<name>/blobs/uploads/[?mount=D&from=R]     202 session, 201 mounted
    upload_status   GET <location>                                      204 Range: 0-N
    patch_chunk     PATCH <location>  Content-Range: first-last         202 (201 on ECR)
    put_blob        PUT <location>?digest=D  [body: bytes or a stream]  201
    put_manifest    PUT /v2/<name>/manifests/<tag|digest>               201

Each upload step answers with the ``Location`` of the next one, absolute or relative (resolved
against the request's URL); its query (distribution's opaque ``_state``) is kept byte for byte.
The quirks of a step are handled in its function, each named by the registry that shows it.
Retries are not made here: the destination runs each step under its error table.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from yarl import URL

from layerhoist.errors import DestinationError
from layerhoist.image import SHA256_PREFIX, Manifest, sha256_digest, short_digest
from layerhoist.oci.client import RegistryClient
from layerhoist.oci.errors import ErrorDetail, RegistryResponseError
from layerhoist.oci.manifest import DIGEST_HEADER, manifest_path

#: The media type of blob bytes sent in a PATCH or a PUT.
OCTET_STREAM = "application/octet-stream"
#: Answers of a blob HEAD: there, or not.
BLOB_PRESENT = 200
BLOB_ABSENT = 404
#: A POST that mounted the blob (201) or opened an upload session (202).
CREATED = 201
ACCEPTED = 202
#: The answer of an upload session's status GET.
NO_CONTENT = 204


def push_scope(repository: str) -> str:
    """The token scope of pushing to ``repository`` (reading it too, for HEADs)."""
    return f"repository:{repository}:pull,push"


def mount_scope(repository: str, source: str) -> str:
    """The scopes of mounting a blob of ``source`` into ``repository`` (space separated)."""
    return f"{push_scope(repository)} repository:{source}:pull"


def resolve_location(request_url: URL, location: str | None, *, where: str) -> URL:
    """The next URL of an upload: ``location`` resolved against ``request_url``.

    ``location`` stays encoded as the registry wrote it, so an opaque ``_state`` survives.
    """
    if not location:
        # Classified as a session to start over: a registry may lose one.
        raise RegistryResponseError(
            what=f"{where}: the registry sent no Location for the upload",
            status=ACCEPTED,
            errors=(ErrorDetail("BLOB_UPLOAD_INVALID", "no Location header"),),
        )
    target = URL(location, encoded=True)
    return target if target.is_absolute() else request_url.join(target)


def with_digest(location: URL, digest: str) -> URL:
    """``location`` with ``digest=`` added to its query, which is kept as it was."""
    separator = "&" if location.raw_query_string else "?"
    return URL(f"{location}{separator}digest={quote(digest, safe='')}", encoded=True)


def _check_digest_header(response: aiohttp.ClientResponse, digest: str, *, where: str) -> None:
    announced = response.headers.get(DIGEST_HEADER)
    if announced is not None and announced.startswith(SHA256_PREFIX) and announced != digest:
        raise DestinationError(
            f"{where}: the registry stored {short_digest(announced)}, not {short_digest(digest)}",
            code="DIGEST_INVALID",
        )


async def blob_exists(client: RegistryClient, repository: str, digest: str, *, where: str) -> bool:
    """Whether ``repository`` holds blob ``digest`` (a HEAD, which no pull limit counts)."""
    async with await client.send(
        "HEAD",
        f"/v2/{repository}/blobs/{digest}",
        scope=push_scope(repository),
        what=where,
        expect=(BLOB_PRESENT, BLOB_ABSENT),
    ) as response:
        return response.status == BLOB_PRESENT


@dataclass(frozen=True)
class Opened:
    """What a POST to ``blobs/uploads/`` gave: a session's ``location``, or a mounted blob."""

    location: URL | None
    mounted: bool


async def open_upload(
    client: RegistryClient,
    repository: str,
    *,
    where: str,
    mount: tuple[str, str] | None = None,
) -> Opened:
    """Open an upload session; with ``mount=(digest, source_repository)`` try a mount first.

    A registry that will not mount (no such blob there, mounting off, ECR's uncommitted
    blob) opens a session instead (202), which the caller uses for a normal upload.
    """
    path = f"/v2/{repository}/blobs/uploads/"
    scope = push_scope(repository)
    if mount is not None:
        digest, source = mount
        path += f"?mount={quote(digest, safe='')}&from={quote(source, safe='/')}"
        scope = mount_scope(repository, source)
    async with await client.send(
        "POST",
        URL(path, encoded=True),
        scope=scope,
        what=where,
        headers={"Content-Length": "0"},
        expect=(CREATED, ACCEPTED),
    ) as response:
        if response.status == CREATED and mount is not None:
            _check_digest_header(response, mount[0], where=where)
            return Opened(None, mounted=True)
        location = response.headers.get("Location")
        return Opened(resolve_location(response.url, location, where=where), mounted=False)


@dataclass(frozen=True)
class UploadStatus:
    """Where an upload session stands: its next ``location`` and the bytes it holds."""

    location: URL
    #: Bytes the registry holds; ``None`` when its ``Range`` is missing or unreadable.
    received: int | None


async def upload_status(
    client: RegistryClient, repository: str, location: URL, *, where: str
) -> UploadStatus:
    """GET an upload session (a journaled one, to resume it): 204 with ``Range: 0-N``.

    distribution writes ``0-0`` for an empty session as for a one-byte one: it is read as
    empty, the side where a wrong guess costs a refused chunk rather than a lost byte.
    """
    async with await client.send(
        "GET", location, scope=push_scope(repository), what=where, expect=(NO_CONTENT,)
    ) as response:
        end = parse_range_end(response.headers.get("Range"))
        next_location = response.headers.get("Location")
        return UploadStatus(
            location=(
                resolve_location(response.url, next_location, where=where)
                if next_location
                else location
            ),
            received=None if end is None else (end + 1 if end > 0 else 0),
        )


@dataclass(frozen=True)
class Patched:
    """A PATCH's answer: the next ``location``, and the end of ``Range`` when it sent one."""

    location: URL
    #: Inclusive offset of the last byte the registry says it holds; ``None``: no ``Range``.
    range_end: int | None
    #: The registry answered 201 rather than 202 (ECR does).
    created: bool


def parse_range_end(header: str | None) -> int | None:
    """The end of a ``Range: 0-N`` (or ``bytes=0-N``) upload answer; ``None`` if unusable."""
    if not header:
        return None
    _, _, end = header.removeprefix("bytes=").partition("-")
    return int(end) if end.isdigit() else None


async def patch_chunk(
    client: RegistryClient,
    repository: str,
    location: URL,
    *,
    first_byte: int,
    data: bytes,
    where: str,
) -> Patched:
    """Send one chunk of an upload at ``first_byte`` (``Content-Range`` is inclusive)."""
    headers = {
        "Content-Type": OCTET_STREAM,
        "Content-Length": str(len(data)),
        "Content-Range": f"{first_byte}-{first_byte + len(data) - 1}",
    }
    async with await client.send(
        "PATCH",
        location,
        scope=push_scope(repository),
        what=where,
        headers=headers,
        data=data,
        # 202 is the spec's answer; ECR answers 201 (regclient#81, openai/tart#273).
        expect=(ACCEPTED, CREATED),
    ) as response:
        next_location = response.headers.get("Location")
        return Patched(
            location=(
                resolve_location(response.url, next_location, where=where)
                if next_location
                else location
            ),
            range_end=parse_range_end(response.headers.get("Range")),
            created=response.status == CREATED,
        )


async def put_blob(
    client: RegistryClient,
    repository: str,
    location: URL,
    *,
    digest: str,
    data: bytes | AsyncIterable[bytes | memoryview],
    where: str,
) -> None:
    """Close an upload as ``digest``: ``data`` is its last bytes (``b""`` after PATCHes) or
    the whole blob streamed; the registry's ``Docker-Content-Digest`` must agree.
    """
    headers = {"Content-Type": OCTET_STREAM}
    if isinstance(data, bytes):
        headers["Content-Length"] = str(len(data))
    async with await client.send(
        "PUT",
        with_digest(location, digest),
        scope=push_scope(repository),
        what=where,
        headers=headers,
        data=data,
        expect=(CREATED,),
    ) as response:
        _check_digest_header(response, digest, where=where)


async def put_manifest(
    client: RegistryClient, repository: str, manifest: Manifest, *, reference: str, where: str
) -> None:
    """PUT ``manifest``'s bytes as they are under ``reference`` (a tag, or its digest)."""
    actual = sha256_digest(manifest.raw)
    if actual != manifest.digest:
        raise DestinationError(
            f"{where}: manifest {short_digest(manifest.digest)}: its bytes hash to "
            f"{short_digest(actual)}"
        )
    async with await client.send(
        "PUT",
        manifest_path(repository, reference),
        scope=push_scope(repository),
        what=where,
        headers={"Content-Type": manifest.media_type},
        data=manifest.raw,
        expect=(CREATED,),
    ) as response:
        _check_digest_header(response, manifest.digest, where=where)
