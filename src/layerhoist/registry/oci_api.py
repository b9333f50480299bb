"""The OCI distribution read side: what was pushed through the ECR API, served to pullers.

``/v2/``, manifests and blobs by tag or digest (GET and HEAD), ``tags/list`` and
``_catalog`` (the write side is ``oci_push.py``, auth ``oci_auth.py``). Manifests are
served with the exact bytes and media type they were pushed with, so their digests
match, and only to clients whose ``Accept`` takes that type (else MANIFEST_UNKNOWN, as
distribution answers). Blobs stream from disk, ``Range`` honoured also while paced.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path

import anyio
from aiohttp import web

from layerhoist.registry.catalog import Catalog
from layerhoist.registry.errors import OciCode, OciError
from layerhoist.registry.storage import BlobStore
from layerhoist.registry.validation import ANY_DIGEST_RE, is_digest, is_repository_name, is_tag

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
BLOB_MEDIA_TYPE = "application/octet-stream"
#: Bytes read from disk per write when a blob response is paced.
STREAM_CHUNK = 256 * 1024
#: Upper bound of ``n`` in ``tags/list`` and ``_catalog``.
MAX_LIST = 10_000
#: ``n`` of a listing: decimal ASCII digits, no longer than ``MAX_LIST`` needs.
_COUNT_RE = re.compile(rf"[0-9]{{1,{len(str(MAX_LIST))}}}")

#: Set on a request whose blob body the simulation cuts off halfway (a dropped connection).
DROP_KEY = web.RequestKey("layerhoist.drop", bool)

#: Paces the bytes written on the connection of one request.
Pacer = Callable[[web.BaseRequest], Callable[[int], Awaitable[None]] | None]


class OciApi:
    """Handlers of the ``/v2/`` routes over one catalog and blob store."""

    def __init__(self, *, catalog: Catalog, store: BlobStore, pacer: Pacer) -> None:
        self._catalog = catalog
        self._store = store
        self._pacer = pacer

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register the read side on ``router``."""
        router.add_get("/v2/", self.base)
        router.add_get("/v2/_catalog", self.catalog)
        router.add_get("/v2/{name:.+}/tags/list", self.tags_list)
        router.add_get("/v2/{name:.+}/manifests/{reference}", self.manifest)
        router.add_get("/v2/{name:.+}/blobs/{digest}", self.blob)

    async def base(self, request: web.Request) -> web.Response:
        """The API version check every client starts with."""
        return web.json_response({}, headers=API_VERSION_HEADER)

    async def catalog(self, request: web.Request) -> web.Response:
        """Every repository name (``n``/``last`` paging)."""
        names = [record.name for record in self._catalog.repositories()]
        return _listing(request, names, key="repositories", extra={})

    async def tags_list(self, request: web.Request) -> web.Response:
        """The tags of one repository (``n``/``last`` paging)."""
        name = self._repository(request)
        tags = [record.tag for record in self._catalog.tags(name)]
        return _listing(request, tags, key="tags", extra={"name": name})

    async def manifest(self, request: web.Request) -> web.Response:
        """A manifest by tag or digest, byte for byte, with its media type."""
        name = self._repository(request)
        reference = request.match_info["reference"]
        if is_digest(reference):
            digest: str | None = reference
        elif ANY_DIGEST_RE.fullmatch(reference):
            raise OciError(
                OciCode.DIGEST_INVALID, "only sha256 digests", status=HTTPStatus.BAD_REQUEST
            )
        elif is_tag(reference):
            digest = self._catalog.resolve_tag(name, reference)
        else:
            digest = None
        image = None if digest is None else self._catalog.image(name, digest)
        accepted = _accepted_types(request)
        if image is None or (accepted is not None and image.media_type not in accepted):
            # A client that does not accept the manifest's type is not handed it: distribution
            # answers MANIFEST_UNKNOWN, as if the manifest were not there.
            raise OciError(
                OciCode.MANIFEST_UNKNOWN,
                f"manifest unknown: {name}:{reference}"
                + ("" if image is None else f" (stored as {image.media_type}, not accepted)"),
                status=HTTPStatus.NOT_FOUND,
            )
        return web.Response(
            body=image.manifest,
            headers={
                **API_VERSION_HEADER,
                "Content-Type": image.media_type,
                "Docker-Content-Digest": image.digest,
                "ETag": f'"{image.digest}"',
            },
        )

    async def blob(self, request: web.Request) -> web.StreamResponse:
        """A blob by digest, streamed from disk (ranges honoured when not paced)."""
        name = self._repository(request)
        digest = request.match_info["digest"]
        if not is_digest(digest):
            raise OciError(
                OciCode.DIGEST_INVALID, f"invalid digest {digest!r}", status=HTTPStatus.BAD_REQUEST
            )
        size = self._catalog.blob_size(name, digest)
        path = self._store.blob_path(digest)
        if size is None or self._store.blob_size(digest) is None:
            raise OciError(
                OciCode.BLOB_UNKNOWN, f"blob unknown: {digest}", status=HTTPStatus.NOT_FOUND
            )
        headers = {
            **API_VERSION_HEADER,
            "Content-Type": BLOB_MEDIA_TYPE,
            "Docker-Content-Digest": digest,
            "ETag": f'"{digest}"',
        }
        consume = self._pacer(request)
        cut = request.get(DROP_KEY, False)
        if consume is None and not cut:
            return web.FileResponse(path, headers=headers)
        return await _paced_file(
            request, path, size=size, headers=headers, consume=consume or _unpaced, cut=cut
        )

    def _repository(self, request: web.Request) -> str:
        return repository_name(request, self._catalog)


