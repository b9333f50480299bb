"""Token buckets, the AIMD window and the per-operation pacer, exact on a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import anyio.lowlevel
import botocore.exceptions
import pytest
from botocore.config import Config

from fakes import FakeClock, FakeTime
from layerhoist.destinations.ecr.errors import classify
from layerhoist.destinations.ecr.limits import PUBLISHED_QUOTAS
from layerhoist.registry import EmbeddedRegistry
from layerhoist.registry.simulation import SimulationSettings
from layerhoist.transfer.pacing import (
    DEFAULT_HEADROOM,
    MIN_RATE_FRACTION,
    RATE_DECREASE_COOLDOWN,
    RATE_RECOVERY_STEP,
    AIMDWindow,
    Pacer,
    TokenBucket,
)

ClientFactory = Callable[..., AbstractAsyncContextManager[Any]]
RegistryFactory = Callable[..., EmbeddedRegistry]

#: Real-time guard so a lost wake-up fails the test instead of hanging the suite.
HANG_GUARD_SECONDS = 10.0

#: The headroom these tests pace at: rates and waits come out exact in binary floating point.
HEADROOM = 0.8


def bucket(clock: FakeClock, *, rate: float, burst: float) -> TokenBucket:
    return TokenBucket(rate=rate, burst=burst, clock=clock, sleep=clock.sleep)


# --- TokenBucket ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_bucket_allows_its_burst_at_once_then_its_rate() -> None:
    clock = FakeClock()
    limiter = bucket(clock, rate=2.0, burst=5.0)
    times = []
    for _ in range(9):
        await limiter.acquire()
        times.append(clock.now)
    assert times == [0.0] * 5 + [0.5, 1.0, 1.5, 2.0]
    assert clock.sleeps == [0.5] * 4


@pytest.mark.anyio
async def test_bucket_refills_only_up_to_its_burst() -> None:
    clock = FakeClock()
    limiter = bucket(clock, rate=1.0, burst=3.0)
    for _ in range(3):
        await limiter.acquire()
    clock.now = 100.0
    assert limiter.available == 3.0
    for _ in range(4):
        await limiter.acquire()
    assert clock.now == 101.0


@pytest.mark.anyio
async def test_bucket_serves_concurrent_waiters_first_come_first_served() -> None:
    clock = FakeClock()
    limiter = bucket(clock, rate=1.0, burst=3.0)
    limiter.drain()
    done: list[tuple[str, float]] = []

    async def waiter(name: str, tokens: float) -> None:
        await limiter.acquire(tokens)
        done.append((name, clock.now))

    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            # The large request arrives first: the small ones behind it must not overtake it,
            # although a single token would be ready for them a second in.
            tg.start_soon(waiter, "large", 3.0)
            tg.start_soon(waiter, "small-1", 1.0)
            tg.start_soon(waiter, "small-2", 1.0)
    assert done == [("large", 3.0), ("small-1", 4.0), ("small-2", 5.0)]
    assert clock.sleeps == [3.0, 1.0, 1.0]


@pytest.mark.anyio
async def test_a_cancelled_waiter_takes_no_tokens() -> None:
    clock = FakeClock()
    stuck = anyio.Event()

    async def sleep_until_cancelled(delay: float) -> None:
        clock.sleeps.append(delay)
        await stuck.wait()

    limiter = TokenBucket(rate=1.0, burst=1.0, clock=clock, sleep=sleep_until_cancelled)
    await limiter.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)
        await anyio.wait_all_tasks_blocked()
        assert clock.sleeps == [1.0]
        tg.cancel_scope.cancel()
    clock.now = 1.0
    with anyio.fail_after(HANG_GUARD_SECONDS):
        await limiter.acquire()
    assert limiter.available == 0.0
    assert clock.sleeps == [1.0]


@pytest.mark.anyio
async def test_bucket_rate_change_applies_to_the_next_tokens() -> None:
    clock = FakeClock()
    limiter = bucket(clock, rate=4.0, burst=1.0)
    await limiter.acquire()
    limiter.rate = 1.0
    await limiter.acquire()
    assert clock.now == 1.0


@pytest.mark.anyio
async def test_bucket_rejects_impossible_requests() -> None:
    limiter = bucket(FakeClock(), rate=1.0, burst=2.0)
    with pytest.raises(ValueError, match="tokens"):
        await limiter.acquire(3.0)
    with pytest.raises(ValueError, match="rate"):
        limiter.rate = 0.0
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(rate=1.0, burst=0.0)


# --- AIMDWindow -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_window_bounds_requests_in_flight() -> None:
    window = AIMDWindow(initial=2, maximum=8)
    release = anyio.Event()
    entered: list[int] = []

    async def request(number: int) -> None:
        async with window.slot():
            entered.append(number)
            await release.wait()

    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            for number in range(3):
                tg.start_soon(request, number)
            await anyio.wait_all_tasks_blocked()
            assert (entered, window.in_flight) == ([0, 1], 2)
            release.set()
    assert entered == [0, 1, 2]
    assert window.in_flight == 0


def test_window_halves_on_throttle_and_grows_back_by_one_per_window() -> None:
    window = AIMDWindow(initial=8, maximum=16)
    window.on_throttle()
    assert window.limit == 4
    limits = []
    for _ in range(4 + 5 + 6 + 7):
        window.on_success()
        limits.append(window.limit)
    assert limits[3] == 5
    assert limits[3 + 5] == 6
    assert limits[-2] == 7
    assert limits[-1] == 8


def test_window_stays_within_its_bounds() -> None:
    window = AIMDWindow(initial=4, minimum=2, maximum=5)
    for _ in range(10):
        window.on_throttle()
    assert window.limit == 2
    for _ in range(100):
        window.on_success()
    assert window.limit == 5


@pytest.mark.anyio
async def test_a_burst_of_throttles_halves_the_window_once() -> None:
    window = AIMDWindow(initial=8, maximum=8)
    release = anyio.Event()

    async def throttled_request() -> None:
        async with window.slot():
            await release.wait()
            window.on_throttle()

    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(throttled_request)
            await anyio.wait_all_tasks_blocked()
            assert window.in_flight == 6
            release.set()
    assert window.limit == 4
    # The overload's requests have all left: a new throttle is news and halves again.
    window.on_throttle()
    assert window.limit == 2


@pytest.mark.anyio
async def test_growing_the_window_admits_a_waiting_request() -> None:
    window = AIMDWindow(initial=1, maximum=4)
    release = anyio.Event()
    entered: list[str] = []

    async def request(name: str) -> None:
        async with window.slot():
            entered.append(name)
            await release.wait()

    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(request, "first")
            tg.start_soon(request, "second")
            await anyio.wait_all_tasks_blocked()
            assert entered == ["first"]
            window.on_success()
            await anyio.wait_all_tasks_blocked()
            assert entered == ["first", "second"]
            release.set()


@pytest.mark.anyio
async def test_one_task_may_hold_two_slots() -> None:
    window = AIMDWindow(initial=2, maximum=2)
    async with window.slot(), window.slot():
        assert window.in_flight == 2


def test_window_rejects_inconsistent_bounds() -> None:
    with pytest.raises(ValueError, match="minimum <= initial"):
        AIMDWindow(initial=10, maximum=5)
    with pytest.raises(ValueError, match="decrease"):
        AIMDWindow(initial=1, maximum=5, decrease=1.0)


# --- Pacer ------------------------------------------------------------------------------


def test_published_quotas_use_the_stricter_documented_values() -> None:
    public = PUBLISHED_QUOTAS["ecr-public"]
    assert public["InitiateLayerUpload"] == 10.0
    assert public["CompleteLayerUpload"] == 10.0
    assert public["PutImage"] == 10.0
    assert public["UploadLayerPart"] == 260.0
    private = PUBLISHED_QUOTAS["ecr"]
    assert private["PutImage"] == 10.0
    assert private["BatchCheckLayerAvailability"] == 1000.0


@pytest.mark.anyio
async def test_pacer_paces_at_headroom_of_the_quota() -> None:
    clock = FakeClock()
    pacer = Pacer(quotas={"PutImage": 10.0}, headroom=HEADROOM, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(10):
        await pacer.acquire("PutImage")
        times.append(clock.now)
    # 8/s: one second's burst at once, then one request every 1/8 s.
    assert times == [0.0] * 8 + [0.125, 0.25]
    stats = pacer.stats["PutImage"]
    assert (stats.quota, stats.paced_rate, stats.rate) == (10.0, 8.0, 8.0)
    assert (stats.requests, stats.waited) == (10, 0.25)


def test_the_default_headroom_leaves_a_margin_under_the_quota() -> None:
    stats = Pacer(quotas={"PutImage": 10.0}).stats["PutImage"]  # default headroom
    assert stats.paced_rate == 10.0 * DEFAULT_HEADROOM
    assert 0.9 <= DEFAULT_HEADROOM < 1.0


@pytest.mark.anyio
async def test_unlisted_operations_are_unpaced() -> None:
    clock = FakeClock()
    pacer = Pacer(headroom=HEADROOM, quotas={"PutImage": 1.0}, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        await pacer.acquire("DescribeRepositories")
    pacer.throttled("DescribeRepositories")
    pacer.succeeded("DescribeRepositories")
    async with pacer.slot("DescribeRepositories"):
        pass
    assert clock.sleeps == []
    assert set(pacer.stats) == {"PutImage"}


@pytest.mark.anyio
async def test_throttling_halves_the_rate_and_spaces_the_next_requests() -> None:
    clock = FakeClock()
    pacer = Pacer(
        headroom=HEADROOM, quotas={"CompleteLayerUpload": 10.0}, clock=clock, sleep=clock.sleep
    )
    pacer.throttled("CompleteLayerUpload")
    assert pacer.stats["CompleteLayerUpload"].rate == 4.0
    # The bucket was emptied: no burst after a throttle, one request per 1/4 s.
    await pacer.acquire("CompleteLayerUpload")
    await pacer.acquire("CompleteLayerUpload")
    assert clock.sleeps == [0.25, 0.25]
    assert pacer.stats["CompleteLayerUpload"].throttles == 1


def test_throttles_within_the_cooldown_lower_the_rate_once() -> None:
    clock = FakeClock()
    pacer = Pacer(headroom=HEADROOM, quotas={"PutImage": 10.0}, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        pacer.throttled("PutImage")
    assert pacer.stats["PutImage"].rate == 4.0
    clock.now = RATE_DECREASE_COOLDOWN
    pacer.throttled("PutImage")
    assert pacer.stats["PutImage"].rate == 2.0
    assert pacer.stats["PutImage"].throttles == 6


def test_rate_never_drops_below_its_floor() -> None:
    clock = FakeClock()
    pacer = Pacer(headroom=HEADROOM, quotas={"PutImage": 10.0}, clock=clock, sleep=clock.sleep)
    for step in range(20):
        clock.now = step * RATE_DECREASE_COOLDOWN
        pacer.throttled("PutImage")
    assert pacer.stats["PutImage"].rate == 8.0 * MIN_RATE_FRACTION


def test_successes_recover_the_rate_additively_up_to_the_paced_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(headroom=HEADROOM, quotas={"PutImage": 10.0}, clock=clock, sleep=clock.sleep)
    pacer.throttled("PutImage")
    pacer.succeeded("PutImage")
    assert pacer.stats["PutImage"].rate == pytest.approx(4.0 + 8.0 * RATE_RECOVERY_STEP)
    steps_to_recover = round(0.5 / RATE_RECOVERY_STEP)
    for _ in range(steps_to_recover - 2):
        pacer.succeeded("PutImage")
    assert pacer.stats["PutImage"].rate < 8.0
    for _ in range(5):
        pacer.succeeded("PutImage")
    assert pacer.stats["PutImage"].rate == 8.0


@pytest.mark.anyio
async def test_pacer_slot_bounds_in_flight_requests_per_operation() -> None:
    clock = FakeClock()
    pacer = Pacer(
        quotas={"UploadLayerPart": 100.0, "PutImage": 10.0},
        clock=clock,
        sleep=clock.sleep,
        window_initial=1,
        window_max=4,
    )
    release = anyio.Event()
    entered: list[str] = []

    async def request(operation: str, name: str) -> None:
        async with pacer.slot(operation):
            entered.append(name)
            await release.wait()

    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(request, "UploadLayerPart", "part-1")
            tg.start_soon(request, "UploadLayerPart", "part-2")
            tg.start_soon(request, "PutImage", "image")
            await anyio.wait_all_tasks_blocked()
            assert entered == ["part-1", "image"]
            assert pacer.stats["UploadLayerPart"].window == 1
            release.set()
    assert entered == ["part-1", "image", "part-2"]


def test_pacer_rejects_bad_headroom() -> None:
    with pytest.raises(ValueError, match="headroom"):
        Pacer(quotas={}, headroom=1.5)


def test_the_cooldown_runs_from_the_last_decrease_on_any_clock() -> None:
    time = FakeTime()  # starts at 1000 s
    pacer = Pacer(headroom=HEADROOM, quotas={"PutImage": 10.0}, clock=time.clock, sleep=time.sleep)
    pacer.throttled("PutImage")  # the first throttle always counts
    assert pacer.stats["PutImage"].rate == 4.0
    time.now = 1000.0 + RATE_DECREASE_COOLDOWN - 0.001
    pacer.throttled("PutImage")  # an echo of the same overload
    assert pacer.stats["PutImage"].rate == 4.0
    time.now = 1000.0 + RATE_DECREASE_COOLDOWN
    pacer.throttled("PutImage")
    assert pacer.stats["PutImage"].rate == 2.0
    time.now += RATE_DECREASE_COOLDOWN / 2  # the cooldown restarted at the last decrease
    pacer.throttled("PutImage")
    assert pacer.stats["PutImage"].rate == 2.0
    assert pacer.stats["PutImage"].throttles == 4


@pytest.mark.anyio
async def test_a_headroom_of_one_paces_at_the_full_quota() -> None:
    time = FakeTime()
    pacer = Pacer(quotas={"PutImage": 4.0}, headroom=1.0, clock=time.clock, sleep=time.sleep)
    for _ in range(6):
        await pacer.acquire("PutImage")
    stats = pacer.stats["PutImage"]
    assert (stats.quota, stats.paced_rate, stats.rate) == (4.0, 4.0, 4.0)
    assert time.sleeps == [0.25, 0.25]  # a burst of 4, then 4/s
    assert (stats.requests, stats.waited) == (6, 0.5)


@pytest.mark.anyio
async def test_a_quota_under_one_request_per_second_still_bursts_one() -> None:
    time = FakeTime()
    pacer = Pacer(headroom=HEADROOM, quotas={"PutImage": 1.0}, clock=time.clock, sleep=time.sleep)
    for _ in range(3):
        await pacer.acquire("PutImage")
    assert time.sleeps == [1.25, 1.25]  # 0.8/s; a burst of one request


@pytest.mark.parametrize("headroom", [0.0, -0.5, 1.01])
def test_a_bad_headroom_is_named_in_the_error(headroom: float) -> None:
    with pytest.raises(ValueError, match=rf"^headroom must be within \(0, 1\], got {headroom}$"):
        Pacer(quotas={}, headroom=headroom)


def test_bucket_errors_name_the_values_given() -> None:
    with pytest.raises(ValueError, match=r"^rate and burst must be positive, got rate=0 burst=2$"):
        TokenBucket(rate=0, burst=2)
    with pytest.raises(ValueError, match=r"got rate=3 burst=-1$"):
        TokenBucket(rate=3, burst=-1)
    limiter = TokenBucket(rate=1.0, burst=2.0)
    with pytest.raises(ValueError, match=r"^rate must be positive, got -4$"):
        limiter.rate = -4
    assert limiter.rate == 1.0


@pytest.mark.anyio
@pytest.mark.parametrize("tokens", [0.0, -1.0, 2.5])
async def test_a_request_outside_the_bucket_is_named_in_the_error(tokens: float) -> None:
    limiter = bucket(FakeClock(), rate=1.0, burst=2.0)
    with pytest.raises(ValueError, match=rf"^tokens must be within \(0, 2.0\], got {tokens}$"):
        await limiter.acquire(tokens)
    assert limiter.available == 2.0


@pytest.mark.anyio
async def test_a_request_of_the_whole_burst_passes_when_the_bucket_is_full() -> None:
    clock = FakeClock()
    limiter = bucket(clock, rate=1.0, burst=2.0)
    await limiter.acquire(2.0)
    assert (clock.sleeps, limiter.available) == ([], 0.0)
    await limiter.acquire(2.0)
    assert (clock.sleeps, clock.now) == ([2.0], 2.0)


def test_window_errors_name_the_values_given() -> None:
    with pytest.raises(ValueError, match=r"got minimum=1, initial=10, maximum=5$"):
        AIMDWindow(initial=10, maximum=5)
    with pytest.raises(ValueError, match=r"got minimum=0, initial=1, maximum=5$"):
        AIMDWindow(initial=1, minimum=0, maximum=5)
    with pytest.raises(ValueError, match=r"^need increase > 0 and 0 < decrease < 1, got "):
        AIMDWindow(initial=1, maximum=5, increase=0.0)
    with pytest.raises(ValueError, match=r"got increase=1.0 decrease=0.0$"):
        AIMDWindow(initial=1, maximum=5, decrease=0.0)


def test_a_window_of_one_stays_one() -> None:
    window = AIMDWindow(initial=1, minimum=1, maximum=1)
    window.on_throttle()
    assert window.limit == 1
    for _ in range(5):
        window.on_success()
    assert window.limit == 1


# --- against the embedded registry's simulated quotas -------------------------------------

REPO = "team/app"
#: More InitiateLayerUpload calls at once than the simulated quota's burst admits.
CONCURRENT_CALLS = 14
#: Every throttle reaches the test (``max_attempts: 1`` would still allow one botocore retry).
NO_BOTOCORE_RETRIES = Config(retries={"total_max_attempts": 1})


async def _initiate_concurrently(
    make_registry: RegistryFactory, ecr_client: ClientFactory, pacer: Pacer | None
) -> list[str]:
    """Error codes of ``CONCURRENT_CALLS`` simultaneous InitiateLayerUpload calls."""
    quota = PUBLISHED_QUOTAS["ecr-public"]["InitiateLayerUpload"]
    simulation = SimulationSettings(quotas={"InitiateLayerUpload": quota})
    codes: list[str] = []
    async with (
        make_registry(simulation=simulation) as registry,
        ecr_client(registry.endpoint_url, config=NO_BOTOCORE_RETRIES) as client,
    ):
        await client.create_repository(repositoryName=REPO)

        async def initiate() -> None:
            if pacer is not None:
                await pacer.acquire("InitiateLayerUpload")
            try:
                await client.initiate_layer_upload(repositoryName=REPO)
            except botocore.exceptions.ClientError as exc:
                codes.append(classify(exc).code)

        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENT_CALLS):
                tg.start_soon(initiate)
    return codes


@pytest.mark.anyio
async def test_unpaced_calls_over_the_quota_are_throttled(
    make_registry: RegistryFactory, ecr_client: ClientFactory
) -> None:
    codes = await _initiate_concurrently(make_registry, ecr_client, pacer=None)
    assert codes
    assert set(codes) == {"ThrottlingException"}


@pytest.mark.anyio
async def test_paced_calls_stay_under_the_quota(
    make_registry: RegistryFactory, ecr_client: ClientFactory
) -> None:
    pacer = Pacer(headroom=HEADROOM, quotas=PUBLISHED_QUOTAS["ecr-public"])
    codes = await _initiate_concurrently(make_registry, ecr_client, pacer=pacer)
    assert codes == []
    assert pacer.stats["InitiateLayerUpload"].requests == CONCURRENT_CALLS


def test_a_fresh_window_grows_after_exactly_one_window_of_successes() -> None:
    window = AIMDWindow(initial=4, maximum=8)
    for _ in range(3):
        window.on_success()
    assert window.limit == 4
    window.on_success()
    assert window.limit == 5
