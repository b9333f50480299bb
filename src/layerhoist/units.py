"""Sizes and durations: the unit constants, the one grammar of each that users type, and
sizes for people.

``parse_size`` is the only parser of sizes in the package (the CLI, the bench and the embedded
registry all use it): ``10MiB``, ``5MB``, ``5M``, ``1.5GiB`` or a bare number of bytes. Decimal
prefixes (``k M G``) are powers of 1000, binary ones (``Ki Mi Gi``) powers of 1024, and the
trailing ``B`` is optional, as in ``curl --limit-rate``.
"""

from __future__ import annotations

import math
import re

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
#: Decimal megabyte: throughput is reported in MB/s, as network rates are.
MB = 1000**2

_SIZE_PATTERN = re.compile(r"\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[A-Za-z]*)\s*")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "ki": KiB,
    "kib": KiB,
    "m": 1000**2,
    "mb": 1000**2,
    "mi": MiB,
    "mib": MiB,
    "g": 1000**3,
    "gb": 1000**3,
    "gi": GiB,
    "gib": GiB,
}
_HUMAN_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_DURATION_PATTERN = re.compile(r"\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|m|h|)\s*")
_DURATION_UNITS = {"ms": 0.001, "": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_size(text: str) -> int:
    """``'10MiB'`` -> 10485760, ``'5MB'`` -> 5000000, ``'4096'`` -> 4096; ValueError otherwise."""
    match = _SIZE_PATTERN.fullmatch(text)
    unit = match["unit"].lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 5MiB, 10MB or 4096)")
    value = float(match["number"]) * _SIZE_UNITS[unit]
    if not math.isfinite(value):
        raise ValueError(f"not a size: {text!r} (too large)")
    return int(value)


def format_bytes(count: float) -> str:
    """``1536`` -> ``'1.5 KiB'``: sizes for people."""
    value = float(count)
    for unit in _HUMAN_UNITS[:-1]:
        if abs(value) < KiB:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= KiB
    return f"{value:.1f} {_HUMAN_UNITS[-1]}"


def parse_duration(text: str) -> float:
    """``'2m'`` -> 120.0, ``'90s'`` -> 90.0, ``'1.5h'``, ``'250ms'``, ``'30'`` (seconds)."""
    match = _DURATION_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 2m, 1h or 250ms)")
    return float(match["number"]) * _DURATION_UNITS[match["unit"]]
