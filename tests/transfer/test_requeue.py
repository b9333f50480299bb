"""The requeue scheduler: blobs handed to workers, given back, and out again after a backoff."""

from __future__ import annotations

import random
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from fakes import FakeClock, FakeTime
from layerhoist.transfer.requeue import Scheduler
from layerhoist.transfer.retry import Backoff, RetryBudget, RetryEvent

SEED = 1234
#: 1 s, 2 s, 4 s… up to 10 s.
PART_BACKOFF = Backoff(initial=1.0, base=2.0, maximum=10.0)
#: A backoff whose jitter is always 0: the delay is the Retry-After given, up to 60 s.
NO_JITTER = Backoff(initial=0.0, base=2.0, maximum=60.0)
#: Real-time guard so a lost wake-up fails the test instead of hanging the suite.
HANG_GUARD_SECONDS = 10.0


def make_scheduler(
    clock: FakeClock,
    *,
    backoff: Backoff | None = None,
    max_attempts: int = 3,
    budget: RetryBudget | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> Scheduler[str]:
    return Scheduler(
        backoff=backoff or PART_BACKOFF,
        max_attempts=max_attempts,
        budget=budget or RetryBudget(100),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(SEED),
        on_retry=on_retry,
    )


Seen = list[tuple[str, str, int, float]]


async def drain(scheduler: Scheduler[str], clock: FakeClock, seen: Seen | None = None) -> Seen:
    """Take every item until iteration ends, finishing each: ``(key, item, attempt, time)``."""
    seen = [] if seen is None else seen
    async for key, item, attempt in scheduler:
        seen.append((key, item, attempt, clock.now))
        scheduler.finish(key)
    return seen


@pytest.mark.anyio
async def test_submitted_items_come_out_in_order_and_iteration_ends() -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock)
    for key in "abc":
        scheduler.submit(key, f"item-{key}")
    scheduler.close()
    seen = await drain(scheduler, clock)
    assert seen == [("a", "item-a", 1, 0.0), ("b", "item-b", 1, 0.0), ("c", "item-c", 1, 0.0)]
    assert clock.sleeps == []


@pytest.mark.anyio
async def test_requeued_item_waits_its_backoff_while_other_work_goes_on() -> None:
    clock = FakeClock()
    events: list[RetryEvent] = []
    scheduler = make_scheduler(clock, on_retry=events.append)
    scheduler.submit("a", "A")
    scheduler.submit("b", "B")
    scheduler.close()
    seen: list[tuple[str, int, float]] = []
    async for key, item, attempt in scheduler:
        seen.append((key, attempt, clock.now))
        if key == "a" and attempt == 1:
            requeued = scheduler.requeue(key, item, cause="InvalidLayerException", message="bad")
            assert requeued is not None
        else:
            scheduler.finish(key)
    expected_delay = random.Random(SEED).uniform(0.0, 1.0)
    assert requeued == RetryEvent(
        "a", "layer", 1, "InvalidLayerException", "bad", expected_delay, 0
    )
    assert seen == [("a", 1, 0.0), ("b", 1, 0.0), ("a", 2, expected_delay)]
    assert events == scheduler.events == [requeued]


@pytest.mark.anyio
async def test_requeue_delays_grow_with_each_attempt() -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock, backoff=PART_BACKOFF)
    scheduler.submit("a", "A")
    scheduler.close()
    async for key, item, _ in scheduler:
        if scheduler.requeue(key, item, cause="InvalidLayerException") is None:
            scheduler.finish(key)
    rng = random.Random(SEED)
    expected = [rng.uniform(0.0, 1.0), rng.uniform(0.0, 2.0)]
    assert [event.delay for event in scheduler.events] == expected
    assert [event.attempt for event in scheduler.events] == [1, 2]
    assert clock.now == sum(expected)


@pytest.mark.anyio
async def test_requeue_is_refused_after_max_attempts_without_spending_budget() -> None:
    clock = FakeClock()
    budget = RetryBudget(10)
    scheduler = make_scheduler(clock, max_attempts=2, budget=budget)
    scheduler.submit("a", "A")
    scheduler.close()
    attempts = []
    refused = 0
    async for key, item, attempt in scheduler:
        attempts.append(attempt)
        if scheduler.requeue(key, item, cause="UploadNotFoundException") is None:
            refused += 1
            assert scheduler.outstanding == 1
            scheduler.finish(key)
    assert (attempts, refused, budget.spent) == ([1, 2], 1, 1)


