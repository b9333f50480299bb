"""Network and fault simulation for the embedded registry.

The registry consults one :class:`Simulator` per server for every request:

* :meth:`Simulator.latency` sleeps the configured latency;
* :meth:`Simulator.throttled` answers from a token bucket per operation (rate ``r``
  requests/second, burst ``max(1, r)``), so a client that exceeds a published quota gets
  ``ThrottlingException`` exactly as often as the quota says;
* :meth:`Simulator.decide_fault` draws a transient error or a dropped connection;
* :meth:`Simulator.corrupt` may flip one byte of a received part;
* :meth:`Simulator.connection_bandwidth` paces the bytes of one HTTP connection.

Every random decision comes from ``random.Random`` streams derived from one seed: one stream
per operation for faults and one for corruption. The ``n``-th decision of a stream therefore
depends only on the seed and ``n``, never on how requests of other operations interleave or on
the configured rates: with the same seed, raising a rate only adds faults.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import anyio

__all__ = [
    "QUOTA_PROFILES",
    "ConnectionBandwidth",
    "FaultDecision",
    "SimulationSettings",
    "Simulator",
    "parse_rate",
]

#: What :meth:`Simulator.decide_fault` tells the server to do with a request.
FaultDecision = Literal["none", "error", "drop"]

_MS_PER_SECOND = 1000.0
_BITS_PER_BYTE = 8
#: Bytes drawn from the OS to seed the simulator when no seed is configured.
_SEED_BYTES = 8
#: Slack for float rounding in the token bucket (rate * elapsed seldom sums to exactly 1).
_TOKEN_EPSILON = 1e-9
#: XOR mask of a corrupted byte: every bit flips, so the byte always changes.
_CORRUPT_MASK = 0xFF

#: Published default request-rate quotas (requests/second) per operation, from the ECR and
#: ECR Public service-quota pages. For ECR Public InitiateLayerUpload one copy of the docs says
#: 10 and another 200: the stricter value is used.
QUOTA_PROFILES: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "ecr-public": MappingProxyType(
            {
                "BatchCheckLayerAvailability": 200.0,
                "InitiateLayerUpload": 10.0,
                "UploadLayerPart": 260.0,
                "CompleteLayerUpload": 10.0,
                "PutImage": 10.0,
                "GetAuthorizationToken": 200.0,
            }
        ),
        "ecr": MappingProxyType(
            {
                "BatchCheckLayerAvailability": 1000.0,
                "InitiateLayerUpload": 100.0,
                "UploadLayerPart": 500.0,
                "CompleteLayerUpload": 100.0,
                "PutImage": 10.0,
                "GetAuthorizationToken": 500.0,
            }
        ),
    }
)

#: Bounds of the knobs, so that no setting can make the registry sleep for ever or hold
#: state without end. Latency above a minute tests a client's patience, not its code.
MAX_LATENCY_MS = 60_000.0
#: A slow link is a fair simulation, a rate of next to nothing (1e-300) a connection stalled
#: for ever; the fastest rate is a sanity cap only.
MIN_BANDWIDTH = 10.0
MAX_BANDWIDTH = 1e12
#: One request every 100 s up to a million per second, for at most this many operations
#: (both APIs together have fewer).
MIN_QUOTA = 0.01
MAX_QUOTA = 1e6
MAX_QUOTAS = 64
#: An upload id lives a week at most, idle.
MAX_UPLOAD_EXPIRY = 7 * 24 * 3600.0
#: Seeds are unsigned 64-bit numbers.
MAX_SEED = 2**64 - 1

_DECIMAL_PREFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BINARY_PREFIXES = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
#: The units that count bits; every other unit the pattern accepts counts bytes.
_BIT_UNITS = frozenset({"b", "bit", "bits", "Bit", "Bits"})
_RATE_PATTERN = re.compile(
    r"""
    \s*
    (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    \s*
    (?P<prefix>[kKmMgGtT][iI]?)?
    (?P<unit>[bB]ytes?|[bB]its?|[bB])?
    (?P<per>/s|/sec|ps)?
    \s*
    """,
    re.VERBOSE,
)


def parse_rate(text: str) -> float:
    """Parse a transfer rate such as ``25MB/s`` or ``200Mbit/s`` into bytes per second.

    The form is ``NUMBER [PREFIX][UNIT][/s | /sec | ps]``:

    * prefixes ``k M G T`` are decimal (``MB`` = 10**6 bytes), ``Ki Mi Gi Ti`` binary
      (``MiB`` = 2**20 bytes); the prefix letter may be written in either case;
    * an upper-case ``B`` (or ``byte``/``bytes``) is a byte, a lower-case ``b`` (or
      ``bit``/``bits``) a bit, as in ``MBps`` against ``Mbps``;
    * a number with only a prefix (``25M``) counts bytes, as ``curl --limit-rate`` does;
      a bare number is bytes per second.

    Raises ``ValueError`` for anything else and for rates that are not positive and finite.
    """
    match = _RATE_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(f"not a transfer rate: {text!r} (try 25MB/s, 200Mbit/s or 1GiB/s)")
    prefix = (match["prefix"] or "").lower()
    unit = match["unit"]
    if match["per"] == "ps" and unit is None:
        raise ValueError(f"not a transfer rate: {text!r} (a unit must precede 'ps')")
    multiplier = _BINARY_PREFIXES.get(prefix) or _DECIMAL_PREFIXES[prefix]
    value = float(match["number"]) * multiplier
    if unit in _BIT_UNITS:
        value /= _BITS_PER_BYTE
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"transfer rate must be positive and finite: {text!r}")
    return value


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def _check_positive(name: str, value: object) -> None:
    if _finite(name, value) <= 0:
        raise ValueError(f"{name} must be > 0, not {value!r}")


def _check_within(name: str, value: object, low: float, high: float) -> None:
    if not low <= _finite(name, value) <= high:
        raise ValueError(f"{name} must be within [{low:g}, {high:g}], not {value!r}")


def _check_probability(name: str, value: object) -> None:
    if not 0.0 <= _finite(name, value) <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], not {value!r}")


@dataclass(frozen=True, kw_only=True)
class SimulationSettings:
    """What the simulator does to requests; the defaults simulate nothing.

    Construction validates every field and raises ``ValueError`` on a bad value.
    """

    #: Milliseconds added to each request.
    latency_ms: float = 0.0
    #: Bytes per second per connection; ``None`` is unlimited.
    bandwidth: float | None = None
    #: Requests per second allowed per operation name (e.g. ``"UploadLayerPart"``); operations
    #: not listed are unlimited. Stored as a plain ``dict`` of floats.
    quotas: Mapping[str, float] = field(default_factory=dict, hash=False)
    #: Probability that a request fails with a transient ServerException (HTTP 500).
    fault_rate: float = 0.0
    #: Probability that a request's connection is dropped without a response.
    drop_rate: float = 0.0
    #: Probability that one byte of an UploadLayerPart is flipped before it is stored.
    corrupt_rate: float = 0.0
    #: Seconds of inactivity after which an upload id is forgotten; ``None`` keeps them.
    upload_expiry: float | None = None
    #: Seed of every random decision; ``None`` draws one from the OS.
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_within("latency_ms", self.latency_ms, 0.0, MAX_LATENCY_MS)
        if self.bandwidth is not None:
            _check_within("bandwidth", self.bandwidth, MIN_BANDWIDTH, MAX_BANDWIDTH)
        # ValueError, not TypeError, for wrong types too: update() maps JSON values here and
        # promises one exception type for every bad value.
        if not isinstance(self.quotas, Mapping):
            raise ValueError(  # noqa: TRY004
                f"quotas must be a mapping of operation to rate, not {self.quotas!r}"
            )
        if len(self.quotas) > MAX_QUOTAS:
            raise ValueError(f"quotas may name at most {MAX_QUOTAS} operations")
        for operation, rate in self.quotas.items():
            if not isinstance(operation, str) or not operation:
                raise ValueError(f"quota operation names must be non-empty strings: {operation!r}")
            _check_within(f"quota of {operation}", rate, MIN_QUOTA, MAX_QUOTA)
        for name in ("fault_rate", "drop_rate", "corrupt_rate"):
            _check_probability(name, getattr(self, name))
        if self.fault_rate + self.drop_rate > 1.0:
            raise ValueError("fault_rate + drop_rate must not exceed 1")
        if self.upload_expiry is not None:
            _check_positive("upload_expiry", self.upload_expiry)
            _check_within("upload_expiry", self.upload_expiry, 0.0, MAX_UPLOAD_EXPIRY)
        if self.seed is not None and (
            not isinstance(self.seed, int)
            or isinstance(self.seed, bool)
            or not 0 <= self.seed <= MAX_SEED
        ):
            raise ValueError(f"seed must be an integer within [0, {MAX_SEED}], not {self.seed!r}")
        # A private copy: a caller mutating its mapping later must not change frozen settings.
        object.__setattr__(self, "quotas", {op: float(rate) for op, rate in self.quotas.items()})

    def to_json(self) -> dict[str, object]:
        """Return the settings as JSON-ready values (the form :meth:`Simulator.update` takes)."""
        return {
            "latency_ms": self.latency_ms,
            "bandwidth": self.bandwidth,
            "quotas": dict(self.quotas),
            "fault_rate": self.fault_rate,
            "drop_rate": self.drop_rate,
            "corrupt_rate": self.corrupt_rate,
            "upload_expiry": self.upload_expiry,
            "seed": self.seed,
        }


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(SimulationSettings))


def _quotas_from_json(value: object) -> Mapping[str, float]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            return QUOTA_PROFILES[value]
        except KeyError:
            known = ", ".join(sorted(QUOTA_PROFILES))
            raise ValueError(f"unknown quota profile {value!r} (known: {known})") from None
    if isinstance(value, Mapping):
        return value
    raise ValueError(f"quotas must be a profile name, a mapping or null, not {value!r}")


def _bandwidth_from_json(value: object) -> object:
    return parse_rate(value) if isinstance(value, str) else value


#: Converters from the JSON form of a field to the value the dataclass validates.
_FROM_JSON: Mapping[str, Callable[[object], object]] = {
    "quotas": _quotas_from_json,
    "bandwidth": _bandwidth_from_json,
}


class _TokenBucket:
    """``rate`` tokens per second up to ``max(1, rate)``; a request takes one token."""

    def __init__(self, rate: float, now: float) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._updated = now

    def take(self, now: float) -> bool:
        """Take a token if one is available at time ``now``."""
        if now > self._updated:
            self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
        if self._tokens >= 1.0 - _TOKEN_EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False


class ConnectionBandwidth:
    """Paces the bytes of one connection so they never exceed the configured bandwidth.

    Each call reserves ``nbytes / rate`` seconds of the connection's time after whatever it
    already reserved, and sleeps until that reservation ends. An idle connection earns no
    credit, so a burst after a pause is paced like any other bytes.
    """

    def __init__(
        self,
        *,
        rate: Callable[[], float | None],
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        """Pace at ``rate()`` bytes/second (read at every call; ``None`` is unlimited)."""
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._free_at = clock()

    async def consume(self, nbytes: int) -> None:
        """Account for ``nbytes`` moved on this connection, sleeping to keep within the rate."""
        if nbytes < 0:
            raise ValueError(f"nbytes must not be negative: {nbytes}")
        rate = self._rate()
        now = self._clock()
        if rate is None:
            self._free_at = now
            return
        self._free_at = max(now, self._free_at) + nbytes / rate
        delay = self._free_at - now
        if delay > 0:
            await self._sleep(delay)


class Simulator:
    """The live simulation state of one registry: settings, token buckets and random streams."""

    def __init__(
        self,
        settings: SimulationSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        """Simulate ``settings``; ``clock`` and ``sleep`` decide time (inject them in tests)."""
        self._settings = settings
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, _TokenBucket] = {}
        self._reseed(settings.seed)

    @property
    def settings(self) -> SimulationSettings:
        """The settings in force."""
        return self._settings

    @property
    def effective_seed(self) -> int:
        """The seed the random streams were derived from (drawn from the OS if none was set)."""
        return self._seed

    def _reseed(self, seed: int | None) -> None:
        self._seed = seed if seed is not None else int.from_bytes(os.urandom(_SEED_BYTES), "big")
        self._fault_streams: dict[str, random.Random] = {}
        self._corrupt_stream = random.Random(f"{self._seed}:corrupt")

    def update(self, changes: Mapping[str, object]) -> SimulationSettings:
        """Validate and apply ``changes`` (field name -> JSON value); return the new settings.

        ``bandwidth`` may be a rate string (``"25MB/s"``); ``quotas`` may be a profile name from
        :data:`QUOTA_PROFILES`, a mapping, or ``null``/``{}`` to disable throttling. Changed
        quotas start with full buckets; a ``seed`` given restarts every random stream.
        Raises ``ValueError`` and changes nothing if any field or value is bad.
        """
        unknown = sorted(set(changes) - _FIELD_NAMES)
        if unknown:
            raise ValueError(f"unknown simulation settings: {', '.join(unknown)}")
        converted = {
            name: _FROM_JSON[name](value) if name in _FROM_JSON else value
            for name, value in changes.items()
        }
        settings = dataclasses.replace(self._settings, **converted)  # type: ignore[arg-type]
        if settings.quotas != self._settings.quotas:
            self._buckets.clear()
        if "seed" in changes:
            self._reseed(settings.seed)
        self._settings = settings
        return settings

    async def latency(self) -> None:
        """Sleep the configured per-request latency (no sleep at all when it is zero)."""
        latency_ms = self._settings.latency_ms
        if latency_ms > 0:
            await self._sleep(latency_ms / _MS_PER_SECOND)

    def throttled(self, operation: str) -> bool:
        """Return True when ``operation`` is over its quota and must get ThrottlingException."""
        rate = self._settings.quotas.get(operation)
        if rate is None:
            return False
        now = self._clock()
        bucket = self._buckets.get(operation)
        if bucket is None:
            bucket = self._buckets[operation] = _TokenBucket(rate, now)
        return not bucket.take(now)

    def decide_fault(self, operation: str) -> FaultDecision:
        """Draw the fate of one request of ``operation``: served, failed (500) or dropped."""
        stream = self._fault_streams.get(operation)
        if stream is None:
            stream = self._fault_streams[operation] = random.Random(
                f"{self._seed}:fault:{operation}"
            )
        draw = stream.random()
        settings = self._settings
        if draw < settings.fault_rate:
            return "error"
        if draw < settings.fault_rate + settings.drop_rate:
            return "drop"
        return "none"

    def corrupt(self, data: bytes) -> bytes:
        """Maybe flip every bit of one byte of ``data``; return ``data`` itself when not."""
        # Both draws happen on every call so the stream stays aligned whatever the rate.
        draw = self._corrupt_stream.random()
        position = self._corrupt_stream.random()
        if draw >= self._settings.corrupt_rate or not data:
            return data
        damaged = bytearray(data)
        damaged[int(position * len(data))] ^= _CORRUPT_MASK
        return bytes(damaged)

    def connection_bandwidth(self) -> ConnectionBandwidth:
        """Return the pacer of a new connection; it follows later changes to ``bandwidth``."""
        return ConnectionBandwidth(
            rate=lambda: self._settings.bandwidth, clock=self._clock, sleep=self._sleep
        )
