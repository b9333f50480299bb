"""Docker Hub's pull limit, as its ``ratelimit-*`` headers announce it on manifest GETs.

``ratelimit-limit: 100;w=21600`` and ``ratelimit-remaining: 76;w=21600``: pulls allowed and
left in a window of ``w`` seconds. HEAD requests do not count against it. Other registries send
no such headers, and the value stays ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_VALUE = re.compile(r"\s*(?P<count>[0-9]+)\s*(?:;\s*w\s*=\s*(?P<window>[0-9]+))?")


@dataclass(frozen=True)
class RateLimit:
    """Pulls left in the current window; ``limit`` and ``window`` (seconds) when announced."""

    remaining: int
    limit: int | None = None
    window: int | None = None


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    """The pull limit announced by ``headers``, or ``None`` when they announce none."""
    remaining = _parse(headers.get("ratelimit-remaining"))
    if remaining is None:
        return None
    limit = _parse(headers.get("ratelimit-limit"))
    return RateLimit(
        remaining=remaining[0],
        limit=limit[0] if limit is not None else None,
        window=remaining[1] if remaining[1] is not None else (limit[1] if limit else None),
    )


def _parse(value: str | None) -> tuple[int, int | None] | None:
    if value is None:
        return None
    match = _VALUE.match(value)
    if match is None:
        return None
    window = match["window"]
    return int(match["count"]), int(window) if window is not None else None