@pytest.mark.anyio
async def test_requeue_is_refused_when_the_budget_is_spent() -> None:
    clock = FakeClock()
    budget = RetryBudget(1)
    scheduler = make_scheduler(clock, max_attempts=5, budget=budget)
    scheduler.submit("a", "A")
    scheduler.submit("b", "B")
    scheduler.close()
    outcomes: dict[str, list[bool]] = {"a": [], "b": []}
    async for key, item, _ in scheduler:
        event = scheduler.requeue(key, item, cause="InvalidLayerException")
        outcomes[key].append(event is not None)
        if event is None:
            scheduler.finish(key)
    assert outcomes == {"a": [True, False], "b": [False]}
    assert budget.remaining == 0


@pytest.mark.anyio
async def test_requeue_honours_retry_after() -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock, backoff=NO_JITTER)
    scheduler.submit("a", "A")
    scheduler.close()
    times = []
    async for key, item, attempt in scheduler:
        times.append(clock.now)
        if attempt == 1:
            scheduler.requeue(key, item, cause="ThrottlingException", retry_after=5.0)
        else:
            scheduler.finish(key)
    assert times == [0.0, 5.0]
    assert clock.sleeps == [5.0]


@pytest.mark.anyio
async def test_delayed_items_come_out_earliest_first() -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock, backoff=NO_JITTER)
    scheduler.submit("slow", "S")
    scheduler.submit("fast", "F")
    scheduler.close()
    order = []
    async for key, item, attempt in scheduler:
        order.append((key, attempt, clock.now))
        if attempt == 1:
            wait = 9.0 if key == "slow" else 2.0
            scheduler.requeue(key, item, cause="ThrottlingException", retry_after=wait)
        else:
            scheduler.finish(key)
    assert order == [("slow", 1, 0.0), ("fast", 1, 0.0), ("fast", 2, 2.0), ("slow", 2, 9.0)]


@pytest.mark.anyio
async def test_finishing_a_waiting_item_drops_it() -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock)
    scheduler.submit("a", "A")
    scheduler.submit("b", "B")
    scheduler.finish("a")
    scheduler.finish("a")
    scheduler.close()
    assert (scheduler.outstanding, scheduler.waiting) == (1, 1)
    assert await drain(scheduler, clock) == [("b", "B", 1, 0.0)]


@pytest.mark.anyio
async def test_a_finished_key_can_be_submitted_again() -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock)
    scheduler.submit("a", "first")
    scheduler.finish("a")
    scheduler.submit("a", "second")
    scheduler.close()
    assert await drain(scheduler, clock) == [("a", "second", 1, 0.0)]


def test_misuse_is_rejected() -> None:
    scheduler = make_scheduler(FakeClock())
    scheduler.submit("a", "A")
    with pytest.raises(ValueError, match="already outstanding"):
        scheduler.submit("a", "A")
    with pytest.raises(ValueError, match="not being worked on"):
        scheduler.requeue("a", "A", cause="x")
    with pytest.raises(ValueError, match="not being worked on"):
        scheduler.requeue("nope", "A", cause="x")
    scheduler.close()
    with pytest.raises(RuntimeError, match="after close"):
        scheduler.submit("b", "B")
    with pytest.raises(ValueError, match="max_attempts"):
        make_scheduler(FakeClock(), max_attempts=0)


@pytest.mark.anyio
async def test_submit_wakes_a_waiting_consumer() -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock)
    received: Seen = []
    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, scheduler, clock, received)
            await anyio.wait_all_tasks_blocked()
            assert received == []
            scheduler.submit("a", "A")
            await anyio.wait_all_tasks_blocked()
            assert received == [("a", "A", 1, 0.0)]
            scheduler.close()


@pytest.mark.anyio
async def test_finish_by_another_task_ends_a_waiting_consumer() -> None:
    scheduler = make_scheduler(FakeClock())
    scheduler.submit("a", "A")
    scheduler.close()
    taken: list[str] = []
    ended = anyio.Event()

    async def first() -> None:
        key, _, _ = await scheduler.__anext__()
        taken.append(key)

    async def second() -> None:
        async for key, _, _ in scheduler:
            taken.append(key)
        ended.set()

    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            assert not ended.is_set()
            scheduler.finish("a")
        assert ended.is_set()
        assert taken == ["a"]


