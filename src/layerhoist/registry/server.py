"""The embedded registry: one aiohttp server, both ECR APIs, the OCI read side, the admin API.

Every ECR API request goes through the same steps, in the order the service would
meet them::

    latency -> SigV4 headers (when credentials are set: before any body byte is read)
    -> the operation's body limit -> (maybe drop the connection mid-body) -> read the
    body as it arrives, within the budget of bodies held at once, paced by the
    connection's bandwidth -> SigV4 signature over the body -> unknown operation?
    -> quota (ThrottlingException) -> injected ServerException -> the operation

Only UploadLayerPart and PutImage may send ``body_limit`` bytes; every other operation,
and the admin endpoint, ``small_body_limit``. A refusal is always the service's JSON
error: a full disk is ServerException saying so, and anything unforeseen is logged and
answered as ServerException, never as aiohttp's plain-text 500. A body that stalls for
``body_idle_timeout`` seconds, or breaks off, closes its connection without an answer.

``async with EmbeddedRegistry(settings) as registry`` listens on
``registry.endpoint_url`` until the block ends; meanwhile uploads left idle past their
expiry are swept away every ``upload_sweep_interval`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import weakref
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from types import TracebackType
from typing import NoReturn, Self

import anyio
from aiohttp import web
from anyio.abc import TaskGroup

from layerhoist.registry.admin import AdminApi
from layerhoist.registry.auth import (
    ADMIN_SERVICE,
    ADMIN_SIGNED_HEADERS,
    ECR_PUBLIC_REGION,
    ECR_SIGNED_HEADERS,
    Authenticator,
    Scope,
)
from layerhoist.registry.catalog import Catalog
from layerhoist.registry.connections import (
    ConditionLog,
    ConnectionLimit,
    LimitedSite,
    quiet_accept_failures,
)
from layerhoist.registry.ecr_api import (
    ECR_PUBLIC,
    EcrApi,
    Service,
    resolve_target,
    unknown_operation,
)
from layerhoist.registry.errors import (
    Code,
    EcrError,
    OciCode,
    OciError,
    oci_equivalent,
    storage_failure,
)
from layerhoist.registry.oci_api import API_VERSION_HEADER, DROP_KEY, OciApi
from layerhoist.registry.oci_auth import OciAuth
from layerhoist.registry.oci_push import OciPush
from layerhoist.registry.pull_limit import PullLimit
from layerhoist.registry.settings import RegistrySettings
from layerhoist.registry.sigv4 import SignatureError
from layerhoist.registry.simulation import ConnectionBandwidth, Simulator
from layerhoist.registry.stats import RegistryStats
from layerhoist.registry.storage import BlobStore, Writer
from layerhoist.registry.wire import (
    Body,
    BodyBuffers,
    BodyUnreadable,
    json_response,
    read_body,
    stream_body,
)

ECR_PATH = "/"
OCI_PREFIX = "/v2"
#: The operations whose bodies may be large (a part's base64, a manifest); the others'
#: bodies are held to ``RegistrySettings.small_body_limit``.
LARGE_BODY_OPERATIONS = frozenset({"UploadLayerPart", "PutImage"})


class EmbeddedRegistry:
    """A disk-backed ECR / ECR Public compatible registry serving on one port.

    ``clock`` (monotonic seconds) decides upload expiry and simulation timing,
    ``wall_clock`` (epoch seconds) timestamps and signature dates, ``sleep`` the
    simulated latency and bandwidth; ``write`` (``os.pwrite``'s shape) writes every
    uploaded byte. The sweep for idle uploads and the connection timeouts run on real time.
    """

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        write: Writer = os.pwrite,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self._write = write
        self._simulator = Simulator(settings.simulation, clock=clock, sleep=sleep)
        self._stats = RegistryStats()
        self._log = ConditionLog(interval=settings.log_interval)
        self._auth = Authenticator(
            credentials=settings.credentials,
            max_skew=settings.signature_max_skew,
            wall_clock=wall_clock,
        )
        self._buffers = BodyBuffers(
            capacity=settings.body_limit, budget=settings.buffered_body_limit
        )
        self._pacers: weakref.WeakKeyDictionary[object, ConnectionBandwidth] = (
            weakref.WeakKeyDictionary()
        )
        self._catalog: Catalog | None = None
        self._store: BlobStore | None = None
        self._ecr: EcrApi | None = None
        self._oci_auth: OciAuth | None = None
        self._pull_limit = (
            None
            if settings.pull_limit is None
            else PullLimit(
                limit=settings.pull_limit,
                window=settings.pull_limit_window,
                max_clients=settings.max_pull_clients,
                clock=clock,
            )
        )
        self._runner: web.AppRunner | None = None
        self._connections: ConnectionLimit | None = None
        self._tasks: TaskGroup | None = None
        self._undo_accept_log: Callable[[], None] | None = None
        self._endpoint_url: str | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://HOST:PORT`` of the running registry."""
        if self._endpoint_url is None:
            raise RuntimeError("the registry is not running")
        return self._endpoint_url

    @property
    def simulator(self) -> Simulator:
        """The live simulator (its settings can be changed while the registry runs)."""
        return self._simulator

    def stats(self) -> dict[str, object]:
        """Requests per operation, errors per code, part bytes received, blobs/images stored."""
        catalog, store = self._require()
        return self._stats.snapshot(
            blobs_stored=catalog.blob_count(),
            images_stored=catalog.image_count(),
            uploads=store.upload_count(),
        )

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet closed."""
        return 0 if self._connections is None else self._connections.open

    @property
    def body_bytes_held(self) -> int:
        """Request body bytes reserved by the requests being read or served."""
        return self._buffers.held

    async def __aenter__(self) -> Self:
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._catalog = Catalog(data_dir)
        self._store = BlobStore(data_dir, write=self._write)
        self._ecr = EcrApi(
            settings=self.settings,
            catalog=self._catalog,
            store=self._store,
            simulator=self._simulator,
            stats=self._stats,
            clock=self._clock,
            wall_clock=self._wall_clock,
        )
        self._oci_auth = OciAuth(
            settings=self.settings,
            ecr_password=self._ecr.valid_password,
            stats=self._stats,
            wall_clock=self._wall_clock,
        )
        app = web.Application(middlewares=[self._oci_middleware])
        self._oci_auth.add_routes(app.router)
        app.router.add_post(ECR_PATH, self._ecr_endpoint)
        OciApi(catalog=self._catalog, store=self._store, pacer=self._blob_pacer).add_routes(
            app.router
        )
        OciPush(
            settings=self.settings,
            catalog=self._catalog,
            store=self._store,
            ecr=self._ecr,
            simulator=self._simulator,
            stats=self._stats,
            read_body=self._read_oci_body,
            stream_body=self._stream_oci_body,
            release=self._buffers.release,
            clock=self._clock,
            wall_clock=self._wall_clock,
        ).add_routes(app.router)
        AdminApi(
            simulator=self._simulator,
            stats=self.stats,
            admit=self._admit_admin,
            json_limits=self._ecr.json_limits,
        ).add_routes(app.router)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.settings.shutdown_timeout,
        )
        await runner.setup()
        try:
            assert runner.server is not None
            self._connections = ConnectionLimit(
                runner.server,
                limit=self.settings.max_connections,
                header_timeout=self.settings.header_timeout,
                log=self._log,
            )
            site = LimitedSite(
                runner, host=self.settings.host, port=self.settings.port, factory=self._connections
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._catalog.close()
            self._catalog = None
            raise
        self._runner = runner
        self._undo_accept_log = quiet_accept_failures(self._log)
        host, port = runner.addresses[0][:2]
        host_text = f"[{host}]" if ":" in host else host
        self._ecr.registry_host = f"{host_text}:{port}"
        self._endpoint_url = f"http://{host_text}:{port}"
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._sweep_uploads, self._ecr)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tasks is not None:
                self._tasks.cancel_scope.cancel()
                await self._tasks.__aexit__(None, None, None)
            if self._runner is not None:
                with anyio.CancelScope(shield=True):
                    await self._runner.cleanup()
        finally:
            self._tasks = None
            self._runner = None
            self._connections = None
            self._endpoint_url = None
            if self._undo_accept_log is not None:
                self._undo_accept_log()
                self._undo_accept_log = None
            if self._catalog is not None:
                self._catalog.close()
                self._catalog = None

    async def _sweep_uploads(self, ecr: EcrApi) -> None:
        """Discard abandoned uploads (and their files) every ``upload_sweep_interval``."""
        while True:
            await anyio.sleep(self.settings.upload_sweep_interval)
            ecr.discard_idle_uploads()

    def _require(self) -> tuple[Catalog, BlobStore]:
        if self._catalog is None or self._store is None:
            raise RuntimeError("the registry is not running")
        return self._catalog, self._store

    def _pacer(self, request: web.BaseRequest) -> ConnectionBandwidth | None:
        transport = request.transport
        if transport is None:
            return None
        pacer = self._pacers.get(transport)
        if pacer is None:
            pacer = self._pacers[transport] = self._simulator.connection_bandwidth()
        return pacer

    def _blob_pacer(self, request: web.BaseRequest) -> Callable[[int], Awaitable[None]] | None:
        if self._simulator.settings.bandwidth is None:
            return None
        pacer = self._pacer(request)
        return None if pacer is None else pacer.consume

    @web.middleware
    async def _oci_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path != OCI_PREFIX and not request.path.startswith(OCI_PREFIX + "/"):
            return await handler(request)
        operation = oci_operation(request)
        self._stats.requests[f"v2.{operation}"] += 1
        await self._simulator.latency()
        try:
            if self._oci_auth is not None:
                self._oci_auth.admit(request)
            limit_headers = self._admit_pull(request, operation)
            await self._simulate_oci(request, operation)
            response = await handler(request)
            response.headers.update(limit_headers)
            return response
        except OciError as error:
            return _oci_response(error)
        except EcrError as error:
            return _oci_response(oci_equivalent(error))
        except web.HTTPException as error:
            # 500 is how a cut connection ends (``_abandon``): nothing can be answered.
            if error.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
                raise
            code = (
                OciCode.UNSUPPORTED
                if error.status == HTTPStatus.METHOD_NOT_ALLOWED
                else OciCode.NAME_UNKNOWN
                if error.status == HTTPStatus.NOT_FOUND
                else OciCode.UNKNOWN
            )
            return _oci_response(OciError(code, error.reason, status=error.status))
        except (OSError, sqlite3.Error) as error:
            failure = storage_failure(error)
            self._log.note("storage", f"/v2/ {operation} failed: {failure.message} ({error!r})")
            return _oci_response(OciError(OciCode.UNKNOWN, failure.message, status=failure.status))
        except Exception as error:
            self._log.note(
                "internal", f"/v2/ {operation} failed unexpectedly: {error!r}", error=error
            )
            return _oci_response(
                OciError(
                    OciCode.UNKNOWN,
                    "An internal error occurred",
                    status=HTTPStatus.INTERNAL_SERVER_ERROR,
                )
            )

    def _admit_pull(self, request: web.Request, operation: str) -> dict[str, str]:
        """The pull limit's headers for a manifest request (429 past it; HEADs are free)."""
        if self._pull_limit is None or operation not in ("BatchGetImage", "HeadManifest"):
            return {}
        return self._pull_limit.admit(
            request.remote or "unknown", counted=operation == "BatchGetImage"
        )

    async def _simulate_oci(self, request: web.Request, operation: str) -> None:
        """The simulation's quotas and faults, as the JSON API's operations meet them."""
        if self._simulator.throttled(operation):
            raise OciError(
                OciCode.TOOMANYREQUESTS,
                "Rate exceeded",
                status=HTTPStatus.TOO_MANY_REQUESTS,
            )
        fault = self._simulator.decide_fault(operation)
        if fault == "none":
            return
        self._stats.faults[fault] += 1
        if fault == "error":
            raise OciError(
                OciCode.UNKNOWN,
                "An injected transient server error occurred",
                status=HTTPStatus.INTERNAL_SERVER_ERROR,
            )
        if request.method == "GET" and "digest" in request.match_info:
            # A blob GET is cut in the middle of its body (the read side looks at this).
            request[DROP_KEY] = True
            return
        if request.body_exists:
            await _drop(request, self.settings.body_idle_timeout)
        _abandon(request)

    async def _read_oci_body(self, request: web.Request, limit: int) -> Body:
        return await self._read_body(request, limit=limit)

    async def _stream_oci_body(
        self, request: web.Request, sink: Callable[[bytes, bool], Awaitable[None]]
    ) -> int:
        """Stream a ``/v2/`` blob body into ``sink``; a stalled or broken one is cut off."""
        try:
            return await stream_body(
                request,
                buffers=self._buffers,
                piece_size=min(self.settings.oci_stream_piece, self.settings.buffered_body_limit),
                limit=self.settings.max_blob_size,
                idle_timeout=self.settings.body_idle_timeout,
                consume=_consume_with(self._pacer(request)),
                sink=sink,
            )
        except BodyUnreadable as error:
            self._log.note("body", f"closing connections whose request body stops: {error}")
            _abandon(request)

    async def _ecr_endpoint(self, request: web.Request) -> web.StreamResponse:
        target = request.headers.get("X-Amz-Target", "")
        service, operation = resolve_target(target)
        self._stats.requests[operation] += 1
        await self._simulator.latency()
        try:
            result = await self._serve_ecr(request, service, operation, target)
        except EcrError as error:
            self._stats.errors[error.code] += 1
            return json_response(error.body(), status=error.status)
        except SignatureError as error:
            self._stats.errors[error.code] += 1
            return json_response(error.body(), status=error.status)
        return json_response(result)

    async def _serve_ecr(
        self, request: web.Request, service: Service | None, operation: str, target: str
    ) -> dict[str, object]:
        if self._ecr is None:
            raise RuntimeError("the registry is not running")
        authorization = self._auth.check(request, self._ecr_scope(service))
        limit = (
            self.settings.body_limit
            if operation in LARGE_BODY_OPERATIONS
            else self.settings.small_body_limit
        )
        fault = "none" if service is None else self._simulator.decide_fault(operation)
        if fault == "drop":
            self._stats.faults[fault] += 1
            await _drop(request, self.settings.body_idle_timeout)
        body = await self._read_body(request, limit=limit)
        try:
            await self._auth.verify(request, authorization, body)
            if service is None:
                raise unknown_operation(target)
            if self._simulator.throttled(operation):
                raise EcrError(Code.THROTTLING, "Rate exceeded")
            if fault == "error":
                self._stats.faults[fault] += 1
                raise EcrError(
                    Code.SERVER,
                    "An injected transient server error occurred",
                    status=HTTPStatus.INTERNAL_SERVER_ERROR,
                )
            return await self._operate(service, operation, body)
        finally:
            self._buffers.release(body)

    async def _operate(self, service: Service, operation: str, body: Body) -> dict[str, object]:
        """Run the operation, answering every failure of the data directory or of our own."""
        assert self._ecr is not None
        try:
            return await self._ecr.call(service, operation, body)
        except EcrError:
            raise
        except (OSError, sqlite3.Error) as error:
            failure = storage_failure(error)
            self._log.note("storage", f"{operation} failed: {failure.message} ({error!r})")
            raise failure from error
        except Exception as error:
            self._log.note("internal", f"{operation} failed unexpectedly: {error!r}", error=error)
            raise EcrError(
                Code.SERVER,
                "An internal error occurred",
                status=HTTPStatus.INTERNAL_SERVER_ERROR,
            ) from error

    def _ecr_scope(self, service: Service | None) -> Scope:
        return Scope(
            service=None if service is None else service.name,
            region=ECR_PUBLIC_REGION if service is ECR_PUBLIC else self.settings.region,
            signed_headers=ECR_SIGNED_HEADERS,
        )

    async def _read_body(self, request: web.Request, *, limit: int) -> Body:
        """The request's body; a stalled or broken one closes the connection unanswered."""
        try:
            return await read_body(
                request,
                buffers=self._buffers,
                limit=limit,
                idle_timeout=self.settings.body_idle_timeout,
                consume=_consume_with(self._pacer(request)),
            )
        except BodyUnreadable as error:
            self._log.note("body", f"closing connections whose request body stops: {error}")
            _abandon(request)
        except EcrError as error:
            if error.code == Code.THROTTLING:
                self._log.note(
                    "budget",
                    "throttling requests: the request bodies held reach "
                    f"{self.settings.buffered_body_limit} bytes (max_buffered_body_bytes)",
                )
            raise

    async def _admit_admin(self, request: web.Request) -> bytes:
        """The body of an admin request, once its signature (if credentials are set) holds."""
        authorization = self._auth.check(
            request,
            Scope(
                service=ADMIN_SERVICE,
                region=self.settings.region,
                signed_headers=ADMIN_SIGNED_HEADERS,
            ),
        )
        body = await self._read_body(request, limit=self.settings.small_body_limit)
        try:
            await self._auth.verify(request, authorization, body)
            return bytes(body.view)
        finally:
            self._buffers.release(body)


#: The operation a ``/v2/`` request amounts to, by method and route parameter: the names
#: of the JSON API's operations, so that quotas and faults set for those apply to both
#: transports (a ``docker push`` to ECR is counted against the same quotas).
_OCI_OPERATIONS = {
    ("POST", "name"): "InitiateLayerUpload",
    ("PATCH", "upload_id"): "UploadLayerPart",
    ("PUT", "upload_id"): "CompleteLayerUpload",
    ("GET", "upload_id"): "GetUploadStatus",
    ("DELETE", "upload_id"): "CancelUpload",
    ("PUT", "reference"): "PutImage",
    ("GET", "reference"): "BatchGetImage",
    ("HEAD", "reference"): "HeadManifest",
    ("DELETE", "reference"): "BatchDeleteImage",
    ("GET", "digest"): "GetDownloadUrlForLayer",
    ("HEAD", "digest"): "BatchCheckLayerAvailability",
}
#: The route parameter that tells ``/v2/`` routes apart, most specific first.
_OCI_KEYS = ("upload_id", "reference", "digest", "name")


def oci_operation(request: web.Request) -> str:
    """The operation name a ``/v2/`` request is counted, throttled and faulted under."""
    info = request.match_info
    for key in _OCI_KEYS:
        if key in info:
            if request.path.endswith("/tags/list"):
                return "ListImages"
            return _OCI_OPERATIONS.get((request.method, key), f"{request.method}:{key}")
    return "Ping" if request.path.rstrip("/") == OCI_PREFIX else "Other"


def _oci_response(error: OciError) -> web.Response:
    return web.json_response(
        error.body(), status=error.status, headers={**API_VERSION_HEADER, **error.headers}
    )


def _consume_with(pacer: ConnectionBandwidth | None) -> Callable[[int], Awaitable[None]]:
    return _no_pacing if pacer is None else pacer.consume


async def _no_pacing(nbytes: int) -> None:
    """Account for nothing: the connection is already gone."""


def _abandon(request: web.BaseRequest) -> NoReturn:
    """Cut the connection without answering."""
    if request.transport is not None:
        request.transport.abort()
    # aiohttp ends the request quietly on an HTTP exception; the client sees a reset.
    raise web.HTTPInternalServerError()


async def _drop(request: web.BaseRequest, idle_timeout: float) -> NoReturn:
    """Read a first piece of the body, then cut the connection without answering."""
    # The connection is cut whatever happens while reading: a stall or a reset only hastens it.
    with anyio.move_on_after(idle_timeout), contextlib.suppress(Exception):
        await request.content.readany()
    _abandon(request)
