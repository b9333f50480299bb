from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from layerhoist.transfer.budget import ByteBudget

pytestmark = pytest.mark.anyio


async def test_acquire_waits_until_bytes_are_released() -> None:
    budget = ByteBudget(100)
    first = await budget.acquire(60)
    order: list[str] = []

    async def second() -> None:
        lease = await budget.acquire(60)
        order.append("second granted")
        lease.release()

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        assert order == []
        assert budget.in_use == 60
        order.append("first released")
        first.release()
    assert order == ["first released", "second granted"]
    assert budget.in_use == 0
    assert budget.peak == 60


async def test_release_is_idempotent_and_oversized_requests_take_the_whole_budget() -> None:
    budget = ByteBudget(100)
    lease = await budget.acquire(250)
    assert lease.nbytes == 100
    lease.release()
    lease.release()
    assert budget.in_use == 0


async def test_waiters_are_served_in_order() -> None:
    budget = ByteBudget(10)
    held = await budget.acquire(10)
    granted: list[int] = []

    async def waiter(n: int) -> None:
        lease = await budget.acquire(10)
        granted.append(n)
        await anyio.lowlevel.checkpoint()
        lease.release()

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(waiter, n)
            await anyio.wait_all_tasks_blocked()
        held.release()
    assert granted == [0, 1, 2]


async def test_cancelled_waiter_does_not_leak_bytes() -> None:
    budget = ByteBudget(10)
    held = await budget.acquire(10)
    with anyio.move_on_after(0.01):
        await budget.acquire(5)
    held.release()
    assert budget.in_use == 0
    lease = await budget.acquire(10)
    assert budget.in_use == 10
    lease.release()
