"""The requeue scheduler: blobs whose upload failed wait out their backoff here.

Workers iterate a :class:`Scheduler` for the next ready blob; one that failed in a way a fresh
upload may fix is given back with :meth:`Scheduler.requeue` and comes out again after its
backoff, while the workers serve other blobs. Attempts per blob and the run-wide
:class:`~layerhoist.transfer.retry.RetryBudget` bound how often.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio

from layerhoist.transfer.retry import Backoff, RetryBudget, RetryEvent

T = TypeVar("T")


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
        retry_for: float = 0.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self._backoff = backoff
        self._max_attempts = max_attempts
        if retry_for < 0:
            raise ValueError(f"retry_for must be >= 0, got {retry_for}")
        self._retry_for = retry_for
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
        self._first_failure: dict[str, float] = {}
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
        ``max_attempts`` and ``retry_for`` seconds have passed since its first failure, or
        the budget is spent: the caller then fails the item and calls :meth:`finish`.
        """
        attempt = self._attempts.get(key)
        if attempt is None or key in self._queued:
            raise ValueError(f"{key} is not being worked on")
        now = self._clock()
        first_failure = self._first_failure.setdefault(key, now)
        out_of_time = now - first_failure >= self._retry_for
        if (attempt >= self._max_attempts and out_of_time) or not self._budget.try_spend():
            return None
        delay = self._backoff.wait(attempt, self._rng, retry_after=retry_after)
        event = RetryEvent(
            key, "layer", attempt, cause, message, delay, now, elapsed=now - first_failure
        )
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
        self._first_failure.pop(key, None)
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