def repository_name(request: web.Request, catalog: Catalog) -> str:
    """The request's repository: NAME_INVALID when malformed, NAME_UNKNOWN when missing."""
    name = request.match_info["name"]
    if not is_repository_name(name):
        raise OciError(
            OciCode.NAME_INVALID,
            f"invalid repository name {name!r}",
            status=HTTPStatus.BAD_REQUEST,
        )
    if catalog.repository(name) is None:
        raise OciError(
            OciCode.NAME_UNKNOWN,
            f"repository {name!r} not known to registry",
            status=HTTPStatus.NOT_FOUND,
        )
    return name


async def _paced_file(
    request: web.Request,
    path: Path,
    *,
    size: int,
    headers: dict[str, str],
    consume: Callable[[int], Awaitable[None]],
    cut: bool,
) -> web.StreamResponse:
    """Stream ``path`` (or the ``Range`` asked for), paced; ``cut`` aborts it halfway."""
    start, stop = _byte_range(request, size)
    response = web.StreamResponse(headers=headers)
    if (start, stop) != (0, size):
        response.set_status(HTTPStatus.PARTIAL_CONTENT)
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    response.headers["Accept-Ranges"] = "bytes"
    response.content_length = stop - start
    await response.prepare(request)
    if request.method != "HEAD":
        # A dropped connection sends half of what it promised, then goes away.
        end = start + (stop - start) // 2 if cut else stop
        async with await anyio.open_file(path, "rb") as file:
            await file.seek(start)
            position = start
            while position < end:
                chunk = await file.read(min(STREAM_CHUNK, end - position))
                if not chunk:
                    break
                await consume(len(chunk))
                await response.write(chunk)
                position += len(chunk)
        if cut:
            if request.transport is not None:
                request.transport.abort()
            return response
    await response.write_eof()
    return response


def _byte_range(request: web.Request, size: int) -> tuple[int, int]:
    """``[start, stop)`` of a ``Range: bytes=…`` request (the whole blob without one)."""
    unsatisfiable = OciError(
        OciCode.RANGE_INVALID,
        f"range not satisfiable for a blob of {size} bytes",
        status=HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
        headers={**API_VERSION_HEADER, "Content-Range": f"bytes */{size}"},
    )
    try:
        wanted = request.http_range
    except ValueError:
        raise unsatisfiable from None
    start, stop = wanted.start, wanted.stop
    if start is None and stop is None:
        return 0, size
    if start is None:
        start = 0
    if start < 0:
        start, stop = max(size + start, 0), None
    stop = size if stop is None else min(stop, size)
    if start >= stop:
        raise unsatisfiable
    return start, stop


async def _unpaced(nbytes: int) -> None:
    """Pace nothing: no bandwidth is simulated."""


def _accepted_types(request: web.Request) -> frozenset[str] | None:
    """The media types ``Accept`` lists; ``None`` when it accepts anything (or is absent)."""
    types = set()
    for header in request.headers.getall("Accept", []):
        for item in header.split(","):
            media_type = item.split(";", 1)[0].strip().lower()
            if media_type in ("*/*", "application/*"):
                return None
            if media_type:
                types.add(media_type)
    return frozenset(types) or None


def _listing(
    request: web.Request, items: list[str], *, key: str, extra: dict[str, object]
) -> web.Response:
    last = request.query.get("last")
    if last is not None:
        items = [item for item in items if item > last]
    count_text = request.query.get("n")
    headers = dict(API_VERSION_HEADER)
    if count_text is not None:
        # ``str.isdigit`` also accepts digits ``int`` refuses (superscripts): ASCII only.
        if _COUNT_RE.fullmatch(count_text) is None or not 0 < int(count_text) <= MAX_LIST:
            raise OciError(
                OciCode.PAGINATION_NUMBER_INVALID,
                f"n must be within 1..{MAX_LIST}",
                status=HTTPStatus.BAD_REQUEST,
            )
        count = int(count_text)
        if len(items) > count:
            items = items[:count]
            headers["Link"] = f'<{request.path}?n={count}&last={items[-1]}>; rel="next"'
    return web.json_response({**extra, key: items}, headers=headers)
