"""Tests of the registry's network and fault simulation, on an injected clock."""

from __future__ import annotations

import pytest

from fakes import FakeTime
from layerhoist.registry.simulation import (
    QUOTA_PROFILES,
    ConnectionBandwidth,
    SimulationSettings,
    Simulator,
    parse_rate,
)


def make(time: FakeTime, **fields: object) -> Simulator:
    return Simulator(SimulationSettings(**fields), clock=time.clock, sleep=time.sleep)  # type: ignore[arg-type]


# --- parse_rate -------------------------------------------------------------------------------

RATE_TABLE = [
    ("25MB/s", 25_000_000),
    ("25MBps", 25_000_000),
    ("25 MB/s", 25_000_000),
    ("25mb/s", 25_000_000 / 8),
    ("200Mbit/s", 25_000_000),
    ("200Mbps", 25_000_000),
    ("200mbit", 25_000_000),
    ("200Mb/s", 25_000_000),
    ("1GiB/s", 2**30),
    ("1gib/s", 2**30 / 8),
    ("1GIB/s", 2**30),
    ("10MiB/s", 10 * 2**20),
    ("10MiBps", 10 * 2**20),
    ("500KB/s", 500_000),
    ("500kB/s", 500_000),
    ("500KiB/s", 500 * 1024),
    ("1Gbit/s", 125_000_000),
    ("1Gibit/s", 2**30 / 8),
    ("2.5MB/s", 2_500_000),
    ("1TB/s", 10**12),
    ("25M", 25_000_000),
    ("25M/s", 25_000_000),
    ("4096", 4096),
    ("4096B/s", 4096),
    ("800bps", 100),
    ("800Bps", 800),
    ("3 bytes/sec", 3),
    ("16 bits/s", 2),
    ("1e3KB/s", 10**6),
]


