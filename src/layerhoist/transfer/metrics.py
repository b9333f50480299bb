"""Request metrics: counts, errors and latency percentiles per operation, in bounded memory.

Latencies go into logarithmic buckets (``BUCKETS_PER_DOUBLING`` per factor of two),
so a run of a million requests costs the same memory as a run of ten, and a
percentile is exact to within one bucket (about 4 %).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

#: Resolution of the latency histogram: buckets per doubling of latency.
BUCKETS_PER_DOUBLING = 16
#: Latencies below this are counted in the lowest bucket (1 microsecond).
MIN_LATENCY = 1e-6
#: The percentiles reported per operation.
PERCENTILES = (50.0, 95.0, 99.0)


@dataclass
class _Operation:
    count: int = 0
    errors: int = 0
    seconds: float = 0.0
    buckets: Counter[int] = field(default_factory=Counter)


class RequestMetrics:
    """Counts and latency histograms of the requests made, by operation."""

    def __init__(self) -> None:
        self._operations: dict[str, _Operation] = {}

    def record(self, operation: str, seconds: float, *, ok: bool) -> None:
        """Count one request of ``operation`` that took ``seconds``."""
        entry = self._operations.setdefault(operation, _Operation())
        entry.count += 1
        entry.errors += not ok
        entry.seconds += seconds
        entry.buckets[_bucket(seconds)] += 1

    def percentile(self, operation: str, percent: float) -> float | None:
        """The latency under which ``percent`` % of ``operation``'s requests finished."""
        entry = self._operations.get(operation)
        if entry is None or entry.count == 0:
            return None
        rank = math.ceil(entry.count * percent / 100.0)
        seen = 0
        for bucket in sorted(entry.buckets):
            seen += entry.buckets[bucket]
            if seen >= rank:
                return _upper_bound(bucket)
        return _upper_bound(max(entry.buckets))

    def to_json(self) -> dict[str, dict[str, float | int | None]]:
        """Per operation: requests, errors, total seconds and the :data:`PERCENTILES`."""
        report: dict[str, dict[str, float | int | None]] = {}
        for operation, entry in sorted(self._operations.items()):
            row: dict[str, float | int | None] = {
                "requests": entry.count,
                "errors": entry.errors,
                "seconds": round(entry.seconds, 6),
            }
            for percent in PERCENTILES:
                value = self.percentile(operation, percent)
                row[f"p{percent:g}"] = None if value is None else round(value, 6)
            report[operation] = row
        return report


def _bucket(seconds: float) -> int:
    return math.floor(math.log2(max(seconds, MIN_LATENCY)) * BUCKETS_PER_DOUBLING)


def _upper_bound(bucket: int) -> float:
    return float(2 ** ((bucket + 1) / BUCKETS_PER_DOUBLING))
