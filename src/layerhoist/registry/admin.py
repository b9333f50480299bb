"""The admin endpoint: counters, and the simulation knobs changed while the registry runs.

::

    GET  /_layerhoist/stats        the counters of :meth:`EmbeddedRegistry.stats`
    GET  /_layerhoist/simulation   the simulation settings in force
    POST /_layerhoist/simulation   a JSON object of settings to change; answers the new ones
                                   (400 ``{"error": ...}`` and nothing changed when invalid)

With credentials configured the endpoint wants SigV4 signatures as the ECR APIs do,
scoped to the service ``layerhoist`` (see ``auth.py``); a refused request gets the
service's JSON error (``{"__type": ..., "message": ...}``). Every knob is bounded
(``simulation.py``), so no request can make the registry sleep for ever.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web

from layerhoist.registry.errors import EcrError
from layerhoist.registry.sigv4 import SignatureError
from layerhoist.registry.simulation import Simulator
from layerhoist.registry.wire import JsonLimits, parse_object

STATS_PATH = "/_layerhoist/stats"
SIMULATION_PATH = "/_layerhoist/simulation"

#: Reads an admin request's body once its caller is authenticated (raising otherwise).
Admit = Callable[[web.Request], Awaitable[bytes]]


class AdminApi:
    """Handlers of the ``/_layerhoist/`` routes."""

    def __init__(
        self,
        *,
        simulator: Simulator,
        stats: Callable[[], dict[str, object]],
        admit: Admit,
        json_limits: JsonLimits,
    ) -> None:
        self._simulator = simulator
        self._stats = stats
        self._admit = admit
        self._json_limits = json_limits

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register the admin endpoint on ``router``."""
        router.add_get(STATS_PATH, self._guarded(self.get_stats))
        router.add_get(SIMULATION_PATH, self._guarded(self.get_simulation))
        router.add_post(SIMULATION_PATH, self._guarded(self.post_simulation))

    def _guarded(
        self, handler: Callable[[bytes], Awaitable[web.Response]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def guarded(request: web.Request) -> web.Response:
            try:
                body = await self._admit(request)
            except (SignatureError, EcrError) as error:
                return web.json_response(error.body(), status=error.status)
            return await handler(body)

        return guarded

    async def get_stats(self, body: bytes) -> web.Response:
        """The registry's counters."""
        return web.json_response(self._stats())

    async def get_simulation(self, body: bytes) -> web.Response:
        """The simulation settings in force."""
        return web.json_response(self._simulator.settings.to_json())

    async def post_simulation(self, body: bytes) -> web.Response:
        """Apply a change of simulation settings."""
        try:
            changes = parse_object(body, self._json_limits)
        except EcrError:
            return _refuse("body must be a JSON object of settings")
        try:
            settings = self._simulator.update(changes)
        except ValueError as error:
            return _refuse(str(error))
        return web.json_response(settings.to_json())


def _refuse(problem: str) -> web.Response:
    return web.json_response({"error": problem}, status=HTTPStatus.BAD_REQUEST)
