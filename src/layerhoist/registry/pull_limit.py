"""Docker Hub's pull limit: manifest GETs counted per client address in a window.

Answers carry ``ratelimit-limit: N;w=SECONDS`` and ``ratelimit-remaining: R;w=SECONDS``
(and ``docker-ratelimit-source``); past the limit a GET is 429 ``TOOMANYREQUESTS`` with
no ``Retry-After``, as on the Hub. HEAD requests are free. Each address has a fixed
window starting at its first counted pull; at most ``max_clients`` addresses are
remembered, the one counted longest ago forgotten first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from http import HTTPStatus

from layerhoist.registry.errors import OciCode, OciError


class PullLimit:
    """The pulls left per client address."""

    def __init__(
        self,
        *,
        limit: int,
        window: float,
        max_clients: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window
        self._max_clients = max_clients
        self._clock = clock
        #: Address -> (window start, pulls counted), least recently started first.
        self._counts: dict[str, tuple[float, int]] = {}

    def admit(self, client: str, *, counted: bool) -> dict[str, str]:
        """The rate-limit headers for ``client``; 429 when a ``counted`` pull is one too many."""
        now = self._clock()
        start, used = self._counts.get(client, (now, 0))
        if now - start >= self._window:
            start, used = now, 0
        seconds = round(self._window)
        over = counted and used >= self._limit
        if counted and not over:
            used += 1
            self._counts.pop(client, None)
            self._counts[client] = (start, used)
            if len(self._counts) > self._max_clients:
                del self._counts[next(iter(self._counts))]
        headers = {
            "ratelimit-limit": f"{self._limit};w={seconds}",
            "ratelimit-remaining": f"{max(self._limit - used, 0)};w={seconds}",
            "docker-ratelimit-source": client,
        }
        if over:
            raise OciError(
                OciCode.TOOMANYREQUESTS,
                "You have reached your pull rate limit.",
                status=HTTPStatus.TOO_MANY_REQUESTS,
                headers=headers,
            )
        return headers
