"""Client-side pacing: stay under the destination's request-rate quotas instead of tripping them.

Three pieces:

- :class:`TokenBucket`: requests per second with a burst, fair (FIFO) among waiters.
- :class:`AIMDWindow`: adaptive concurrency (requests in flight) that halves when the service
  throttles and grows back by one per window of successes.
- :class:`Pacer`: one bucket and one window per API operation, seeded from a transport's
  published quotas (for ECR: :data:`layerhoist.destinations.ecr.limits.PUBLISHED_QUOTAS`)
  at :data:`DEFAULT_HEADROOM` of the quota, whose rate also backs off multiplicatively on
  throttling and recovers additively on success.

With CompleteLayerUpload and PutImage quotas at 10 requests/s, a push of many small layers is
bound by request rate rather than bandwidth; pacing keeps it at the rate that does not throttle.
Clock and sleep are injected so the tests run on a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

#: Fraction of a quota the pacer aims for: close enough that a run bound by request quotas
#: (a cold sync of many small images) gets nearly all of them, with a margin so that clock
#: skew between client and service and the service's accounting granularity do not turn a
#: full-rate client into a throttled one; a throttle that happens anyway halves the rate.
DEFAULT_HEADROOM = 0.95
#: A bucket holds this many seconds' worth of its rate as burst.
BURST_SECONDS = 1.0
#: Initial in-flight requests per operation; grows additively up to the maximum.
DEFAULT_WINDOW_INITIAL = 8
#: Ceiling of in-flight requests per operation (the HTTP connection pool's default size).
DEFAULT_WINDOW_MAX = 64
#: A throttle multiplies an operation's rate by this factor.
RATE_DECREASE = 0.5
#: Each success adds this fraction of the paced rate back, up to the paced rate.
RATE_RECOVERY_STEP = 0.02
#: An operation's rate never drops below this fraction of its paced rate.
MIN_RATE_FRACTION = 1 / 32
#: Throttles within this many seconds of a rate decrease are echoes of the same overload
#: (requests that were already on the wire) and do not lower the rate again.
RATE_DECREASE_COOLDOWN = 1.0

# Float refills can leave a bucket a hair short of a whole token after sleeping exactly the
# computed time; a shortfall this small counts as enough.
_TOKEN_EPSILON = 1e-9


class TokenBucket:
    """``rate`` tokens per second up to ``burst`` stored; :meth:`acquire` waits for its tokens.

    The bucket starts full, so ``burst`` requests pass at once and later ones at ``rate``
    per second. Waiters are served strictly in arrival order (a large request is not starved
    by small ones) and only the first sleeps, for exactly the time its tokens need.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError(f"rate and burst must be positive, got {rate=} {burst=}")
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._updated = clock()
        # anyio's Lock hands itself to waiters in FIFO order: that is the bucket's fairness.
        self._turn = anyio.Lock()

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        if value <= 0:
            raise ValueError(f"rate must be positive, got {value}")
        self._refill()
        self._rate = value

    @property
    def burst(self) -> float:
        """Most tokens the bucket holds."""
        return self._burst

    @property
    def available(self) -> float:
        """Tokens that could be taken right now."""
        self._refill()
        return self._tokens

    def drain(self) -> None:
        """Empty the bucket: the next requests are spaced at ``rate``, without a burst."""
        self._refill()
        self._tokens = 0.0

    async def acquire(self, tokens: float = 1.0) -> None:
        """Wait until ``tokens`` are available (after earlier waiters), then take them."""
        if not 0 < tokens <= self._burst:
            raise ValueError(f"tokens must be within (0, {self._burst}], got {tokens}")
        async with self._turn:
            while True:
                self._refill()
                missing = tokens - self._tokens
                if missing <= _TOKEN_EPSILON:
                    break
                await self._sleep(missing / self._rate)
            self._tokens = max(0.0, self._tokens - tokens)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now


