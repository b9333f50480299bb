"""The OCI distribution read side: what was pushed through the ECR API, served to pullers.

Anonymous and read-only: ``/v2/``, manifests and blobs by tag or digest (GET and
HEAD), ``tags/list`` and ``_catalog``. Manifests are served with the exact bytes and
media type they were pushed with, so their digests match. Blobs stream from disk.
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
        if image is None:
            raise OciError(
                OciCode.MANIFEST_UNKNOWN,
                f"manifest unknown: {name}:{reference}",
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
        if consume is None:
            return web.FileResponse(path, headers=headers)
        return await _paced_file(request, path, size=size, headers=headers, consume=consume)

    def _repository(self, request: web.Request) -> str:
        name = request.match_info["name"]
        if not is_repository_name(name):
            raise OciError(
                OciCode.NAME_INVALID,
                f"invalid repository name {name!r}",
                status=HTTPStatus.BAD_REQUEST,
            )
        if self._catalog.repository(name) is None:
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
) -> web.StreamResponse:
    response = web.StreamResponse(headers=headers)
    response.content_length = size
    await response.prepare(request)
    if request.method != "HEAD":
        async with await anyio.open_file(path, "rb") as file:
            while chunk := await file.read(STREAM_CHUNK):
                await consume(len(chunk))
                await response.write(chunk)
    await response.write_eof()
    return response


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