@pytest.mark.anyio
async def test_requeue_wakes_a_consumer_waiting_for_new_work() -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock, backoff=NO_JITTER)
    scheduler.submit("a", "A")
    scheduler.close()
    key, item, _ = await scheduler.__anext__()
    seen: Seen = []
    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, scheduler, clock, seen)
            await anyio.wait_all_tasks_blocked()
            assert seen == []
            scheduler.requeue(key, item, cause="InvalidLayerException", retry_after=3.0)
        assert seen == [("a", "A", 2, 3.0)]


@pytest.mark.anyio
async def test_a_pool_of_workers_shares_the_items() -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock, max_attempts=2)
    keys = [f"layer-{n}" for n in range(12)]
    for key in keys:
        scheduler.submit(key, key.upper())
    scheduler.close()
    handed: list[tuple[str, int, int]] = []

    async def worker(number: int) -> None:
        async for key, item, attempt in scheduler:
            handed.append((key, attempt, number))
            await anyio.lowlevel.checkpoint()
            if scheduler.requeue(key, item, cause="InvalidLayerException") is None:
                scheduler.finish(key)

    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            for number in range(3):
                tg.start_soon(worker, number)
        assert sorted((key, attempt) for key, attempt, _ in handed) == sorted(
            [(key, 1) for key in keys] + [(key, 2) for key in keys]
        )
        assert {number for _, _, number in handed} == {0, 1, 2}
        assert len(scheduler.events) == len(keys)
        assert scheduler.outstanding == 0


