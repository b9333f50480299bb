"""Connections: how many are served at once, how long they may dawdle, and what is logged.

* A connection beyond ``max_connections`` is closed as soon as it is accepted, so hostile
  sockets cannot use up the process's descriptors (with none left, ``accept()`` fails and a
  normal client hangs).
* A connection must deliver a request's headers within ``header_timeout`` of opening or of
  the previous response: aiohttp's keep-alive timer, which also runs before the first
  request, closes it otherwise. Stalled bodies are the body reader's business (``wire.py``).
* :class:`ConditionLog` writes one line per condition and interval, counting the events in
  between, so a flood of refused sockets or failing accepts cannot flood the log too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

LOGGER = logging.getLogger("layerhoist.registry")
#: The message asyncio reports when ``accept()`` fails for want of descriptors or memory.
ACCEPT_FAILURE = "socket.accept() out of system resource"


class ConditionLog:
    """Logs a condition at most once per ``interval`` seconds, with a count of the rest."""

    def __init__(
        self,
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = LOGGER,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._logger = logger
        self._logged_at: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def note(self, condition: str, message: str, *, error: BaseException | None = None) -> None:
        """Record one event of ``condition``; log ``message`` unless it was logged lately.

        ``error``'s traceback goes with the line, when there is one.
        """
        now = self._clock()
        logged_at = self._logged_at.get(condition)
        if logged_at is not None and now - logged_at < self._interval:
            self._unlogged[condition] += 1
            return
        self._logged_at[condition] = now
        unlogged = self._unlogged.pop(condition, 0)
        suffix = f" ({unlogged} more since the last such line)" if unlogged else ""
        self._logger.warning("%s%s", message, suffix, exc_info=error)


class _Refused(asyncio.Protocol):
    """A connection over the limit: closed at once, its descriptor freed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A reset, not a lingering close: the descriptor is free at once.
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        else:
            transport.close()


class _CountedHandler(web.RequestHandler):
    """aiohttp's connection handler, telling its limit when the connection is gone."""

    __slots__ = ("_on_lost",)

    def __init__(self, manager: web.Server, *, on_lost: Callable[[], None], **options: Any) -> None:
        super().__init__(manager, **options)
        self._on_lost: Callable[[], None] | None = on_lost

    def connection_lost(self, exc: BaseException | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            on_lost, self._on_lost = self._on_lost, None
            if on_lost is not None:
                on_lost()


class ConnectionLimit:
    """The protocol factory of the listening socket: at most ``limit`` connections at once."""

    def __init__(
        self,
        server: web.Server,
        *,
        limit: int,
        header_timeout: float,
        log: ConditionLog,
    ) -> None:
        self._server = server
        self._limit = limit
        self._header_timeout = header_timeout
        self._log = log
        #: Connections accepted and not yet closed.
        self.open = 0

    def __call__(self) -> asyncio.BaseProtocol:
        if self.open >= self._limit:
            self._log.note(
                "connection-limit",
                f"refusing connections: {self._limit} are open (max_connections)",
            )
            return _Refused()
        self.open += 1
        return _CountedHandler(
            self._server,
            on_lost=self._closed,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=self._header_timeout,
            access_log=None,
        )

    def _closed(self) -> None:
        self.open -= 1


class LimitedSite(web.BaseSite):
    """A TCP site whose connections go through a :class:`ConnectionLimit`."""

    __slots__ = ("_factory", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, *, host: str, port: int, factory: ConnectionLimit
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._factory = factory

    @property
    def name(self) -> str:
        """The URL the site was asked to listen on."""
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        """Listen."""
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._factory, self._host, self._port, backlog=self._backlog
        )


def quiet_accept_failures(log: ConditionLog) -> Callable[[], None]:
    """Route the running loop's ``accept()`` failures to ``log``; returns the undo.

    asyncio reports each failure with a traceback and retries a second later, for as long
    as descriptors are short. Every other report goes to the handler that was in place.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith(ACCEPT_FAILURE):
            log.note("accept", f"cannot accept connections: {context.get('exception')!r}")
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)

    def undo() -> None:
        loop.set_exception_handler(previous)

    return undo
