"""Retries in place: the backoff, the run-wide budget, and one request retried.

Two levels of retry share one run-wide :class:`RetryBudget`:

- :func:`retry_call` (here) retries one request (a part of an upload) in place while the
  classifier says ``RETRY_PART``, sleeping the backoff between attempts. When its attempts run
  out it raises :class:`RetriesExhausted`, which carries a ``REQUEUE_LAYER`` verdict.
- :class:`~layerhoist.transfer.requeue.Scheduler` hands blobs to a pool of workers; a worker that
  meets a ``REQUEUE_LAYER`` verdict gives the blob back, and it comes out again once its
  backoff delay has passed, while the workers serve other blobs.

Every retry, at either level, is a :class:`RetryEvent` record. Time, sleeping and randomness
are injected, so tests run on a fake clock and a seeded generator. This module imports no
transport: what is retryable is decided by the classifier it is given.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import anyio

from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.verdicts import Action, ClassifiedError, Verdict

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
    attempt; ``at`` the scheduler clock's time of the failure; ``elapsed`` how long the
    request (or the layer) has been failing, from its first failure to this one.
    """

    subject: str
    scope: Literal["part", "layer"]
    attempt: int
    cause: str
    message: str
    delay: float
    at: float
    elapsed: float = 0.0


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


BUDGET_HINT = "the run's retry budget is spent: run the push again once the destination recovers"


class RetriesExhausted(ClassifiedError):
    """Part retries ran out: raised by :func:`retry_call` from the last error.

    ``last`` is the last error's verdict (RETRY_PART), ``events`` the retries that were made,
    and ``reason`` says whether the per-call ``attempts`` or the run-wide retry budget ran out.
    Its own :attr:`verdict` is REQUEUE_LAYER for attempts (a fresh upload may succeed where
    the same upload kept failing) and FAIL for the budget (the run allows no more retries).
    """

    def __init__(
        self,
        last: Verdict,
        events: tuple[RetryEvent, ...],
        *,
        attempts: int,
        reason: Literal["attempts", "budget"],
    ) -> None:
        super().__init__(f"{last.code}: {last.message} (gave up after {attempts} attempts)")
        self.last = last
        self.events = events
        self.attempts = attempts
        self.reason = reason
        if reason == "budget":
            self.verdict = dataclasses.replace(
                last, action=Action.FAIL, hint=BUDGET_HINT, retry_after=None
            )
        else:
            self.verdict = dataclasses.replace(last, action=Action.REQUEUE_LAYER)


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
    retry_for: float = 0.0,
) -> R:
    """Await ``fn()`` and retry it in place while its errors classify as ``RETRY_PART``.

    Each retry spends one unit of ``budget``, is recorded as a ``scope="part"``
    :class:`RetryEvent` passed to ``on_retry``, and sleeps :meth:`Backoff.wait`.
    ``on_throttle`` is called for every throttled verdict (feed it to the pacer).

    The call gives up once it has made ``attempts`` calls *and* ``retry_for`` seconds have
    passed since its first failure: the time allowance rides out an outage (a registry
    restarting, a network cut) that fast failures would exhaust in seconds.

    Raises the original exception unchanged when its verdict is not ``RETRY_PART``, and
    :class:`RetriesExhausted` (from the last exception, carrying its
    verdict and the events of this call) when the attempts and the time allowance are used
    up or the budget is spent. ``fn`` must build a fresh request each call (a body stream is
    consumed by a send).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    if retry_for < 0:
        raise ValueError(f"retry_for must be >= 0, got {retry_for}")
    rng = rng if rng is not None else random.Random()
    events: list[RetryEvent] = []
    attempt = 1
    first_failure: float | None = None
    while True:
        try:
            return await fn()
        except Exception as exc:
            verdict = classify(exc)
            if verdict.action is not Action.RETRY_PART:
                raise
            if verdict.throttled and on_throttle is not None:
                on_throttle()
            now = clock()
            first_failure = now if first_failure is None else first_failure
            if attempt >= attempts and now - first_failure >= retry_for:
                raise RetriesExhausted(
                    verdict, tuple(events), attempts=attempt, reason="attempts"
                ) from exc
            if not budget.try_spend():
                raise RetriesExhausted(
                    verdict, tuple(events), attempts=attempt, reason="budget"
                ) from exc
            delay = backoff.wait(attempt, rng, retry_after=verdict.retry_after)
            event = RetryEvent(
                subject,
                "part",
                attempt,
                verdict.code,
                verdict.message,
                delay,
                now,
                elapsed=now - first_failure,
            )
            events.append(event)
            if on_retry is not None:
                on_retry(event)
        await sleep(delay)
        attempt += 1
