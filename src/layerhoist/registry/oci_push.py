"""The OCI distribution write side: blob uploads and manifests pushed through ``/v2/``.

The same catalog and blob store as the ECR JSON API: a blob uploaded here is a layer
there, a manifest PUT here is a PutImage there (its references checked by the same code),
and the other way round. ::

    POST   /v2/<name>/blobs/uploads/                    202 session (or ?mount=&from= 201,
                                                         or ?digest= with the whole body 201)
                                                         ECR: mounts as its account setting
                                                         says; ECR Public: never
    GET    /v2/<name>/blobs/uploads/<uuid>              204 with the Range received
    PATCH  /v2/<name>/blobs/uploads/<uuid>              202 (201 on ECR) Range: 0-N
    PUT    /v2/<name>/blobs/uploads/<uuid>?digest=      201 (with or without a last body)
    DELETE /v2/<name>/blobs/uploads/<uuid>              204, the upload is discarded
    PUT    /v2/<name>/manifests/<tag|digest>            201 Docker-Content-Digest
    DELETE /v2/<name>/manifests/<tag|digest>            202

Blob bodies are streamed to disk piece by piece (``oci_stream_piece`` bytes held per
request, from the same body budget as the JSON API); a manifest body is read whole under
the 4 MiB manifest limit. A PATCH is one part of its upload whatever it is written in, so
the ECR flavors' minimum part size applies per PATCH, as on ECR, and a PATCH whose body
breaks off adds nothing to the upload there (an UploadLayerPart that never completed), while
the distribution flavor keeps the bytes that arrived, as distribution does.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web

from layerhoist.registry.catalog import Catalog, Mutability
from layerhoist.registry.ecr_api import MAX_MANIFEST, EcrApi
from layerhoist.registry.errors import Code, EcrError, OciCode, OciError, oci_equivalent
from layerhoist.registry.manifests import IMAGE_MANIFESTS, INDEXES
from layerhoist.registry.oci_api import API_VERSION_HEADER, repository_name
from layerhoist.registry.settings import RegistrySettings
from layerhoist.registry.simulation import Simulator
from layerhoist.registry.stats import RegistryStats
from layerhoist.registry.storage import BlobStore, Upload
from layerhoist.registry.validation import UPLOAD_ID_RE, is_digest, is_repository_name, is_tag
from layerhoist.registry.wire import Body, parse_object

#: ``Content-Range`` of a PATCH: ``START-END`` (distribution), ``bytes START-END`` tolerated.
_CONTENT_RANGE_RE = re.compile(r"(?:bytes )?([0-9]{1,19})-([0-9]{1,19})")
#: Media types a manifest PUT's ``Content-Type`` is taken as (others: read from the body).
_MANIFEST_TYPES = IMAGE_MANIFESTS | INDEXES

#: Reads a whole request body of at most ``limit`` bytes (the server's body reading).
ReadBody = Callable[[web.Request, int], Awaitable[Body]]
#: Streams a request body into ``sink(piece, first)``; the bytes received.
StreamBody = Callable[[web.Request, Callable[[bytes, bool], Awaitable[None]]], Awaitable[int]]


class OciPush:
    """Handlers of the ``/v2/`` write routes over one catalog and blob store."""

    def __init__(
        self,
        *,
        settings: RegistrySettings,
        catalog: Catalog,
        store: BlobStore,
        ecr: EcrApi,
        simulator: Simulator,
        stats: RegistryStats,
        read_body: ReadBody,
        stream_body: StreamBody,
        release: Callable[[Body], None],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._store = store
        self._ecr = ecr
        self._simulator = simulator
        self._stats = stats
        self._read_body = read_body
        self._stream_body = stream_body
        self._release = release
        self._clock = clock
        self._wall_clock = wall_clock

    @property
    def _ecr_like(self) -> bool:
        return self._settings.flavor != "distribution"

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register the write side on ``router``."""
        for start in ("/v2/{name:.+}/blobs/uploads/", "/v2/{name:.+}/blobs/uploads"):
            router.add_post(start, self.start_upload)
        session = "/v2/{name:.+}/blobs/uploads/{upload_id}"
        router.add_get(session, self.upload_status)
        router.add_patch(session, self.patch)
        router.add_put(session, self.finish)
        router.add_delete(session, self.cancel)
        router.add_put("/v2/{name:.+}/manifests/{reference}", self.put_manifest)
        router.add_delete("/v2/{name:.+}/manifests/{reference}", self.delete_manifest)

    # Blobs

    async def start_upload(self, request: web.Request) -> web.Response:
        """Open an upload session, mount a blob from another repository, or take it whole."""
        name = self._push_repository(request)
        mounted = self._mount(request, name)
        if mounted is not None:
            return mounted
        self._ecr.discard_idle_uploads()
        upload = self._store.new_upload(name, now=self._clock())
        self._stats.requests["v2.uploads"] += 1
        digest = request.query.get("digest")
        if digest is None:
            return web.Response(
                status=HTTPStatus.ACCEPTED, headers=self._session_headers(name, upload)
            )
        try:
            return await self._complete(request, name, upload, digest)
        finally:
            # A monolithic upload that failed leaves no session the client knows of.
            if self._store.get_upload(upload.upload_id) is upload:
                self._store.discard_upload(upload)

    def _mount(self, request: web.Request, name: str) -> web.Response | None:
        """Mount the blob ``?mount=`` of repository ``?from=``, or ``None``: open a session.

        Distribution mounts any blob the source repository holds. ECR mounts only with its
        account setting ``BLOB_MOUNTING`` enabled, and only a blob an image of the source
        repository references (an uploaded blob no manifest names yet is not mounted:
        aws/containers-roadmap#2860). ECR Public never mounts (containers-roadmap#1459).
        Whatever the reason, a mount not made is a 202 with a session, never an error.
        """
        digest, source = request.query.get("mount"), request.query.get("from")
        flavor = self._settings.flavor
        if digest is None or source is None or flavor == "ecr-public":
            return None
        if not is_digest(digest) or not is_repository_name(source):
            return None
        if flavor == "ecr" and not (
            self._ecr.blob_mounting and self._catalog.blob_referenced(source, digest)
        ):
            return None
        size = self._catalog.blob_size(source, digest)
        if size is None or self._store.blob_size(digest) is None:
            return None
        self._catalog.add_blob(name, digest, size)
        self._stats.requests["v2.mounts"] += 1
        return _created(f"/v2/{name}/blobs/{digest}", digest)

    async def upload_status(self, request: web.Request) -> web.Response:
        """Where an upload stands: 204 with the bytes received as ``Range``."""
        name = self._existing_repository(request)
        upload = self._find_upload(request, name)
        return web.Response(
            status=HTTPStatus.NO_CONTENT, headers=self._session_headers(name, upload)
        )

    async def patch(self, request: web.Request) -> web.Response:
        """Append the streamed body to the upload (one part)."""
        name = self._existing_repository(request)
        upload = self._find_upload(request, name)
        async with upload.lock:
            self._check_open(upload)
            self._check_content_range(request, upload)
            await self._receive(request, upload)
        # ECR answers a PATCH with 201 where distribution answers 202 (regclient#81).
        status = HTTPStatus.CREATED if self._ecr_like else HTTPStatus.ACCEPTED
        return web.Response(status=status, headers=self._session_headers(name, upload))

    async def finish(self, request: web.Request) -> web.Response:
        """Complete an upload with ``?digest=``, after its last part if a body comes along."""
        name = self._existing_repository(request)
        upload = self._find_upload(request, name)
        return await self._complete(request, name, upload, request.query.get("digest"))

    async def cancel(self, request: web.Request) -> web.Response:
        """Discard an upload and its bytes."""
        name = self._existing_repository(request)
        upload = self._find_upload(request, name)
        async with upload.lock:
            self._store.discard_upload(upload)
        return web.Response(status=HTTPStatus.NO_CONTENT, headers=API_VERSION_HEADER)

    async def _complete(
        self, request: web.Request, name: str, upload: Upload, digest: str | None
    ) -> web.Response:
        if digest is None or not is_digest(digest):
            raise OciError(
                OciCode.DIGEST_INVALID,
                f"a sha256 digest is required, not {digest!r}",
                status=HTTPStatus.BAD_REQUEST,
            )
        async with upload.lock:
            self._check_open(upload)
            if request.body_exists:
                self._check_content_range(request, upload)
                await self._receive(request, upload)
            self._check_parts(upload)
            if upload.digest != digest:
                self._store.discard_upload(upload)
                raise self._digest_mismatch(upload, digest)
            size = self._store.commit(upload)
        self._catalog.add_blob(name, digest, size)
        self._stats.layers_completed += 1
        return _created(f"/v2/{name}/blobs/{digest}", digest)

    def _check_parts(self, upload: Upload) -> None:
        """ECR's rules at completion: some bytes, and no short part but the last."""
        if not self._ecr_like:
            return
        if not upload.part_sizes:
            self._store.discard_upload(upload)
            raise OciError(
                OciCode.BLOB_UPLOAD_INVALID,
                f"The upload '{upload.upload_id}' cannot be completed because it does not have "
                "any parts",
                status=HTTPStatus.BAD_REQUEST,
            )
        small = [s for s in upload.part_sizes[:-1] if s < self._settings.min_part_size]
        if small:
            self._store.discard_upload(upload)
            raise OciError(
                OciCode.BLOB_UPLOAD_INVALID,
                f"Layer part size must be at least {self._settings.min_part_size} bytes "
                f"(a non-final part has {small[0]})",
                status=HTTPStatus.BAD_REQUEST,
            )

    def _digest_mismatch(self, upload: Upload, digest: str) -> OciError:
        if self._ecr_like:
            # ECR's words for it, not DIGEST_INVALID (dotnet/sdk-container-builds#424).
            return OciError(
                OciCode.BLOB_UPLOAD_INVALID,
                "None of the provided layer digests match the calculated layer digest "
                f"'{upload.digest}'",
                status=HTTPStatus.BAD_REQUEST,
            )
        return OciError(
            OciCode.DIGEST_INVALID,
            f"provided digest {digest} does not match uploaded content {upload.digest}",
            status=HTTPStatus.BAD_REQUEST,
        )

    async def _receive(self, request: web.Request, upload: Upload) -> None:
        """Stream the body into the upload as one new part; the caller holds its lock."""

        async def sink(piece: bytes, first: bool) -> None:
            if upload.size + len(piece) > self._settings.max_blob_size:
                raise OciError(
                    OciCode.SIZE_INVALID,
                    f"blob exceeds {self._settings.max_blob_size} bytes",
                    status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                )
            stored = self._simulator.corrupt(piece) if first else piece
            if stored is not piece:
                self._stats.parts_corrupted += 1
            await self._store.append(upload, stored, new_part=first)
            self._store.touch(upload, now=self._clock())

        # ECR's PATCH is an UploadLayerPart: a body that breaks off leaves nothing behind,
        # where distribution keeps what arrived.
        mark = self._store.mark(upload) if self._ecr_like else None
        try:
            received = await self._stream_body(request, sink)
        except BaseException:
            if mark is not None:
                self._store.rewind(upload, mark)
            raise
        if received:
            self._stats.parts_received += 1
            self._stats.part_bytes_received += received

    def _check_content_range(self, request: web.Request, upload: Upload) -> None:
        text = request.headers.get("Content-Range")
        if text is None:
            return
        match = _CONTENT_RANGE_RE.fullmatch(text.strip())
        start = None if match is None else int(match[1])
        end = None if match is None else int(match[2])
        length = request.content_length
        continues = start == upload.size and end is not None and end >= start
        if continues and (length is None or length == (end or 0) - upload.size + 1):
            return
        headers = {**API_VERSION_HEADER, "Range": _range(upload)}
        if self._ecr_like:
            raise OciError(
                OciCode.BLOB_UPLOAD_INVALID,
                f"First byte of the layer part is {start} instead of {upload.size}",
                status=HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                headers=headers,
            )
        raise OciError(
            OciCode.RANGE_INVALID,
            f"Content-Range {text!r} does not continue the {upload.size} bytes received",
            status=HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
            headers=headers,
        )

    # Manifests

    async def put_manifest(self, request: web.Request) -> web.Response:
        """Store a manifest by tag or digest, checked as PutImage checks it."""
        name = self._push_repository(request)
        reference = request.match_info["reference"]
        tag: str | None = None
        claimed: str | None = None
        if is_digest(reference):
            claimed = reference
        elif is_tag(reference):
            tag = reference
        else:
            raise OciError(
                OciCode.TAG_INVALID,
                f"invalid tag or digest {reference!r}",
                status=HTTPStatus.BAD_REQUEST,
            )
        body = await self._read_body(request, min(MAX_MANIFEST, self._settings.body_limit))
        try:
            raw = bytes(body.view)
        finally:
            self._release(body)
        if not raw:
            raise OciError(
                OciCode.MANIFEST_INVALID, "empty manifest", status=HTTPStatus.BAD_REQUEST
            )
        # The structure check first: a manifest of a million ``{}`` must not be parsed whole.
        parse_object(raw, self._ecr.json_limits)
        declared = request.content_type
        record = self._catalog.repository(name)
        assert record is not None
        try:
            digest, _ = self._ecr.store_image(
                record,
                raw,
                media_type=declared if declared in _MANIFEST_TYPES else None,
                tag=tag,
                claimed_digest=claimed,
            )
        except EcrError as error:
            # Pushing an image again is no error on /v2/ (docker push does it all the time).
            if error.code != Code.IMAGE_ALREADY_EXISTS:
                raise oci_equivalent(error) from error
            digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
        return _created(f"/v2/{name}/manifests/{digest}", digest)

    async def delete_manifest(self, request: web.Request) -> web.Response:
        """Delete an image by digest (with its tags), or one tag."""
        name = self._existing_repository(request)
        reference = request.match_info["reference"]
        digest: str | None = None
        if is_digest(reference):
            digest = reference
        elif is_tag(reference):
            digest = self._catalog.resolve_tag(name, reference)
        if digest is None or self._catalog.image(name, digest) is None:
            raise OciError(
                OciCode.MANIFEST_UNKNOWN,
                f"manifest unknown: {name}:{reference}",
                status=HTTPStatus.NOT_FOUND,
            )
        if digest == reference:
            if self._catalog.parents(name, digest):
                raise OciError(
                    OciCode.DENIED,
                    f"{digest} is referenced by an index in {name}",
                    status=HTTPStatus.CONFLICT,
                )
            self._catalog.delete_image(name, digest)
        else:
            self._catalog.delete_tag(name, reference)
        return web.Response(status=HTTPStatus.ACCEPTED, headers=API_VERSION_HEADER)

    # Helpers

    def _existing_repository(self, request: web.Request) -> str:
        return repository_name(request, self._catalog)

    def _push_repository(self, request: web.Request) -> str:
        """The repository pushed to: created on first push by distribution, never by ECR."""
        name = request.match_info["name"]
        if is_repository_name(name) and self._catalog.repository(name) is None:
            if self._ecr_like:
                raise OciError(
                    OciCode.NAME_UNKNOWN,
                    f"The repository with name '{name}' does not exist in the registry with "
                    f"id '{self._settings.account_id}'",
                    status=HTTPStatus.NOT_FOUND,
                )
            self._catalog.create_repository(
                name, mutability=Mutability.MUTABLE, now=self._wall_clock()
            )
        return self._existing_repository(request)

    def _find_upload(self, request: web.Request, name: str) -> Upload:
        upload_id = request.match_info["upload_id"]
        unknown = OciError(
            OciCode.BLOB_UPLOAD_UNKNOWN,
            f"blob upload unknown: {upload_id}",
            status=HTTPStatus.NOT_FOUND,
        )
        if UPLOAD_ID_RE.fullmatch(upload_id) is None:
            raise unknown
        try:
            return self._ecr.find_upload(name, {"uploadId": upload_id})
        except EcrError:
            raise unknown from None

    def _check_open(self, upload: Upload) -> None:
        try:
            self._ecr.check_open(upload)
        except EcrError:
            raise OciError(
                OciCode.BLOB_UPLOAD_UNKNOWN,
                f"blob upload unknown: {upload.upload_id}",
                status=HTTPStatus.NOT_FOUND,
            ) from None

    def _session_headers(self, name: str, upload: Upload) -> dict[str, str]:
        return {
            **API_VERSION_HEADER,
            "Location": f"/v2/{name}/blobs/uploads/{upload.upload_id}",
            "Docker-Upload-UUID": upload.upload_id,
            "Range": _range(upload),
            "Content-Length": "0",
        }


def _range(upload: Upload) -> str:
    """The ``Range`` of the bytes received (distribution says ``0-0`` for none too)."""
    return f"0-{max(upload.size - 1, 0)}"


def _created(location: str, digest: str) -> web.Response:
    return web.Response(
        status=HTTPStatus.CREATED,
        headers={
            **API_VERSION_HEADER,
            "Location": location,
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        },
    )
