from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskGroup

from layerhoist.transfer.budget import ByteBudget, Lease

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


async def acquire_now(budget: ByteBudget, nbytes: int) -> Lease:
    """Acquire without waiting: a request that has to queue fails the test at once."""
    with anyio.move_on_after(0) as scope:
        return await budget.acquire(nbytes)
    assert not scope.cancelled_caught
    raise AssertionError(f"acquire({nbytes}) had to wait with {budget.in_use} in use")


async def blocked(budget: ByteBudget, nbytes: int, tg: TaskGroup, granted: list[int]) -> None:
    """Start a waiter for ``nbytes`` that records its grant, and let it block."""

    async def waiter() -> None:
        await budget.acquire(nbytes)
        granted.append(nbytes)

    tg.start_soon(waiter)
    await anyio.wait_all_tasks_blocked()


@pytest.mark.parametrize("total", [0, -5])
def test_a_budget_must_be_positive(total: int) -> None:
    with pytest.raises(ValueError, match=f"budget must be positive, got {total}"):
        ByteBudget(total)


async def test_a_one_byte_budget_holds_one_byte() -> None:
    budget = ByteBudget(1)
    assert (budget.in_use, budget.peak) == (0, 0)
    lease = await acquire_now(budget, 1)
    assert (lease.nbytes, budget.in_use, budget.peak) == (1, 1, 1)


async def test_concurrent_leases_add_up_and_the_peak_keeps_their_sum() -> None:
    budget = ByteBudget(100)
    a = await acquire_now(budget, 30)
    b = await acquire_now(budget, 50)
    assert (budget.in_use, budget.peak) == (80, 80)
    a.release()
    assert (budget.in_use, budget.peak) == (50, 80)
    c = await acquire_now(budget, 50)  # fills the budget exactly
    assert (budget.in_use, budget.peak) == (100, 100)
    b.release()
    c.release()
    assert (budget.in_use, budget.peak) == (0, 100)


async def test_a_waiter_that_still_does_not_fit_keeps_waiting() -> None:
    budget = ByteBudget(100)
    a = await acquire_now(budget, 70)
    b = await acquire_now(budget, 20)
    granted: list[int] = []
    async with anyio.create_task_group() as tg:
        await blocked(budget, 40, tg, granted)
        b.release()  # 70 + 40 > 100
        await anyio.wait_all_tasks_blocked()
        assert (granted, budget.in_use) == ([], 70)
        a.release()
    assert (granted, budget.in_use, budget.peak) == ([40], 40, 90)


async def test_a_release_grants_every_queued_waiter_that_fits_exactly() -> None:
    budget = ByteBudget(100)
    held = await acquire_now(budget, 100)
    granted: list[int] = []
    async with anyio.create_task_group() as tg:
        await blocked(budget, 60, tg, granted)
        await blocked(budget, 40, tg, granted)
        await blocked(budget, 1, tg, granted)
        held.release()
        await anyio.wait_all_tasks_blocked()
        assert (granted, budget.in_use) == ([60, 40], 100)
        tg.cancel_scope.cancel()
    assert budget.in_use == 100  # the 60 and 40 leases are still held; the 1 never was


async def test_a_small_request_queues_behind_a_large_waiter() -> None:
    """First come, first served: a request that would fit does not overtake a queued one."""
    budget = ByteBudget(100)
    held = await acquire_now(budget, 60)
    granted: list[int] = []
    async with anyio.create_task_group() as tg:
        await blocked(budget, 50, tg, granted)
        await blocked(budget, 10, tg, granted)  # 60 + 10 fits, but the 50 came first
        assert (granted, budget.in_use) == ([], 60)
        held.release()
    assert (granted, budget.in_use) == ([50, 10], 60)


async def test_a_cancelled_waiter_leaves_the_held_bytes_alone() -> None:
    budget = ByteBudget(10)
    held = await acquire_now(budget, 10)
    with anyio.move_on_after(0):
        await budget.acquire(5)
    assert budget.in_use == 10
    held.release()
    assert budget.in_use == 0
    await acquire_now(budget, 10)  # the cancelled request left no one queued ahead


async def test_bytes_granted_to_a_waiter_being_cancelled_go_straight_back() -> None:
    budget = ByteBudget(10)
    held = await acquire_now(budget, 10)
    outcome: list[str] = []
    scope = anyio.CancelScope()

    async def waiter() -> None:
        with scope:
            await budget.acquire(10)
            outcome.append("granted")
        outcome.append("cancelled" if scope.cancelled_caught else "done")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()  # the waiter is cancelled, and before it runs again…
        held.release()  # …its turn comes: the 10 bytes are charged to it
        assert budget.in_use == 10
    assert outcome == ["cancelled"]
    assert budget.in_use == 0
    await acquire_now(budget, 10)
