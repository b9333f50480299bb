"""A byte budget: how much layer data may be held in memory at once.

Parts are charged against the budget when they are read from the source and
released when their upload has been answered, which is what bounds peak memory
by the concurrency settings instead of by layer size or image count.
"""

from __future__ import annotations

from collections import deque

import anyio


class Lease:
    """Bytes held against a :class:`ByteBudget`; :meth:`release` is idempotent."""

    __slots__ = ("_budget", "nbytes")

    def __init__(self, budget: ByteBudget, nbytes: int) -> None:
        self._budget: ByteBudget | None = budget
        self.nbytes = nbytes

    def release(self) -> None:
        """Give the bytes back to the budget (once; later calls do nothing)."""
        budget, self._budget = self._budget, None
        if budget is not None:
            budget._give_back(self.nbytes)


class ByteBudget:
    """Counts bytes in flight; acquirers wait, first come first served, while it is spent.

    A request larger than the whole budget is charged as the whole budget, so a
    single oversized part waits for everything else to drain instead of deadlocking.
    """

    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError(f"budget must be positive, got {total}")
        self.total = total
        self._in_use = 0
        self._peak = 0
        self._waiters: deque[tuple[int, anyio.Event]] = deque()

    @property
    def in_use(self) -> int:
        """Bytes currently held."""
        return self._in_use

    @property
    def peak(self) -> int:
        """The most bytes ever held at once."""
        return self._peak

    async def acquire(self, nbytes: int) -> Lease:
        """Wait until ``nbytes`` fit in the budget (after earlier waiters), then hold them."""
        charge = min(nbytes, self.total)
        if not self._waiters and self._in_use + charge <= self.total:
            self._charge(charge)
            return Lease(self, charge)
        waiter = (charge, anyio.Event())
        self._waiters.append(waiter)
        try:
            await waiter[1].wait()
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            else:
                # Granted while being cancelled: hand the bytes straight back.
                self._give_back(charge)
            raise
        return Lease(self, charge)

    def _charge(self, nbytes: int) -> None:
        self._in_use += nbytes
        self._peak = max(self._peak, self._in_use)

    def _give_back(self, nbytes: int) -> None:
        self._in_use -= nbytes
        while self._waiters and self._in_use + self._waiters[0][0] <= self.total:
            charge, event = self._waiters.popleft()
            self._charge(charge)
            event.set()
