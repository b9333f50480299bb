"""Test doubles that stand in for time, shared by the scheduler and pacing tests."""

from __future__ import annotations

import anyio.lowlevel


class FakeClock:
    """A clock that only moves when someone sleeps on it; every sleep is recorded.

    A sleep of ``d`` started at ``t`` moves the clock to ``t + d`` (never backwards), so
    several tasks sleeping toward the same instant move it there once.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        target = self.now + delay
        await anyio.lowlevel.checkpoint()
        self.now = max(self.now, target)


class FakeTime:
    """A clock that moves only when something sleeps on it (by exactly that long) or the
    test sets ``now``; every sleep is recorded. Starts away from zero, like a real clock.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()
