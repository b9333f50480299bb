"""The backoff scheduler: requeued layers wait here while other work goes on.

Two levels of retry share one run-wide :class:`RetryBudget`:

- :func:`retry_call` retries one request (a part of an upload) in place while
  :func:`layerhoist.classification.classify` says ``RETRY_PART``, sleeping the backoff between
  attempts. When its attempts run out it raises
  :class:`~layerhoist.classification.RetriesExhausted`, which classifies as ``REQUEUE_LAYER``.
- :class:`Scheduler` hands work items (layers) to a pool of workers; a worker that meets a
  ``REQUEUE_LAYER`` verdict gives the item back with :meth:`Scheduler.requeue`, and the item
  comes out again once its backoff delay has passed, while the workers serve other items.

Every retry, at either level, is a :class:`RetryEvent` record. Time, sleeping and randomness
are injected, so tests run on a fake clock and a seeded generator.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import anyio

from layerhoist.classification import Action, RetriesExhausted, Verdict
from layerhoist.config import PushConfig

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter.

    The delay before retry ``n`` (``n >= 1``: the first retry follows the first failure) is::

        uniform(0, min(maximum, initial * base ** (n - 1)))

    so the first retry waits up to ``initial`` and each later one up to ``base`` times longer,
    never more than ``maximum``. Full jitter spreads the retries of many clients that failed
    together (a throttling burst) instead of sending them back in lockstep.
    """

    initial: float
    base: float
    maximum: float

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0 or self.base < 1:
            raise ValueError("Backoff needs initial >= 0, maximum >= 0 and base >= 1")

    @classmethod
    def from_config(cls, config: PushConfig) -> Backoff:
        """The backoff the ``backoff_*`` settings of ``config`` describe."""
        return cls(
            initial=config.backoff_initial, base=config.backoff_base, maximum=config.backoff_max
        )

    def ceiling(self, retry: int) -> float:
        """The largest delay of retry ``retry``: ``min(maximum, initial * base**(retry-1))``."""
        if retry < 1:
            raise ValueError(f"retry counts from 1, got {retry}")
        try:
            return min(self.maximum, self.initial * self.base ** (retry - 1))
        except OverflowError:
            return self.maximum

    def delay(self, retry: int, rng: random.Random) -> float:
        """A delay for retry ``retry`` drawn uniformly from ``[0, ceiling(retry)]``."""
        return rng.uniform(0.0, self.ceiling(retry))

    def wait(self, retry: int, rng: random.Random, *, retry_after: float | None) -> float:
        """The delay to sleep: the jittered delay, or the server's ``Retry-After`` if longer.

        A ``Retry-After`` beyond ``maximum`` is clamped to it, so a misbehaving server cannot
        park an item for longer than the configured ceiling.
        """
        jittered = self.delay(retry, rng)
        if retry_after is None:
            return jittered
        return max(jittered, min(retry_after, self.maximum))


@dataclass(frozen=True)
class RetryEvent:
    """One retry: which subject, at which scope, after which failed attempt, why, how long.

    ``attempt`` is the 1-based attempt that failed; ``cause`` the error code of the verdict
    (``ThrottlingException``, ``ConnectionReset``…); ``delay`` the backoff before the next
    attempt; ``at`` the scheduler clock's time of the failure.
    """

    subject: str
    scope: Literal["part", "layer"]
    attempt: int
    cause: str
    message: str
    delay: float
    at: float


class RetryBudget:
    """A run-wide count of retries still allowed, shared by parts and layers."""

    def __init__(self, total: int) -> None:
        if total < 0:
            raise ValueError(f"retry budget must be >= 0, got {total}")
        self._total = total
        self._spent = 0

    def try_spend(self) -> bool:
        """Take one retry from the budget; ``False`` (and nothing taken) when it is spent."""
        if self._spent >= self._total:
            return False
        self._spent += 1
        return True

    @property
    def total(self) -> int:
        """Retries the budget started with."""
        return self._total

    @property
    def spent(self) -> int:
        """Retries taken so far."""
        return self._spent

    @property
    def remaining(self) -> int:
        """Retries still allowed."""
        return self._total - self._spent

    def __repr__(self) -> str:
        return f"RetryBudget(total={self._total}, spent={self._spent})"


