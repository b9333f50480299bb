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
from layerhoist.destinations.ecr.errors import classify
from layerhoist.registry import EmbeddedRegistry
from layerhoist.registry.simulation import SimulationSettings
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.pacing import Pacer
from layerhoist.transfer.retry import (
    BUDGET_HINT,
    Backoff,
    RetriesExhausted,
    RetryBudget,
    RetryEvent,
    retry_call,
)
from layerhoist.transfer.verdicts import Action

ClientFactory = Callable[..., AbstractAsyncContextManager[Any]]
RegistryFactory = Callable[..., EmbeddedRegistry]

SEED = 1234
#: The part backoff of the retry_call tests: 1 s, 2 s, 4 s… up to 10 s.
PART_BACKOFF = Backoff(initial=1.0, base=2.0, maximum=10.0)
#: A backoff whose jitter is always 0: the delay is the Retry-After given, up to 60 s.
NO_JITTER = Backoff(initial=0.0, base=2.0, maximum=60.0)
#: Real-time guard so a lost wake-up fails the test instead of hanging the suite.
HANG_GUARD_SECONDS = 10.0


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
            "sha256:ab",
            "part",
            2,
            "ThrottlingException",
            "Rate exceeded",
            delays[1],
            delays[0],
            elapsed=delays[0],
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
async def test_retry_call_keeps_retrying_for_its_time_allowance() -> None:
    # An outage: every call fails for 40 s of the fake clock, then the service is back.
    clock = FakeClock()
    events: list[RetryEvent] = []

    async def call() -> str:
        await anyio.lowlevel.checkpoint()
        if clock.now < 40.0:
            raise ConnectionRefusedError("refused")
        return "ok"

    result = await on_fake_clock(
        call, clock, attempts=2, budget=RetryBudget(100), retry_for=60.0, on_retry=events.append
    )
    assert result == "ok"
    # Far past the two attempts, each retry no longer than the backoff's ceiling allows.
    assert len(events) > 2
    assert all(e.delay <= PART_BACKOFF.ceiling(e.attempt) for e in events)
    assert [e.elapsed for e in events] == sorted(e.elapsed for e in events)
    assert events[0].elapsed == 0.0
    assert events[-1].elapsed < 40.0 <= events[-1].elapsed + events[-1].delay


@pytest.mark.anyio
async def test_retry_call_gives_up_once_attempts_and_time_are_both_used() -> None:
    clock = FakeClock()
    with pytest.raises(RetriesExhausted) as caught:
        await on_fake_clock(
            failing([ConnectionRefusedError("refused")] * 1000),
            clock,
            attempts=2,
            budget=RetryBudget(1000),
            retry_for=30.0,
        )
    exhausted = caught.value
    assert exhausted.reason == "attempts"
    # The last failure came at or past the allowance, and the one before it had not.
    assert clock.now >= 30.0
    assert exhausted.events[-1].elapsed < 30.0
    assert exhausted.attempts == len(exhausted.events) + 1 > 2


def test_retry_call_rejects_a_negative_time_allowance() -> None:
    with pytest.raises(ValueError, match="retry_for"):
        anyio.run(
            lambda: on_fake_clock(
                failing([]), FakeClock(), attempts=1, budget=RetryBudget(1), retry_for=-1.0
            )
        )


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


# --- edge settings ----------------------------------------------------------------------


def test_a_zero_backoff_and_a_constant_one_are_valid() -> None:
    never = Backoff(initial=0.0, base=1.0, maximum=0.0)
    rng = random.Random(SEED)
    assert [never.ceiling(n) for n in (1, 50)] == [0.0, 0.0]
    assert never.wait(3, rng, retry_after=5.0) == 0.0  # even Retry-After is clamped to 0
    constant = Backoff(initial=2.0, base=1.0, maximum=9.0)
    assert [constant.ceiling(n) for n in (1, 2, 30)] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize(
    "settings",
    [
        {"initial": -0.1, "base": 2.0, "maximum": 1.0},
        {"initial": 0.0, "base": 0.99, "maximum": 1.0},
        {"initial": 0.0, "base": 2.0, "maximum": -1.0},
    ],
)
def test_backoff_errors_name_every_rule(settings: dict[str, float]) -> None:
    message = "Backoff needs initial >= 0, maximum >= 0 and base >= 1"
    with pytest.raises(ValueError, match=f"^{message}$"):
        Backoff(**settings)


