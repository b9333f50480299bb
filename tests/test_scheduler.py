"""The backoff scheduler and in-place part retries, on a fake clock and seeded randomness."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import anyio.lowlevel
import botocore.exceptions
import pytest
from botocore.config import Config

from fakes import FakeClock
from layerhoist.classification import Action, RetriesExhausted, classify
from layerhoist.config import PushConfig
from layerhoist.pacing import Pacer
from layerhoist.registry import EmbeddedRegistry
from layerhoist.registry.simulation import SimulationSettings
from layerhoist.scheduler import Backoff, RetryBudget, RetryEvent, Scheduler, retry_call

ClientFactory = Callable[..., AbstractAsyncContextManager[Any]]
RegistryFactory = Callable[..., EmbeddedRegistry]

SEED = 1234
#: The part backoff of the retry_call tests: 1 s, 2 s, 4 s… up to 10 s.
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


# --- Backoff ----------------------------------------------------------------------------


def test_backoff_ceiling_grows_exponentially_up_to_the_maximum() -> None:
    backoff = Backoff(initial=0.5, base=2.0, maximum=3.0)
    assert [backoff.ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_delay_is_full_jitter_under_the_ceiling() -> None:
    backoff = Backoff(initial=0.5, base=3.0, maximum=100.0)
    expected = random.Random(SEED)
    rng = random.Random(SEED)
    for retry in range(1, 6):
        assert backoff.delay(retry, rng) == expected.uniform(0.0, 0.5 * 3.0 ** (retry - 1))


def test_backoff_delays_spread_over_the_whole_range() -> None:
    backoff = Backoff(initial=1.0, base=2.0, maximum=8.0)
    rng = random.Random(SEED)
    delays = [backoff.delay(4, rng) for _ in range(1000)]
    assert 0.0 <= min(delays) < 0.5
    assert 7.5 < max(delays) <= 8.0


def test_backoff_survives_huge_retry_numbers() -> None:
    assert Backoff(initial=1.0, base=2.0, maximum=30.0).ceiling(100_000) == 30.0


def test_backoff_rejects_retry_zero_and_bad_parameters() -> None:
    with pytest.raises(ValueError, match="from 1"):
        Backoff(initial=1.0, base=2.0, maximum=3.0).ceiling(0)
    with pytest.raises(ValueError, match="base"):
        Backoff(initial=1.0, base=0.5, maximum=3.0)
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=-1.0, base=2.0, maximum=3.0)


def test_backoff_wait_honours_retry_after_within_the_maximum() -> None:
    backoff = Backoff(initial=0.0, base=2.0, maximum=10.0)
    rng = random.Random(SEED)
    assert backoff.wait(1, rng, retry_after=None) == 0.0
    assert backoff.wait(1, rng, retry_after=4.0) == 4.0
    assert backoff.wait(1, rng, retry_after=3600.0) == 10.0


def test_backoff_wait_keeps_a_longer_jitter_delay() -> None:
    backoff = Backoff(initial=8.0, base=1.0, maximum=8.0)
    expected = random.Random(SEED).uniform(0.0, 8.0)
    assert backoff.wait(1, random.Random(SEED), retry_after=0.001) == max(expected, 0.001)


def test_backoff_from_config() -> None:
    config = PushConfig(backoff_initial=0.3, backoff_base=3.0, backoff_max=7.0)
    assert Backoff.from_config(config) == Backoff(initial=0.3, base=3.0, maximum=7.0)


# --- RetryBudget ------------------------------------------------------------------------


def test_budget_counts_down_and_refuses_when_spent() -> None:
    budget = RetryBudget(2)
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    assert (budget.spent, budget.remaining, budget.total) == (2, 0, 2)


def test_budget_rejects_negative_totals() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        RetryBudget(-1)


# --- Scheduler --------------------------------------------------------------------------


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


# --- retry_call -------------------------------------------------------------------------


def throttling() -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UploadLayerPart"
    )


def failing(errors: list[BaseException], result: str = "ok") -> Callable[[], Awaitable[str]]:
    """A call that raises ``errors`` one per attempt, then returns ``result``."""
    remaining = list(errors)

    async def call() -> str:
        await anyio.lowlevel.checkpoint()
        if remaining:
            raise remaining.pop(0)
        return result

    return call


async def on_fake_clock(
    fn: Callable[[], Awaitable[str]],
    clock: FakeClock,
    *,
    attempts: int,
    budget: RetryBudget,
    backoff: Backoff = PART_BACKOFF,
    **options: Any,
) -> str:
    """``retry_call`` of ``fn`` with the real error table, sleeping on ``clock``."""
    return await retry_call(
        fn,
        subject=options.pop("subject", "sha256:ab"),
        attempts=attempts,
        backoff=backoff,
        budget=budget,
        classify=classify,
        sleep=clock.sleep,
        clock=clock,
        **options,
    )


@pytest.mark.anyio
async def test_retry_call_retries_transient_errors_in_place() -> None:
    clock = FakeClock()
    budget = RetryBudget(10)
    events: list[RetryEvent] = []
    throttles: list[None] = []
    result = await on_fake_clock(
        failing([ConnectionResetError("reset"), throttling()]),
        clock,
        attempts=3,
        budget=budget,
        rng=random.Random(SEED),
        on_retry=events.append,
        on_throttle=lambda: throttles.append(None),
    )
    rng = random.Random(SEED)
    delays = [rng.uniform(0.0, 1.0), rng.uniform(0.0, 2.0)]
    assert result == "ok"
    assert events == [
        RetryEvent("sha256:ab", "part", 1, "ConnectionReset", "reset", delays[0], 0.0),
        RetryEvent(
            "sha256:ab", "part", 2, "ThrottlingException", "Rate exceeded", delays[1], delays[0]
        ),
    ]
    assert clock.sleeps == delays
    assert budget.spent == 2
    assert len(throttles) == 1


@pytest.mark.anyio
async def test_retry_call_raises_non_retryable_errors_at_once() -> None:
    clock = FakeClock()
    budget = RetryBudget(10)
    invalid = botocore.exceptions.ClientError(
        {"Error": {"Code": "InvalidLayerPartException", "Message": "gap"}}, "UploadLayerPart"
    )
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        await on_fake_clock(
            failing([invalid]),
            clock,
            attempts=5,
            budget=budget,
        )
    assert caught.value is invalid
    assert (clock.sleeps, budget.spent) == ([], 0)


@pytest.mark.anyio
async def test_retry_call_gives_up_after_its_attempts() -> None:
    clock = FakeClock()
    errors: list[BaseException] = [ConnectionResetError(f"reset {n}") for n in range(5)]
    with pytest.raises(RetriesExhausted) as caught:
        await on_fake_clock(
            failing(errors),
            clock,
            attempts=3,
            budget=RetryBudget(10),
        )
    exhausted = caught.value
    assert (exhausted.reason, exhausted.attempts) == ("attempts", 3)
    assert [event.attempt for event in exhausted.events] == [1, 2]
    assert isinstance(exhausted.__cause__, ConnectionResetError)
    assert str(exhausted.__cause__) == "reset 2"
    assert exhausted.verdict.code == "ConnectionReset"
    assert classify(exhausted).action is Action.REQUEUE_LAYER
    assert len(clock.sleeps) == 2


@pytest.mark.anyio
async def test_retry_call_gives_up_when_the_budget_is_spent() -> None:
    clock = FakeClock()
    budget = RetryBudget(1)
    with pytest.raises(RetriesExhausted) as caught:
        await on_fake_clock(
            failing([throttling(), throttling(), throttling()]),
            clock,
            attempts=10,
            budget=budget,
        )
    assert (caught.value.reason, caught.value.attempts) == ("budget", 2)
    assert classify(caught.value).action is Action.FAIL
    assert budget.remaining == 0


@pytest.mark.anyio
async def test_retry_call_honours_retry_after() -> None:
    clock = FakeClock()
    throttled = botocore.exceptions.ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "slow down"},
            "ResponseMetadata": {"HTTPStatusCode": 429, "HTTPHeaders": {"retry-after": "4"}},
        },
        "PutImage",
    )
    await on_fake_clock(
        failing([throttled]),
        clock,
        attempts=2,
        budget=RetryBudget(1),
        backoff=Backoff(initial=0.5, base=2.0, maximum=10.0),
        subject="app:latest",
    )
    assert clock.sleeps == [4.0]


def test_retry_call_rejects_zero_attempts() -> None:
    async def never() -> str:
        raise AssertionError("must not be called")

    with pytest.raises(ValueError, match="attempts"):
        anyio.run(
            lambda: retry_call(
                never,
                subject="x",
                attempts=0,
                backoff=Backoff(initial=1.0, base=2.0, maximum=1.0),
                budget=RetryBudget(1),
                classify=classify,
            )
        )


# --- against the embedded registry ------------------------------------------------------

REPO = "team/app"
#: Every throttle reaches retry_call (``max_attempts: 1`` would still allow a botocore retry).
NO_BOTOCORE_RETRIES = Config(retries={"total_max_attempts": 1})
#: Calls at once, well over the simulated quota's burst.
CONCURRENT_CALLS = 8
#: Simulated InitiateLayerUpload quota (requests/s); its burst is the same number.
SIMULATED_QUOTA = 4.0


@pytest.mark.anyio
async def test_retry_call_rides_out_real_throttling(
    make_registry: RegistryFactory, ecr_client: ClientFactory
) -> None:
    simulation = SimulationSettings(quotas={"InitiateLayerUpload": SIMULATED_QUOTA})
    budget = RetryBudget(100)
    events: list[RetryEvent] = []
    pacer = Pacer(quotas={"InitiateLayerUpload": SIMULATED_QUOTA * 2})
    upload_ids: list[str] = []
    async with (
        make_registry(simulation=simulation) as registry,
        ecr_client(registry.endpoint_url, config=NO_BOTOCORE_RETRIES) as client,
    ):
        await client.create_repository(repositoryName=REPO)

        async def initiate() -> dict[str, Any]:
            await pacer.acquire("InitiateLayerUpload")
            answer: dict[str, Any] = await client.initiate_layer_upload(repositoryName=REPO)
            pacer.succeeded("InitiateLayerUpload")
            return answer

        async def one() -> None:
            answer = await retry_call(
                initiate,
                subject=REPO,
                attempts=20,
                backoff=Backoff(initial=0.05, base=2.0, maximum=0.5),
                budget=budget,
                classify=lambda exc: classify(exc, operation="InitiateLayerUpload"),
                on_retry=events.append,
                on_throttle=lambda: pacer.throttled("InitiateLayerUpload"),
            )
            upload_ids.append(answer["uploadId"])

        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENT_CALLS):
                tg.start_soon(one)
    assert len(set(upload_ids)) == CONCURRENT_CALLS
    assert events
    assert {event.cause for event in events} == {"ThrottlingException"}
    assert {event.scope for event in events} == {"part"}
    assert budget.spent == len(events)
    stats = pacer.stats["InitiateLayerUpload"]
    assert stats.throttles == len(events)
    assert stats.rate < stats.paced_rate