class Scheduler(Generic[T]):
    """Work items keyed by name, handed out as they become ready; failed ones come back later.

    Iterate it (``async for key, item, attempt in scheduler``) from one or many worker tasks:
    each item is handed to exactly one of them, earliest ready first. An item is
    *outstanding* from :meth:`submit` until :meth:`finish`; iteration ends once :meth:`close`
    has been called and nothing is outstanding, so a worker keeps waiting while another may
    still requeue its item.

    A worker ends every item it received with either :meth:`finish` (done, or failed for
    good) or :meth:`requeue` (try again later). When :meth:`requeue` refuses (attempts or
    budget exhausted) it returns ``None`` and the item stays outstanding until the worker
    reports the failure and calls :meth:`finish`.
    """

    def __init__(
        self,
        *,
        backoff: Backoff,
        max_attempts: int,
        budget: RetryBudget,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self._backoff = backoff
        self._max_attempts = max_attempts
        self._budget = budget
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._on_retry = on_retry
        #: Every retry event so far: layer requeues and the part retries passed to :meth:`record`.
        self.events: list[RetryEvent] = []
        # Heap of (ready_at, seq, key, item, attempt); seq keeps equal times in FIFO order and
        # identifies the live entry of a key (finish() of a waiting key leaves a stale entry).
        self._heap: list[tuple[float, int, str, T, int]] = []
        self._queued: dict[str, int] = {}
        self._attempts: dict[str, int] = {}
        self._seq = itertools.count()
        self._closed = False
        self._changed = anyio.Event()

    @property
    def outstanding(self) -> int:
        """Items submitted and not finished (waiting, ready or being worked on)."""
        return len(self._attempts)

    @property
    def waiting(self) -> int:
        """Items queued and not yet handed to a worker."""
        return len(self._queued)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def submit(self, key: str, item: T) -> None:
        """Add new work under ``key`` (unique among outstanding items): attempt 1, ready now."""
        if self._closed:
            raise RuntimeError("submit() after close()")
        if key in self._attempts:
            raise ValueError(f"{key} is already outstanding")
        self._attempts[key] = 1
        self._push(key, item, attempt=1, ready_at=self._clock())

    def requeue(
        self,
        key: str,
        item: T,
        *,
        cause: str,
        message: str = "",
        retry_after: float | None = None,
    ) -> RetryEvent | None:
        """Give ``key`` back for its next attempt after a backoff; ``None`` if that is refused.

        The delay is :meth:`Backoff.wait` for this retry (the server's ``retry_after``
        honoured). Refused, and nothing spent or queued, when the item has used
        ``max_attempts`` or the budget is spent: the caller then fails the item and calls
        :meth:`finish`.
        """
        attempt = self._attempts.get(key)
        if attempt is None or key in self._queued:
            raise ValueError(f"{key} is not being worked on")
        if attempt >= self._max_attempts or not self._budget.try_spend():
            return None
        delay = self._backoff.wait(attempt, self._rng, retry_after=retry_after)
        now = self._clock()
        event = RetryEvent(key, "layer", attempt, cause, message, delay, now)
        self._attempts[key] = attempt + 1
        self.record(event)
        self._push(key, item, attempt=attempt + 1, ready_at=now + delay)
        return event

    def record(self, event: RetryEvent) -> None:
        """Add a retry made elsewhere (pass as ``on_retry`` to :func:`retry_call`)."""
        self.events.append(event)
        if self._on_retry is not None:
            self._on_retry(event)

    def finish(self, key: str) -> None:
        """End ``key`` (success or fatal failure); a no-op for a key that is not outstanding."""
        if self._attempts.pop(key, None) is None:
            return
        self._queued.pop(key, None)
        self._notify()

    def close(self) -> None:
        """No more submits will come: iteration ends once nothing is outstanding."""
        self._closed = True
        self._notify()

    def __aiter__(self) -> Scheduler[T]:
        return self

    async def __anext__(self) -> tuple[str, T, int]:
        """The next ready ``(key, item, attempt)``, waiting for delayed items or new work."""
        while True:
            self._drop_stale()
            now = self._clock()
            if self._heap and self._heap[0][0] <= now:
                _, _, key, item, attempt = heapq.heappop(self._heap)
                del self._queued[key]
                return key, item, attempt
            if self._closed and not self._attempts:
                raise StopAsyncIteration
            changed = self._changed
            if self._heap:
                await self._wait(changed, self._heap[0][0] - now)
            else:
                await changed.wait()

    def _push(self, key: str, item: T, *, attempt: int, ready_at: float) -> None:
        seq = next(self._seq)
        self._queued[key] = seq
        heapq.heappush(self._heap, (ready_at, seq, key, item, attempt))
        self._notify()

    def _drop_stale(self) -> None:
        while self._heap and self._queued.get(self._heap[0][2]) != self._heap[0][1]:
            heapq.heappop(self._heap)

    def _notify(self) -> None:
        # Every waiting consumer re-examines the queue; the first to run takes the item.
        self._changed.set()
        self._changed = anyio.Event()

    async def _wait(self, changed: anyio.Event, delay: float) -> None:
        """Return when ``changed`` is set or ``delay`` has passed on the injected sleep."""
        async with anyio.create_task_group() as tg:

            async def timer() -> None:
                await self._sleep(delay)
                tg.cancel_scope.cancel()

            tg.start_soon(timer)
            await changed.wait()
            tg.cancel_scope.cancel()


async def retry_call(
    fn: Callable[[], Awaitable[R]],
    *,
    subject: str,
    attempts: int,
    backoff: Backoff,
    budget: RetryBudget,
    classify: Callable[[BaseException], Verdict],
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
    on_throttle: Callable[[], None] | None = None,
) -> R:
    """Await ``fn()`` and retry it in place while its errors classify as ``RETRY_PART``.

    Each retry spends one unit of ``budget``, is recorded as a ``scope="part"``
    :class:`RetryEvent` passed to ``on_retry``, and sleeps :meth:`Backoff.wait`.
    ``on_throttle`` is called for every throttled verdict (feed it to the pacer).

    Raises the original exception unchanged when its verdict is not ``RETRY_PART``, and
    :class:`~layerhoist.classification.RetriesExhausted` (from the last exception, carrying its
    verdict and the events of this call) when ``attempts`` calls have failed or the budget is
    spent. ``fn`` must build a fresh request each call (a body stream is consumed by a send).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    rng = rng if rng is not None else random.Random()
    events: list[RetryEvent] = []
    attempt = 1
    while True:
        try:
            return await fn()
        except Exception as exc:
            verdict = classify(exc)
            if verdict.action is not Action.RETRY_PART:
                raise
            if verdict.throttled and on_throttle is not None:
                on_throttle()
            if attempt >= attempts:
                raise RetriesExhausted(
                    verdict, tuple(events), attempts=attempt, reason="attempts"
                ) from exc
            if not budget.try_spend():
                raise RetriesExhausted(
                    verdict, tuple(events), attempts=attempt, reason="budget"
                ) from exc
            delay = backoff.wait(attempt, rng, retry_after=verdict.retry_after)
            event = RetryEvent(
                subject, "part", attempt, verdict.code, verdict.message, delay, clock()
            )
            events.append(event)
            if on_retry is not None:
                on_retry(event)
        await sleep(delay)
        attempt += 1
