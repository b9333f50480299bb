"""The admin endpoint: counters, and the simulation knobs changed while the registry runs.

::

    GET  /_layerhoist/stats        the counters of :meth:`EmbeddedRegistry.stats`
    GET  /_layerhoist/simulation   the simulation settings in force
    POST /_layerhoist/simulation   a JSON object of settings to change; answers the new ones
                                   (400 ``{"error": ...}`` and nothing changed when invalid)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus

from aiohttp import web

from layerhoist.registry.simulation import Simulator

STATS_PATH = "/_layerhoist/stats"
SIMULATION_PATH = "/_layerhoist/simulation"


class AdminApi:
    """Handlers of the ``/_layerhoist/`` routes."""

    def __init__(self, *, simulator: Simulator, stats: Callable[[], dict[str, object]]) -> None:
        self._simulator = simulator
        self._stats = stats

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register the admin endpoint on ``router``."""
        router.add_get(STATS_PATH, self.get_stats)
        router.add_get(SIMULATION_PATH, self.get_simulation)
        router.add_post(SIMULATION_PATH, self.post_simulation)

    async def get_stats(self, request: web.Request) -> web.Response:
        """The registry's counters."""
        return web.json_response(self._stats())

    async def get_simulation(self, request: web.Request) -> web.Response:
        """The simulation settings in force."""
        return web.json_response(self._simulator.settings.to_json())

    async def post_simulation(self, request: web.Request) -> web.Response:
        """Apply a change of simulation settings."""
        try:
            changes = json.loads(await request.read())
        except ValueError:
            return _refuse("body is not valid JSON")
        if not isinstance(changes, dict):
            return _refuse("body must be a JSON object of settings")
        try:
            settings = self._simulator.update(changes)
        except ValueError as error:
            return _refuse(str(error))
        return web.json_response(settings.to_json())


def _refuse(problem: str) -> web.Response:
    return web.json_response({"error": problem}, status=HTTPStatus.BAD_REQUEST)
