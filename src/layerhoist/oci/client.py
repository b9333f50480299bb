"""One registry host: its HTTP session, the ``/v2/`` ping, and authenticated requests.

The first request pings ``/v2/`` to learn the scheme and the auth challenge. With
``tls_verify`` on, the registry must speak TLS with a trusted certificate. With it off (skopeo's
``--src-tls-verify=false``) certificates are not checked, and a registry that does not speak
TLS at all is reached over plain HTTP: https is tried first, http second, as skopeo does.

Every request goes through :meth:`RegistryClient.send`: it adds the ``Authorization`` the
:class:`~layerhoist.oci.auth.Authenticator` gives for the request's scope, answers one 401 by
learning the challenge (or dropping the refused token and fetching a fresh one) and sending
once more when its body can be sent again, records Docker Hub's pull limit, and turns an
unexpected status into a :class:`~layerhoist.oci.errors.RegistryResponseError`. Retries are
not made here: callers wrap whole requests in :func:`~layerhoist.transfer.retry.retry_call`
with the transport's classifier.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.request import getproxies

import aiohttp
import anyio
from yarl import URL

from layerhoist.oci.auth import Authenticator, AuthSettings, CredentialSource
from layerhoist.oci.credentials import Credentials
from layerhoist.oci.errors import RegistryResponseError, StaleTokenError, parse_error_body
from layerhoist.oci.ratelimit import RateLimit, parse_rate_limit
from layerhoist.units import KiB, MiB
from layerhoist.version import __version__

if TYPE_CHECKING:
    from layerhoist.transfer.pacing import TokenBucket

#: Bytes of an error answer's body read for its error codes (the rest is dropped).
ERROR_BODY_LIMIT = 64 * KiB
#: The statuses of ``/v2/`` that mean "a registry": 200 open, 401 asks for credentials.
PING_STATUSES = frozenset({200, 401})
UNAUTHORIZED = 401


@dataclass(frozen=True, kw_only=True)
class ClientSettings:
    """Settings of the client of one registry; sizes in bytes, durations in seconds."""

    #: Check certificates and require TLS. Off: no certificate check, and plain HTTP for a
    #: registry that speaks no TLS (skopeo's ``--src-tls-verify=false``).
    tls_verify: bool = True
    #: TCP (and TLS) connect timeout of one request.
    connect_timeout: float = 10.0
    #: Longest wait for the next bytes of an answer: a blob stream that stalls this long is
    #: broken, and resumes with a ``Range`` request.
    read_timeout: float = 60.0
    #: HTTP connections open to the registry at once.
    max_connections: int = 32
    #: A manifest or index larger than this is refused (the limit registries apply: 4 MiB).
    max_manifest_size: int = 4 * MiB
    #: Tags asked for per page of ``tags/list`` (``n=``); the registry may send fewer.
    tags_page_size: int = 1000
    #: Most bytes taken from the socket at once while streaming a blob.
    read_size: int = 1 * MiB
    #: Honour ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from the environment (read when the
    #: session opens: with none set, requests skip aiohttp's per-request proxy and
    #: ``~/.netrc`` lookups, two worker-thread hops each).
    proxy_from_environment: bool = True
    #: How bearer tokens are kept.
    auth: AuthSettings = field(default_factory=AuthSettings)

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_manifest_size", "tags_page_size", "read_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("connect_timeout and read_timeout must be positive")


class RegistryClient:
    """Requests to one registry host, authenticated, over one pooled HTTP session.

    ``registry`` is the registry as references name it (``docker.io``), for messages and
    credential lookup; ``endpoint`` the ``HOST[:PORT]`` serving its API
    (``registry-1.docker.io``). ``credentials`` may be a source asked before each use
    (credentials that expire during a run). ``scheme`` (``https`` or ``http``) is the one the
    endpoint is known to speak, as ECR's ``proxyEndpoint`` names it; ``None``: https, or
    http too when ``tls_verify`` is off. ``rate``, when given, paces every request to the
    host after the one ``/v2/`` ping (several clients of one host share it). Use as an async
    context manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        registry: str,
        endpoint: str,
        credentials: Credentials | CredentialSource | None = None,
        settings: ClientSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        scheme: str | None = None,
        rate: TokenBucket | None = None,
    ) -> None:
        self.registry = registry
        self.endpoint = endpoint
        self.scheme = scheme
        self.settings = settings or ClientSettings()
        self.auth = Authenticator(
            registry=registry,
            credentials=credentials,
            session=self._session,
            settings=self.settings.auth,
            clock=clock,
        )
        #: Docker Hub's pull limit as last announced; ``None`` elsewhere.
        self.rate_limit: RateLimit | None = None
        self._http: aiohttp.ClientSession | None = None
        self._base: URL | None = None
        self._ping_lock = anyio.Lock()
        self._rate = rate

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session; requests after this fail."""
        if self._http is not None:
            await self._http.close()

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            settings = self.settings
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=settings.max_connections, ssl=settings.tls_verify
                ),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=settings.connect_timeout,
                    sock_read=settings.read_timeout,
                ),
                headers={"User-Agent": f"layerhoist/{__version__}"},
                # Blob bytes must reach the caller exactly as stored, whatever a proxy says.
                auto_decompress=False,
                trust_env=settings.proxy_from_environment and bool(getproxies()),
            )
        return self._http

    @property
    def base_url(self) -> URL | None:
        """``https://ENDPOINT`` or ``http://ENDPOINT`` once pinged; ``None`` before."""
        return self._base

    async def ping(self) -> URL:
        """GET ``/v2/`` (once): the scheme the registry speaks, and its challenge, if any."""
        if self._base is None:
            async with self._ping_lock:
                if self._base is None:
                    self._base = await self._ping()
        return self._base

    async def _ping(self) -> URL:
        session = await self._session()
        if self.scheme is not None:
            schemes: tuple[str, ...] = (self.scheme,)
        else:
            schemes = ("https",) if self.settings.tls_verify else ("https", "http")
        for scheme in schemes:
            base = URL(f"{scheme}://{self.endpoint}")
            try:
                async with session.get(base / "v2/", allow_redirects=False) as response:
                    status = response.status
                    self.auth.learn(response.headers.get("WWW-Authenticate"))
            except aiohttp.ClientConnectionError:
                if scheme == schemes[-1]:
                    raise
                continue
            if status not in PING_STATUSES:
                raise RegistryResponseError(
                    what=f"{self.registry}: /v2/ did not answer as a registry", status=status
                )
            return base
        raise AssertionError("unreachable: the last scheme raises or returns")

    async def send(
        self,
        method: str,
        path: str | URL,
        *,
        scope: str,
        what: str,
        headers: Mapping[str, str] | None = None,
        expect: Collection[int] = (200,),
        data: Any = None,
    ) -> aiohttp.ClientResponse:
        """Send one request and return its answer, whose status is in ``expect``.

        ``path`` is relative to the registry (``/v2/…``) or an absolute URL (a ``Link``, an
        upload's ``Location``; a :class:`~yarl.URL` is sent exactly as it is encoded).
        ``data`` is the request body: ``bytes``, or an async iterable of ``bytes`` streamed
        with chunked transfer encoding. Such a body cannot be sent twice, so its 401 is not
        answered again (callers authenticate the scope with an earlier request): when it
        refused a token that had worked, the token is dropped and the error is a
        :class:`~layerhoist.oci.errors.StaleTokenError`, which the caller's retry answers
        with a fresh one. The caller releases the answer (``async with`` it). Raises
        :class:`RegistryResponseError` naming ``what`` for any other status.
        """
        base = await self.ping()
        target = path if isinstance(path, URL) else URL(path)
        url = target if target.is_absolute() else base.join(target)
        authorization = await self.auth.header(scope)
        response = await self._request(method, url, headers, authorization, data)
        stale = False
        if response.status == UNAUTHORIZED:
            # A 401 teaches the challenge, or says the token sent went stale (a registry may
            # revoke one before the expiry it announced): the token is dropped, and a request
            # that can be sent again goes once more with what the challenge yields now.
            self.auth.learn(response.headers.get("WWW-Authenticate"))
            stale = self.auth.refused(scope, authorization)
            if data is None or isinstance(data, bytes | bytearray):
                renewed = await self.auth.header(scope)
                if renewed is not None and renewed != authorization:
                    response.release()
                    authorization = renewed
                    response = await self._request(method, url, headers, renewed, data)
                    stale = False
                    if response.status == UNAUTHORIZED:
                        self.auth.refused(scope, renewed)
        if response.status != UNAUTHORIZED:
            self.auth.accepted(scope, authorization)
        if response.status in expect:
            return response
        try:
            body = await response.content.read(ERROR_BODY_LIMIT)
        finally:
            response.release()
        suffix = f" ({self.auth.identity})" if response.status == UNAUTHORIZED else ""
        error = StaleTokenError if stale else RegistryResponseError
        raise error(
            what=what + suffix,
            status=response.status,
            errors=parse_error_body(body),
            retry_after=response.headers.get("Retry-After"),
        )

    async def _request(
        self,
        method: str,
        url: URL,
        headers: Mapping[str, str] | None,
        authorization: str | None,
        data: Any = None,
    ) -> aiohttp.ClientResponse:
        request_headers = dict(headers or {})
        if authorization is not None:
            request_headers["Authorization"] = authorization
        session = await self._session()
        if self._rate is not None:
            await self._rate.acquire()
        response = await session.request(method, url, headers=request_headers, data=data)
        announced = parse_rate_limit(response.headers)
        if announced is not None:
            self.rate_limit = announced
        return response


def pull_scope(repository: str) -> str:
    """The token scope of reading ``repository``."""
    return f"repository:{repository}:pull"