class AIMDWindow:
    """Adaptive concurrency: at most :attr:`limit` requests inside :meth:`slot` at once.

    :meth:`on_success` adds ``increase`` to the window once per window's worth of successes
    (``limit`` successes), like TCP's congestion avoidance. :meth:`on_throttle` multiplies it
    by ``decrease``, but only once per window of in-flight requests: throttles reported
    before every request that was in flight at the last decrease has left its slot are echoes
    of the same overload and are ignored, so a burst of throttles halves the window once.
    The limit stays within ``[minimum, maximum]``.
    """

    def __init__(
        self,
        *,
        initial: int,
        minimum: int = 1,
        maximum: int,
        increase: float = 1.0,
        decrease: float = 0.5,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError(
                f"need 1 <= minimum <= initial <= maximum, got {minimum=}, {initial=}, {maximum=}"
            )
        if increase <= 0 or not 0 < decrease < 1:
            raise ValueError(f"need increase > 0 and 0 < decrease < 1, got {increase=} {decrease=}")
        self._minimum = minimum
        self._maximum = maximum
        self._increase = increase
        self._decrease = decrease
        self._window = float(initial)
        self._successes = 0
        self._echoes = 0
        self._limiter = anyio.CapacityLimiter(initial)

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return int(self._limiter.total_tokens)

    @property
    def in_flight(self) -> int:
        """Requests inside :meth:`slot` now."""
        return self._limiter.borrowed_tokens

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the window's places for the duration of one request."""
        # A fresh borrower per slot lets one task hold several slots (nested operations).
        borrower = object()
        await self._limiter.acquire_on_behalf_of(borrower)
        try:
            yield
        finally:
            self._limiter.release_on_behalf_of(borrower)
            self._echoes = max(0, self._echoes - 1)

    def on_success(self) -> None:
        """A request succeeded: grow the window by ``increase`` per ``limit`` successes."""
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self._set_window(self._window + self._increase)

    def on_throttle(self) -> None:
        """A request was throttled: shrink the window, once per window of in-flight requests."""
        if self._echoes > 0:
            return
        self._successes = 0
        self._echoes = self.in_flight
        self._set_window(self._window * self._decrease)

    def _set_window(self, window: float) -> None:
        self._window = min(float(self._maximum), max(float(self._minimum), window))
        self._limiter.total_tokens = int(self._window)


@dataclass(frozen=True)
class OperationStats:
    """What the pacer did for one operation: rates in requests/s, ``waited`` in seconds."""

    operation: str
    quota: float
    paced_rate: float
    rate: float
    window: int
    requests: int
    throttles: int
    waited: float


class _Lane:
    """The pacing state of one operation."""

    def __init__(
        self, *, quota: float, paced_rate: float, bucket: TokenBucket, window: AIMDWindow
    ) -> None:
        self.quota = quota
        self.paced_rate = paced_rate
        self.bucket = bucket
        self.window = window
        self.requests = 0
        self.throttles = 0
        self.waited = 0.0
        self.decreased_at: float | None = None


class Pacer:
    """Per-operation pacing at ``headroom`` of each quota, adapting when the service throttles.

    ``quotas`` maps operation name to requests/s (a transport's published quotas, or
    an empty mapping to pace nothing); an operation not listed is unpaced. Each paced
    operation gets a :class:`TokenBucket` at ``quota * headroom`` with ``BURST_SECONDS`` of
    burst, and an :class:`AIMDWindow` for :meth:`slot`.

    :meth:`throttled` halves the operation's rate (once per ``RATE_DECREASE_COOLDOWN``,
    never below ``MIN_RATE_FRACTION`` of the paced rate) and empties its bucket so the next
    requests are spaced out rather than sent as a burst; :meth:`succeeded` gives back
    ``RATE_RECOVERY_STEP`` of the paced rate per success, up to the paced rate.
    """

    def __init__(
        self,
        *,
        quotas: Mapping[str, float],
        headroom: float = DEFAULT_HEADROOM,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        window_initial: int = DEFAULT_WINDOW_INITIAL,
        window_max: int = DEFAULT_WINDOW_MAX,
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be within (0, 1], got {headroom}")
        self._clock = clock
        self._lanes: dict[str, _Lane] = {}
        for operation, quota in quotas.items():
            paced_rate = quota * headroom
            self._lanes[operation] = _Lane(
                quota=quota,
                paced_rate=paced_rate,
                bucket=TokenBucket(
                    rate=paced_rate,
                    burst=max(1.0, paced_rate * BURST_SECONDS),
                    clock=clock,
                    sleep=sleep,
                ),
                window=AIMDWindow(initial=window_initial, maximum=window_max),
            )

    async def acquire(self, operation: str) -> None:
        """Wait for ``operation``'s turn under its rate (returns at once if it is unpaced)."""
        lane = self._lanes.get(operation)
        if lane is None:
            return
        started = self._clock()
        await lane.bucket.acquire()
        lane.requests += 1
        lane.waited += self._clock() - started

    @asynccontextmanager
    async def slot(self, operation: str) -> AsyncIterator[None]:
        """Hold a place in ``operation``'s concurrency window, then :meth:`acquire` its turn."""
        lane = self._lanes.get(operation)
        if lane is None:
            yield
            return
        async with lane.window.slot():
            await self.acquire(operation)
            yield

    def throttled(self, operation: str) -> None:
        """The service throttled ``operation``: slow it down."""
        lane = self._lanes.get(operation)
        if lane is None:
            return
        lane.throttles += 1
        lane.window.on_throttle()
        now = self._clock()
        if lane.decreased_at is not None and now - lane.decreased_at < RATE_DECREASE_COOLDOWN:
            return
        lane.decreased_at = now
        floor = lane.paced_rate * MIN_RATE_FRACTION
        lane.bucket.rate = max(floor, lane.bucket.rate * RATE_DECREASE)
        lane.bucket.drain()

    def succeeded(self, operation: str) -> None:
        """``operation`` succeeded: recover part of its rate and window."""
        lane = self._lanes.get(operation)
        if lane is None:
            return
        lane.window.on_success()
        recovered = lane.bucket.rate + lane.paced_rate * RATE_RECOVERY_STEP
        lane.bucket.rate = min(lane.paced_rate, recovered)

    @property
    def stats(self) -> Mapping[str, OperationStats]:
        """Per paced operation: quota, paced and current rate, window, requests, throttles."""
        return {
            operation: OperationStats(
                operation=operation,
                quota=lane.quota,
                paced_rate=lane.paced_rate,
                rate=lane.bucket.rate,
                window=lane.window.limit,
                requests=lane.requests,
                throttles=lane.throttles,
                waited=lane.waited,
            )
            for operation, lane in self._lanes.items()
        }