@pytest.mark.parametrize(("text", "expected"), RATE_TABLE)
def test_parse_rate_table(text: str, expected: float) -> None:
    assert parse_rate(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "text",
    ["", "fast", "MB/s", "25XB/s", "25MB/h", "-1MB/s", "0", "0MB/s", "25Mps", "nan", "1e999"],
)
def test_parse_rate_rejects_junk(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


# --- settings validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"latency_ms": -1},
        {"latency_ms": float("inf")},
        {"latency_ms": True},
        {"bandwidth": 0},
        {"bandwidth": -5.0},
        {"quotas": {"PutImage": 0}},
        {"quotas": {"PutImage": "10"}},
        {"quotas": {"": 10}},
        {"quotas": ["PutImage"]},
        {"fault_rate": 1.5},
        {"drop_rate": -0.1},
        {"corrupt_rate": float("nan")},
        {"fault_rate": 0.6, "drop_rate": 0.5},
        {"upload_expiry": 0},
        {"seed": 1.5},
        {"seed": True},
    ],
)
def test_settings_reject_bad_values(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SimulationSettings(**fields)  # type: ignore[arg-type]


def test_settings_copy_quotas() -> None:
    quotas = {"PutImage": 10}
    settings = SimulationSettings(quotas=quotas)
    quotas["PutImage"] = 1
    assert settings.quotas == {"PutImage": 10.0}


def test_quota_profiles_hold_published_numbers() -> None:
    operations = {
        "BatchCheckLayerAvailability",
        "InitiateLayerUpload",
        "UploadLayerPart",
        "CompleteLayerUpload",
        "PutImage",
        "GetAuthorizationToken",
    }
    assert set(QUOTA_PROFILES["ecr-public"]) == operations
    assert set(QUOTA_PROFILES["ecr"]) == operations
    # The stricter of the two published numbers for ECR Public InitiateLayerUpload.
    assert QUOTA_PROFILES["ecr-public"]["InitiateLayerUpload"] == 10
    assert QUOTA_PROFILES["ecr-public"]["UploadLayerPart"] == 260
    assert QUOTA_PROFILES["ecr"]["BatchCheckLayerAvailability"] == 1000
    assert QUOTA_PROFILES["ecr"]["PutImage"] == 10


# --- update -----------------------------------------------------------------------------------


def test_update_accepts_json_forms() -> None:
    simulator = make(FakeTime())
    settings = simulator.update(
        {"bandwidth": "200Mbit/s", "quotas": "ecr-public", "latency_ms": 20, "seed": 7}
    )
    assert settings.bandwidth == 25_000_000
    assert settings.quotas == QUOTA_PROFILES["ecr-public"]
    assert settings.latency_ms == 20
    assert simulator.settings is settings
    assert simulator.effective_seed == 7
    assert simulator.update({"bandwidth": None, "quotas": None}).quotas == {}
    assert simulator.update({"quotas": {"PutImage": 2}}).quotas == {"PutImage": 2.0}
    assert simulator.update({"quotas": {}}).quotas == {}
    assert simulator.settings.bandwidth is None


def test_update_round_trips_to_json() -> None:
    original = SimulationSettings(
        latency_ms=5,
        bandwidth=1e6,
        quotas={"PutImage": 10},
        fault_rate=0.1,
        drop_rate=0.2,
        corrupt_rate=0.3,
        upload_expiry=60,
        seed=3,
    )
    simulator = make(FakeTime())
    assert simulator.update(original.to_json()) == original


@pytest.mark.parametrize(
    "changes",
    [
        {"latency": 5},
        {"bandwidth": "fast"},
        {"bandwidth": 0},
        {"quotas": "ecr-gov"},
        {"quotas": 10},
        {"fault_rate": "0.5"},
        {"latency_ms": 10, "corrupt_rate": 2},
    ],
)
def test_update_rejects_and_keeps_settings(changes: dict[str, object]) -> None:
    simulator = make(FakeTime(), latency_ms=1)
    before = simulator.settings
    with pytest.raises(ValueError):
        simulator.update(changes)
    assert simulator.settings is before


# --- latency ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_latency_sleeps_configured_time() -> None:
    time = FakeTime()
    simulator = make(time)
    await simulator.latency()
    assert time.sleeps == []
    simulator.update({"latency_ms": 250})
    await simulator.latency()
    assert time.sleeps == [0.25]


# --- token buckets ----------------------------------------------------------------------------


def test_bucket_allows_burst_then_rate() -> None:
    time = FakeTime()
    simulator = make(time, quotas={"PutImage": 10})
    assert [simulator.throttled("PutImage") for _ in range(11)] == [False] * 10 + [True]
    time.now += 0.1
    assert simulator.throttled("PutImage") is False
    assert simulator.throttled("PutImage") is True
    time.now += 0.05
    assert simulator.throttled("PutImage") is True
    time.now += 0.05
    assert simulator.throttled("PutImage") is False


def test_bucket_refills_to_burst_only() -> None:
    time = FakeTime()
    simulator = make(time, quotas={"CompleteLayerUpload": 10})
    for _ in range(10):
        simulator.throttled("CompleteLayerUpload")
    time.now += 3600
    allowed = sum(not simulator.throttled("CompleteLayerUpload") for _ in range(50))
    assert allowed == 10


def test_bucket_sustains_its_rate() -> None:
    time = FakeTime()
    simulator = make(time, quotas={"UploadLayerPart": 260})
    allowed = 0
    # 10 seconds of a client asking every millisecond: burst 260 plus 260/s.
    for _ in range(10_000):
        allowed += not simulator.throttled("UploadLayerPart")
        time.now += 0.001
    assert allowed == pytest.approx(260 + 260 * 10, abs=1)


def test_slow_quota_has_burst_of_one() -> None:
    time = FakeTime()
    simulator = make(time, quotas={"PutImage": 0.5})
    assert simulator.throttled("PutImage") is False
    assert simulator.throttled("PutImage") is True
    time.now += 1.9
    assert simulator.throttled("PutImage") is True
    time.now += 0.1
    assert simulator.throttled("PutImage") is False


def test_unlisted_operations_are_never_throttled() -> None:
    time = FakeTime()
    simulator = make(time, quotas={"PutImage": 1})
    assert not any(simulator.throttled("UploadLayerPart") for _ in range(1000))
    assert simulator.throttled("PutImage") is False
    assert simulator.throttled("PutImage") is True


def test_buckets_are_per_operation() -> None:
    time = FakeTime()
    simulator = make(time, quotas=QUOTA_PROFILES["ecr-public"])
    for _ in range(10):
        assert simulator.throttled("InitiateLayerUpload") is False
    assert simulator.throttled("InitiateLayerUpload") is True
    assert simulator.throttled("CompleteLayerUpload") is False


def test_changed_quotas_start_full_and_disabling_stops_throttling() -> None:
    time = FakeTime()
    simulator = make(time, quotas={"PutImage": 1})
    simulator.throttled("PutImage")
    assert simulator.throttled("PutImage") is True
    simulator.update({"quotas": {"PutImage": 2}})
    assert [simulator.throttled("PutImage") for _ in range(3)] == [False, False, True]
    simulator.update({"quotas": None})
    assert not any(simulator.throttled("PutImage") for _ in range(10))


def test_unchanged_quotas_keep_bucket_state() -> None:
    time = FakeTime()
    simulator = make(time, quotas={"PutImage": 1})
    simulator.throttled("PutImage")
    simulator.update({"quotas": {"PutImage": 1}, "latency_ms": 3})
    assert simulator.throttled("PutImage") is True


# --- bandwidth --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_bandwidth_paces_bytes() -> None:
    time = FakeTime()
    simulator = make(time, bandwidth=1000.0)
    connection = simulator.connection_bandwidth()
    start = time.now
    for _ in range(4):
        await connection.consume(250)
    assert time.sleeps == pytest.approx([0.25] * 4)
    assert time.now - start == pytest.approx(1.0)


@pytest.mark.anyio
async def test_bandwidth_counts_time_spent_elsewhere() -> None:
    time = FakeTime()
    simulator = make(time, bandwidth=1000.0)
    connection = simulator.connection_bandwidth()
    await connection.consume(500)
    # Time spent between chunks (parsing, disk) counts towards the transfer, so the next
    # chunk only waits for what remains of its share.
    assert time.sleeps == pytest.approx([0.5])
    time.now += 0.2
    await connection.consume(500)
    assert time.sleeps == pytest.approx([0.5, 0.5])


@pytest.mark.anyio
async def test_bandwidth_gives_no_credit_for_idle_time() -> None:
    time = FakeTime()
    simulator = make(time, bandwidth=1000.0)
    connection = simulator.connection_bandwidth()
    time.now += 60
    await connection.consume(2000)
    assert time.sleeps == pytest.approx([2.0])


@pytest.mark.anyio
async def test_bandwidth_reservations_queue_up() -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    # A clock that stands still: the second chunk is reserved before the first one's time
    # has passed, so it waits for the first.
    connection = ConnectionBandwidth(rate=lambda: 100.0, clock=lambda: 0.0, sleep=record)
    await connection.consume(100)
    await connection.consume(100)
    assert slept == pytest.approx([1.0, 2.0])


@pytest.mark.anyio
async def test_connections_are_paced_independently() -> None:
    time = FakeTime()
    simulator = make(time, bandwidth=1000.0)
    first = simulator.connection_bandwidth()
    second = simulator.connection_bandwidth()
    await first.consume(1000)
    time.now -= 1.0  # as if the second connection's bytes arrived in the same second
    await second.consume(1000)
    assert time.sleeps == pytest.approx([1.0, 1.0])


@pytest.mark.anyio
async def test_bandwidth_follows_updates() -> None:
    time = FakeTime()
    simulator = make(time)
    connection = simulator.connection_bandwidth()
    await connection.consume(10**9)
    assert time.sleeps == []
    simulator.update({"bandwidth": "8kbit/s"})
    await connection.consume(500)
    assert time.sleeps == pytest.approx([0.5])
    simulator.update({"bandwidth": None})
    await connection.consume(10**9)
    assert time.sleeps == pytest.approx([0.5])


@pytest.mark.anyio
async def test_bandwidth_rejects_negative_counts() -> None:
    connection = make(FakeTime(), bandwidth=10.0).connection_bandwidth()
    with pytest.raises(ValueError):
        await connection.consume(-1)


# --- faults and corruption --------------------------------------------------------------------


def fault_sequence(simulator: Simulator, operation: str, count: int) -> list[str]:
    return [simulator.decide_fault(operation) for _ in range(count)]


def test_no_faults_by_default() -> None:
    simulator = make(FakeTime())
    assert set(fault_sequence(simulator, "UploadLayerPart", 1000)) == {"none"}


def test_same_seed_same_decisions() -> None:
    fields = {"fault_rate": 0.2, "drop_rate": 0.1, "corrupt_rate": 0.5, "seed": 42}
    first, second = make(FakeTime(), **fields), make(FakeTime(), **fields)
    assert fault_sequence(first, "UploadLayerPart", 500) == fault_sequence(
        second, "UploadLayerPart", 500
    )
    data = bytes(range(256)) * 4
    assert [first.corrupt(data) for _ in range(50)] == [second.corrupt(data) for _ in range(50)]


def test_different_seeds_differ() -> None:
    first = make(FakeTime(), fault_rate=0.5, seed=1)
    second = make(FakeTime(), fault_rate=0.5, seed=2)
    assert fault_sequence(first, "PutImage", 200) != fault_sequence(second, "PutImage", 200)


def test_unseeded_simulators_draw_their_seed_from_the_os() -> None:
    first, second = make(FakeTime()), make(FakeTime())
    assert first.effective_seed != second.effective_seed
    replay = make(FakeTime(), fault_rate=0.5, seed=first.effective_seed)
    first.update({"fault_rate": 0.5})
    assert fault_sequence(first, "PutImage", 100) == fault_sequence(replay, "PutImage", 100)


def test_fault_rates_are_honoured() -> None:
    simulator = make(FakeTime(), fault_rate=0.2, drop_rate=0.1, seed=5)
    decisions = fault_sequence(simulator, "UploadLayerPart", 10_000)
    assert decisions.count("error") == pytest.approx(2000, abs=200)
    assert decisions.count("drop") == pytest.approx(1000, abs=150)


def test_every_request_fails_at_rate_one() -> None:
    assert set(fault_sequence(make(FakeTime(), fault_rate=1.0), "PutImage", 100)) == {"error"}
    assert set(fault_sequence(make(FakeTime(), drop_rate=1.0), "PutImage", 100)) == {"drop"}


def test_raising_the_rate_only_adds_faults() -> None:
    low = fault_sequence(make(FakeTime(), fault_rate=0.1, seed=9), "PutImage", 2000)
    high = fault_sequence(make(FakeTime(), fault_rate=0.3, seed=9), "PutImage", 2000)
    low_faults = {i for i, d in enumerate(low) if d == "error"}
    high_faults = {i for i, d in enumerate(high) if d == "error"}
    assert low_faults < high_faults


def test_operations_have_their_own_streams() -> None:
    alone = make(FakeTime(), fault_rate=0.5, seed=11)
    mixed = make(FakeTime(), fault_rate=0.5, seed=11)
    expected = fault_sequence(alone, "UploadLayerPart", 100)
    got = []
    for _ in range(100):
        mixed.decide_fault("BatchCheckLayerAvailability")
        got.append(mixed.decide_fault("UploadLayerPart"))
    assert got == expected


def test_setting_the_seed_restarts_the_streams() -> None:
    simulator = make(FakeTime(), fault_rate=0.5, seed=4)
    first = fault_sequence(simulator, "PutImage", 50)
    simulator.update({"seed": 4})
    assert fault_sequence(simulator, "PutImage", 50) == first


def test_corrupt_flips_exactly_one_byte() -> None:
    simulator = make(FakeTime(), corrupt_rate=1.0, seed=1)
    data = bytes(1000)
    damaged = simulator.corrupt(data)
    differing = [i for i in range(len(data)) if damaged[i] != data[i]]
    assert len(damaged) == len(data)
    assert len(differing) == 1
    assert damaged[differing[0]] == 0xFF


def test_corrupt_returns_the_same_object_when_sparing() -> None:
    simulator = make(FakeTime(), seed=1)
    data = b"x" * 100
    assert all(simulator.corrupt(data) is data for _ in range(100))
    assert make(FakeTime(), corrupt_rate=1.0).corrupt(b"") == b""


def test_corrupt_rate_is_honoured() -> None:
    simulator = make(FakeTime(), corrupt_rate=0.25, seed=3)
    data = b"layer" * 10
    damaged = sum(simulator.corrupt(data) is not data for _ in range(4000))
    assert damaged == pytest.approx(1000, abs=120)
