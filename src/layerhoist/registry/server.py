"""The embedded registry: one aiohttp server, both ECR APIs, the OCI read side, the admin API.

Every ECR API request goes through the same steps, in the order the service would
meet them::

    latency -> (maybe drop the connection mid-body) -> read the body, paced by the
    connection's bandwidth -> SigV4 (when credentials are set) -> unknown operation?
    -> quota (ThrottlingException) -> injected ServerException -> the operation

``async with EmbeddedRegistry(settings) as registry`` listens on
``registry.endpoint_url`` until the block ends.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Self

import anyio
import anyio.to_thread
from aiohttp import web

from layerhoist.registry.admin import AdminApi
from layerhoist.registry.catalog import Catalog
from layerhoist.registry.ecr_api import EcrApi, Service, resolve_target, unknown_operation
from layerhoist.registry.errors import Code, EcrError, OciError
from layerhoist.registry.oci_api import API_VERSION_HEADER, OciApi
from layerhoist.registry.settings import RegistrySettings
from layerhoist.registry.sigv4 import SignatureError, verify_request
from layerhoist.registry.simulation import ConnectionBandwidth, Simulator
from layerhoist.registry.stats import RegistryStats
from layerhoist.registry.storage import BlobStore
from layerhoist.registry.wire import Body, BodyBuffers, json_response, read_body

ECR_PATH = "/"
OCI_PREFIX = "/v2"
#: Bodies at least this large are signature-checked in a worker thread (it hashes them).
THREAD_VERIFY_THRESHOLD = 256 * 1024


class EmbeddedRegistry:
    """A disk-backed ECR / ECR Public compatible registry serving on one port.

    ``clock`` (monotonic seconds) decides upload expiry and simulation timing,
    ``wall_clock`` (epoch seconds) timestamps and signature dates, ``sleep`` the
    simulated latency and bandwidth.
    """

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self._simulator = Simulator(settings.simulation, clock=clock, sleep=sleep)
        self._stats = RegistryStats()
        self._buffers = BodyBuffers(capacity=settings.body_limit)
        self._pacers: weakref.WeakKeyDictionary[object, ConnectionBandwidth] = (
            weakref.WeakKeyDictionary()
        )
        self._catalog: Catalog | None = None
        self._store: BlobStore | None = None
        self._ecr: EcrApi | None = None
        self._runner: web.AppRunner | None = None
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
            uploads=len(store.uploads()),
        )

    async def __aenter__(self) -> Self:
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._catalog = Catalog(data_dir)
        self._store = BlobStore(data_dir)
        self._ecr = EcrApi(
            settings=self.settings,
            catalog=self._catalog,
            store=self._store,
            simulator=self._simulator,
            stats=self._stats,
            clock=self._clock,
            wall_clock=self._wall_clock,
        )
        app = web.Application(middlewares=[self._oci_middleware])
        app.router.add_post(ECR_PATH, self._ecr_endpoint)
        OciApi(catalog=self._catalog, store=self._store, pacer=self._blob_pacer).add_routes(
            app.router
        )
        AdminApi(simulator=self._simulator, stats=self.stats).add_routes(app.router)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.settings.shutdown_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.settings.host, self.settings.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._catalog.close()
            self._catalog = None
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        host_text = f"[{host}]" if ":" in host else host
        self._ecr.registry_host = f"{host_text}:{port}"
        self._endpoint_url = f"http://{host_text}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._runner is not None:
                with anyio.CancelScope(shield=True):
                    await self._runner.cleanup()
        finally:
            self._runner = None
            self._endpoint_url = None
            if self._catalog is not None:
                self._catalog.close()
                self._catalog = None

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
        await self._simulator.latency()
        try:
            return await handler(request)
        except OciError as error:
            return web.json_response(error.body(), status=error.status, headers=API_VERSION_HEADER)

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
            return json_response(
                {"__type": error.code, "message": error.message}, status=error.status
            )
        return json_response(result)

    async def _serve_ecr(
        self, request: web.Request, service: Service | None, operation: str, target: str
    ) -> dict[str, object]:
        if self._ecr is None:
            raise RuntimeError("the registry is not running")
        fault = "none" if service is None else self._simulator.decide_fault(operation)
        if fault == "drop":
            self._stats.faults[fault] += 1
            await _drop(request)
        pacer = self._pacer(request)
        body = await read_body(
            request,
            buffers=self._buffers,
            limit=self.settings.body_limit,
            consume=_consume_with(pacer),
        )
        try:
            await self._authenticate(request, body)
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
            return await self._ecr.call(service, operation, body)
        finally:
            self._buffers.release(body)

    async def _authenticate(self, request: web.Request, body: Body) -> None:
        credentials = self.settings.credentials
        if credentials is None:
            return
        now = datetime.fromtimestamp(self._wall_clock(), UTC)

        def verify() -> str:
            return verify_request(
                method=request.method,
                path=request.rel_url.raw_path,
                query_string=request.rel_url.raw_query_string,
                headers=request.headers,
                body=body.view,
                credentials=credentials,
                now=now,
                max_skew=self.settings.signature_max_skew,
            )

        if body.length >= THREAD_VERIFY_THRESHOLD:
            await anyio.to_thread.run_sync(verify)
        else:
            verify()


def _consume_with(pacer: ConnectionBandwidth | None) -> Callable[[int], Awaitable[None]]:
    return _no_pacing if pacer is None else pacer.consume


async def _no_pacing(nbytes: int) -> None:
    """Account for nothing: the connection is already gone."""


async def _drop(request: web.BaseRequest) -> None:
    """Read a first piece of the body, then cut the connection without answering."""
    await request.content.readany()
    if request.transport is not None:
        request.transport.abort()
    # aiohttp ends the request quietly on an HTTP exception; the client sees a reset.
    raise web.HTTPInternalServerError()