def test_an_empty_retry_budget_is_valid_and_refuses_every_retry() -> None:
    budget = RetryBudget(0)
    assert [budget.try_spend(), budget.try_spend()] == [False, False]
    assert (budget.total, budget.spent, budget.remaining) == (0, 0, 0)
    assert repr(budget) == "RetryBudget(total=0, spent=0)"
    with pytest.raises(ValueError, match="retry budget must be >= 0, got -3"):
        RetryBudget(-3)


def throttled_for(seconds: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 429, "HTTPHeaders": {"retry-after": seconds}},
        },
        "UploadLayerPart",
    )


async def exhausted_at_once(*, attempts: int, budget: RetryBudget) -> RetriesExhausted:
    """What ``retry_call`` raises on its first throttle (Retry-After 7 s): no retry, no sleep."""
    clock = FakeClock()
    with pytest.raises(RetriesExhausted) as caught:
        await on_fake_clock(failing([throttled_for("7")]), clock, attempts=attempts, budget=budget)
    assert clock.sleeps == []
    return caught.value


@pytest.mark.anyio
async def test_with_an_empty_budget_the_first_retryable_error_fails() -> None:
    exhausted = await exhausted_at_once(attempts=5, budget=RetryBudget(0))
    assert (exhausted.reason, exhausted.attempts, exhausted.events) == ("budget", 1, ())
    assert str(exhausted) == "ThrottlingException: Rate exceeded (gave up after 1 attempts)"
    assert exhausted.last.action is Action.RETRY_PART
    assert exhausted.last.retry_after == 7.0
    verdict = exhausted.verdict
    assert (verdict.action, verdict.hint, verdict.retry_after) == (Action.FAIL, BUDGET_HINT, None)
    assert (verdict.code, verdict.status, verdict.throttled) == ("ThrottlingException", 429, True)


@pytest.mark.anyio
async def test_one_attempt_means_no_retry() -> None:
    budget = RetryBudget(10)
    exhausted = await exhausted_at_once(attempts=1, budget=budget)
    assert (exhausted.reason, exhausted.attempts, exhausted.events) == ("attempts", 1, ())
    verdict = exhausted.verdict
    assert (verdict.action, verdict.retry_after, verdict.status) == (Action.REQUEUE_LAYER, 7.0, 429)
    assert verdict.hint == exhausted.last.hint
    assert budget.spent == 0


@pytest.mark.anyio
async def test_the_time_allowance_counts_from_the_first_failure_on_any_clock() -> None:
    # Each call takes 2.5 s of the clock, which starts far from zero; the backoff adds nothing.
    clock = FakeClock()
    clock.now = 1000.0
    calls: list[float] = []

    async def slow_failure() -> str:
        await anyio.lowlevel.checkpoint()
        clock.now += 2.5
        calls.append(clock.now)
        raise ConnectionResetError("reset")

    events: list[RetryEvent] = []
    with pytest.raises(RetriesExhausted) as caught:
        await on_fake_clock(
            slow_failure,
            clock,
            attempts=1,
            budget=RetryBudget(10),
            backoff=NO_JITTER,
            retry_for=5.0,
            on_retry=events.append,
        )
    # Failures at 1002.5 (the first), 1005 (2.5 s in) and 1007.5: exactly 5 s in, given up.
    assert calls == [1002.5, 1005.0, 1007.5]
    assert [(e.at, e.elapsed) for e in events] == [(1002.5, 0.0), (1005.0, 2.5)]
    assert caught.value.attempts == 3


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
