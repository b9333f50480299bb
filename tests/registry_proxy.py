"""An aiohttp server in front of a real registry, for what the registry itself will not do.

It forwards every request to the upstream registry and streams the answer back, and can:

- cut the first ``cut_blobs`` blob GETs after ``cut_after`` bytes (the connection closes
  mid-body, as a flaky network or load balancer does);
- ignore ``Range`` (answer 200 with the whole blob), as some registries and CDNs do;
- require bearer tokens from its own ``/token`` realm (``token_lifetime`` seconds each);
- answer chosen paths itself (``answers``: path -> (status, headers, body)).

Every request is recorded (method, path, the headers that matter here), never a secret.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from layerhoist.registry.launcher import free_port

#: Headers not forwarded either way: hop-by-hop, or rewritten by aiohttp itself.
_HOP_HEADERS = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "authorization", "content-length"}
)


#: The largest request body the proxy forwards.
MAX_FORWARDED_BODY = 256 * 1024 * 1024


@dataclass(frozen=True)
class Seen:
    """One request the proxy received."""

    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass
class ProxyOptions:
    """What the proxy does besides forwarding."""

    cut_blobs: int = 0
    cut_after: int = 0
    ignore_range: bool = False
    token_lifetime: float | None = None
    #: Basic credentials the token realm requires (``None``: anonymous tokens).
    token_user: tuple[str, str] | None = None
    answers: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)


class RegistryProxy:
    """A proxy to ``upstream`` (``HOST:PORT``); ``async with`` it, then use :attr:`host`."""

    def __init__(self, upstream: str, options: ProxyOptions | None = None) -> None:
        self.upstream = upstream
        self.options = options or ProxyOptions()
        self.seen: list[Seen] = []
        self.cuts = 0
        self.token_scopes: list[str] = []
        self._tokens: dict[str, float] = {}
        self._numbers = itertools.count(1)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RegistryProxy:
        # Whole streamed blob uploads pass through (read whole: the test blobs are small).
        app = web.Application(client_max_size=MAX_FORWARDED_BODY)
        app.router.add_route("*", "/token", self._token)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._client = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def ranges(self) -> list[str]:
        """The ``Range`` headers of the blob GETs received, in order."""
        return [s.range for s in self.seen if "/blobs/" in s.path and s.range]

    async def _token(self, request: web.Request) -> web.StreamResponse:
        wanted = self.options.token_user
        if wanted is not None:
            expected = "Basic " + base64.b64encode(":".join(wanted).encode()).decode()
            if request.headers.get("Authorization") != expected:
                return _error(401, "UNAUTHORIZED", "wrong credentials for the token realm", {})
        self.token_scopes.append(request.query.get("scope", ""))
        token = f"token-{next(self._numbers)}"
        lifetime = self.options.token_lifetime or 60.0
        self._tokens[token] = time.monotonic() + lifetime
        return web.json_response({"token": token, "expires_in": lifetime})

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        expiry = self._tokens.get(header.removeprefix("Bearer "))
        return header.startswith("Bearer ") and expiry is not None and time.monotonic() < expiry

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.headers.get("Range"),
                (request.headers.get("Authorization") or "").split(" ", 1)[0] or None,
            )
        )
        if self.options.token_lifetime is not None and not self._authorized(request):
            repository = request.path.removeprefix("/v2/").rsplit("/", 2)[0]
            challenge = f'Bearer realm="http://{self.host}/token",service="proxy"'
            if request.path != "/v2/":
                challenge += f',scope="repository:{repository}:pull"'
            return _error(401, "UNAUTHORIZED", "token required", {"WWW-Authenticate": challenge})
        answer = self.options.answers.get(request.path)
        if answer is not None:
            status, headers, body = answer
            return web.Response(status=status, headers=headers, body=body)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        is_blob = request.method == "GET" and "/blobs/" in request.path
        if is_blob and self.options.ignore_range:
            headers.pop("Range", None)
        assert self._client is not None
        async with self._client.request(
            request.method,
            f"http://{self.upstream}{request.path_qs}",
            headers=headers,
            data=await request.read() if request.can_read_body else None,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_HEADERS - {"content-length"}:
                    response.headers[key] = value
            # An upload's next steps come back through the proxy, as a client would see it.
            location = upstream.headers.get("Location", "")
            if location.startswith(f"http://{self.upstream}/"):
                response.headers["Location"] = f"http://{self.host}" + location.removeprefix(
                    f"http://{self.upstream}"
                )
            await response.prepare(request)
            cut = is_blob and upstream.status in (200, 206) and self.cuts < self.options.cut_blobs
            sent = 0
            async for data in upstream.content.iter_chunked(4096):
                if cut and sent + len(data) >= self.options.cut_after:
                    await response.write(data[: self.options.cut_after - sent])
                    self.cuts += 1
                    # Closing the socket under a response that promised more bytes: the
                    # client sees the body end early, as on a broken connection.
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await response.write(data)
                sent += len(data)
            await response.write_eof()
            return response


def _error(status: int, code: str, message: str, headers: Mapping[str, str]) -> web.Response:
    body = json.dumps({"errors": [{"code": code, "message": message}]})
    return web.Response(
        status=status, body=body, content_type="application/json", headers=dict(headers)
    )