@pytest.mark.anyio
async def test_a_cancelled_consumer_loses_no_item() -> None:
    clock = FakeClock()
    stuck = anyio.Event()

    async def sleep_until_cancelled(delay: float) -> None:
        clock.sleeps.append(delay)
        await stuck.wait()

    scheduler: Scheduler[str] = Scheduler(
        backoff=NO_JITTER,
        max_attempts=3,
        budget=RetryBudget(10),
        clock=clock,
        sleep=sleep_until_cancelled,
    )
    scheduler.submit("a", "A")
    key, item, _ = await scheduler.__anext__()
    scheduler.requeue(key, item, cause="InvalidLayerException", retry_after=5.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(scheduler.__anext__)
        await anyio.wait_all_tasks_blocked()
        assert clock.sleeps == [5.0]
        tg.cancel_scope.cancel()
    assert scheduler.waiting == 1
    clock.now = 5.0
    scheduler.close()
    assert await drain(scheduler, clock) == [("a", "A", 2, 5.0)]


@pytest.mark.anyio
async def test_record_adds_part_events_and_forwards_them() -> None:
    forwarded: list[RetryEvent] = []
    scheduler = make_scheduler(FakeClock(), on_retry=forwarded.append)
    event = RetryEvent("sha256:ab", "part", 1, "ConnectionReset", "reset", 0.1, 0.0)
    scheduler.record(event)
    assert scheduler.events == forwarded == [event]


@pytest.mark.anyio
async def test_requeue_goes_on_past_max_attempts_within_the_time_allowance() -> None:
    clock = FakeClock()
    scheduler = Scheduler[str](
        backoff=PART_BACKOFF,
        max_attempts=2,
        budget=RetryBudget(100),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(SEED),
        retry_for=25.0,
    )
    scheduler.submit("layer", "item")
    scheduler.close()
    attempts: list[int] = []
    with anyio.fail_after(HANG_GUARD_SECONDS):
        async for key, item, attempt in scheduler:
            attempts.append(attempt)
            if scheduler.requeue(key, item, cause="ConnectFailed") is None:
                scheduler.finish(key)
    # The allowance runs from the first failure; requeues stop once both it and the
    # attempts are used, and the last refused requeue came at or after 25 s.
    assert len(attempts) > 2
    assert attempts == list(range(1, len(attempts) + 1))
    assert clock.now >= 25.0
    elapsed = [event.elapsed for event in scheduler.events]
    assert elapsed[0] == 0.0 and elapsed == sorted(elapsed) and elapsed[-1] < 25.0


def allowance_scheduler(time: FakeTime, *, max_attempts: int, retry_for: float) -> Scheduler[str]:
    return Scheduler[str](
        backoff=NO_JITTER,
        max_attempts=max_attempts,
        budget=RetryBudget(100),
        clock=time.clock,
        sleep=time.sleep,
        rng=random.Random(SEED),
        retry_for=retry_for,
    )


@pytest.mark.anyio
async def test_the_time_allowance_runs_per_key_from_its_first_failure_on_any_clock() -> None:
    time = FakeTime()  # starts at 1000 s
    scheduler = allowance_scheduler(time, max_attempts=1, retry_for=5.0)
    scheduler.submit("a", "A")
    scheduler.submit("b", "B")
    assert (await anext(scheduler))[0] == "a"
    assert (await anext(scheduler))[0] == "b"
    first = scheduler.requeue("a", "A", cause="ConnectFailed")
    assert first is not None
    assert (first.at, first.elapsed, first.message) == (1000.0, 0.0, "")
    time.now = 1004.0
    # b fails for the first time: its allowance starts now, not at a's first failure.
    b = scheduler.requeue("b", "B", cause="ConnectFailed")
    assert b is not None
    assert b.elapsed == 0.0
    assert (await anext(scheduler))[:2] == ("a", "A")
    time.now = 1004.999
    again = scheduler.requeue("a", "A", cause="ConnectFailed")
    assert again is not None
    assert again.elapsed == pytest.approx(4.999)
    assert (await anext(scheduler))[0] in {"a", "b"}
    assert (await anext(scheduler))[0] in {"a", "b"}
    time.now = 1005.0
    assert scheduler.requeue("a", "A", cause="ConnectFailed") is None  # exactly 5 s in
    assert scheduler.requeue("b", "B", cause="ConnectFailed") is not None  # 1 s in
    assert [e.elapsed for e in scheduler.events] == pytest.approx([0.0, 0.0, 4.999, 1.0])


@pytest.mark.anyio
async def test_a_key_submitted_again_after_finish_starts_a_fresh_allowance() -> None:
    time = FakeTime()
    scheduler = allowance_scheduler(time, max_attempts=1, retry_for=5.0)
    scheduler.submit("a", "A")
    await anext(scheduler)
    assert scheduler.requeue("a", "A", cause="x") is not None
    scheduler.finish("a")
    time.now = 1010.0
    scheduler.submit("a", "A2")
    assert await anext(scheduler) == ("a", "A2", 1)
    event = scheduler.requeue("a", "A2", cause="x")
    assert event is not None
    assert (event.attempt, event.elapsed) == (1, 0.0)


@pytest.mark.anyio
async def test_one_attempt_and_no_allowance_means_no_requeue() -> None:
    time = FakeTime()
    budget = RetryBudget(5)
    scheduler = Scheduler[str](
        backoff=NO_JITTER, max_attempts=1, budget=budget, clock=time.clock, sleep=time.sleep
    )
    scheduler.submit("a", "A")
    await anext(scheduler)
    assert scheduler.requeue("a", "A", cause="x") is None
    assert (budget.spent, scheduler.events, scheduler.outstanding) == (0, [], 1)


@pytest.mark.anyio
async def test_an_empty_budget_refuses_the_first_requeue() -> None:
    time = FakeTime()
    scheduler = Scheduler[str](
        backoff=NO_JITTER, max_attempts=5, budget=RetryBudget(0), clock=time.clock, sleep=time.sleep
    )
    scheduler.submit("a", "A")
    await anext(scheduler)
    assert scheduler.requeue("a", "A", cause="x") is None


def test_bad_settings_and_misuse_name_the_values_given() -> None:
    with pytest.raises(ValueError, match=r"^max_attempts must be >= 1, got 0$"):
        make_scheduler(FakeClock(), max_attempts=0)
    with pytest.raises(ValueError, match=r"^retry_for must be >= 0, got -0.5$"):
        Scheduler[str](backoff=NO_JITTER, max_attempts=1, budget=RetryBudget(1), retry_for=-0.5)
    scheduler = make_scheduler(FakeClock())
    assert scheduler.closed is False
    scheduler.close()
    assert scheduler.closed is True
    with pytest.raises(RuntimeError, match=r"^submit\(\) after close\(\)$"):
        scheduler.submit("b", "B")
