"""The pipeline driven directly: an in-memory source and destination, a fake clock, a seeded rng.

Every test reads the order in which :class:`~fakes.FakeDestination` answered requests: that
order is the pipeline's promise (blobs before manifests, children before the tagged index, one
upload per digest, most shared first, retries where the error table says so).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from fakes import DENIED_HINT, Call, FakeClock, FakeDestination, FakeSource
from layerhoist.image import sha256_digest as digest
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.pipeline import Pipeline
from layerhoist.transfer.report import BlobOutcome, PushResult
from layerhoist.transfer.retry import Backoff, RetryEvent
from layerhoist.units import KiB, MiB

pytestmark = pytest.mark.anyio

SEED = 1234
#: Real-time guard so a lost wake-up fails the test instead of hanging the suite.
HANG_GUARD_SECONDS = 10.0
#: The fake destination's part size (:data:`fakes.FAKE_LIMITS`' minimum).
PART = 4 * KiB
CONFIG = PushConfig(
    blob_concurrency=3,
    memory_budget=1 * MiB,
    # Every part is hashed on the event loop: a worker thread would let the operating
    # system's scheduler decide the order of requests.
    thread_hash_threshold=1 * MiB,
    backoff_initial=1.0,
    backoff_base=2.0,
    backoff_max=8.0,
    # Attempts alone decide when retries stop; the time allowance has tests of its own.
    retry_for=0.0,
)
#: One worker: blobs start exactly in the order the scheduler hands them out.
ONE_WORKER = CONFIG.replace(blob_concurrency=1)


def blob(label: str, size: int) -> bytes:
    """``size`` bytes of content unique to ``label`` (so each label is its own digest)."""
    pattern = f"{label}|".encode()
    return (pattern * (size // len(pattern) + 1))[:size]


@pytest.fixture
def clock() -> FakeClock:
    """The clock and sleep of the pipeline and the destination."""
    return FakeClock()


@pytest.fixture
def source() -> FakeSource:
    """An empty in-memory source; each test adds its images."""
    return FakeSource()


@pytest.fixture
def destination(clock: FakeClock) -> FakeDestination:
    """An empty in-memory destination answering on ``clock``."""
    return FakeDestination(part_size=PART, clock=clock)


async def push(
    source: FakeSource,
    destination: FakeDestination,
    clock: FakeClock,
    *,
    config: PushConfig = CONFIG,
) -> PushResult:
    """Push every image of ``source`` under its own tag, on the fake clock and a seeded rng."""
    pipeline = Pipeline(
        source=source,
        destination=destination,
        config=config,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(SEED),
    )
    images = await source.load()
    with anyio.fail_after(HANG_GUARD_SECONDS):
        return await pipeline.run(images, targets=[image.tag for image in images])


async def wait_until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until ``condition`` holds (the hang guard bounds the wait)."""
    with anyio.fail_after(HANG_GUARD_SECONDS):
        while not condition():
            await anyio.lowlevel.checkpoint()


def position(calls: list[Call], op: str, subject: str) -> int:
    """Where the one successful ``op`` request about ``subject`` sits in ``calls``."""
    (index,) = [
        i
        for i, call in enumerate(calls)
        if call.op == op and call.subject == subject and call.error is None
    ]
    return index


def blob_calls(destination: FakeDestination, data: bytes) -> list[tuple[str, int, int, str | None]]:
    """The requests about the blob ``data``: ``(op, upload, part, error)`` in answer order."""
    return [
        (call.op, call.upload, call.part, call.error)
        for call in destination.calls
        if call.subject == digest(data)
    ]


def outcome(result: PushResult, data: bytes) -> BlobOutcome:
    """The report's outcome of the blob ``data``."""
    (found,) = [blob for blob in result.blobs if blob.digest == digest(data)]
    return found


def one_layer_image(source: FakeSource) -> bytes:
    """Add an image of one three-part layer (and its config); the layer's bytes."""
    layer = blob("layer", 3 * PART - 1)
    source.add_image("v1", b"config", [layer])
    return layer


def the_one_backoff(clock: FakeClock) -> float:
    """The one backoff slept on ``clock``, checked to be the first draw of the seeded generator
    for a first retry, under that retry's ceiling.
    """
    backoff = Backoff.from_config(CONFIG)
    delay = backoff.wait(1, random.Random(SEED), retry_after=None)
    assert 0.0 < delay <= backoff.ceiling(1)
    assert clock.sleeps == [delay]
    return delay


# --- order ------------------------------------------------------------------------------------


async def test_every_blob_of_an_image_is_committed_before_its_manifest_is_put(
    source: FakeSource, destination: FakeDestination, clock: FakeClock
) -> None:
    shared, held = blob("shared", 9 * KiB), blob("held", 5 * KiB)
    one = source.add_image("one", b"config-one", [shared, blob("one", 6 * KiB)])
    two = source.add_image("two", b"config-two", [shared, held])
    gate = destination.hold("commit", digest(held))
    results: list[PushResult] = []

    async def run() -> None:
        results.append(await push(source, destination, clock))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        # While the last blob of image two is being committed, image one (all its blobs
        # landed) is put, and image two waits.
        await wait_until(
            lambda: gate.entered.is_set() and one.manifest.digest in destination.manifests
        )
        assert two.manifest.digest not in destination.manifests
        gate.release()

    (result,) = results
    assert result.ok
    puts = destination.answered("put_manifest")
    assert [(put.subject, put.tag) for put in puts] == [
        (one.manifest.digest, "one"),
        (two.manifest.digest, "two"),
    ]
    for image in (one, two):
        put = position(destination.calls, "put_manifest", image.manifest.digest)
        assert len(image.blobs()) == 3
        for descriptor in image.blobs():
            assert position(destination.calls, "commit", descriptor.digest) < put
    assert destination.blobs[digest(shared)] == shared


async def test_index_children_are_put_first_and_only_the_index_is_tagged(
    source: FakeSource, destination: FakeDestination, clock: FakeClock
) -> None:
    base = source.add_blob(blob("base", 6 * KiB))
    children = [
        source.manifest(f"config-{arch}".encode(), [base, blob(arch, 5 * KiB)])
        for arch in ("amd64", "arm64")
    ]
    index = source.add_index("multi", children)

    result = await push(source, destination, clock)

    assert result.ok
    assert result.images[0].destination == "fake-destination:multi"
    puts = [(call.subject, call.tag) for call in destination.calls if call.op == "put_manifest"]
    assert puts == [
        (children[0].digest, None),
        (children[1].digest, None),
        (index.manifest.digest, "multi"),
    ]
    # The index's blobs: the shared base, then a config and a layer per platform.
    commits = [i for i, call in enumerate(destination.calls) if call.op == "commit"]
    assert len(commits) == 5
    first_put = position(destination.calls, "put_manifest", children[0].digest)
    assert max(commits) < first_put


# --- what gets uploaded, and when ---------------------------------------------------------------


async def test_a_shared_blob_is_uploaded_once_and_present_blobs_not_at_all(
    source: FakeSource, destination: FakeDestination, clock: FakeClock
) -> None:
    shared, present = blob("shared", 10 * KiB), blob("present", 5 * KiB)
    destination.present.add(digest(present))
    images = [
        source.add_image(f"v{n}", f"config-{n}".encode(), [shared, present, blob(f"own-{n}", PART)])
        for n in (1, 2, 3)
    ]

    result = await push(source, destination, clock)

    assert result.ok
    uploaded = {d.digest for image in images for d in image.blobs()} - {digest(present)}
    starts = Counter(call.subject for call in destination.answered("start_upload"))
    assert starts == Counter(uploaded)
    assert all(n == 1 for n in starts.values())
    assert [op for op, *_ in blob_calls(destination, shared)] == [
        "start_upload",
        "send_part",
        "send_part",
        "send_part",
        "commit",
    ]
    assert [call.op for call in destination.calls if call.subject == digest(present)] == []
    assert len(destination.answered("missing_blobs")) == 1
    assert outcome(result, present).status == "present"
    assert outcome(result, present).attempts == 0
    assert outcome(result, shared).status == "uploaded"
    assert outcome(result, shared).bytes_sent == len(shared)


async def test_most_shared_blobs_start_first_then_the_larger(
    source: FakeSource, destination: FakeDestination, clock: FakeClock
) -> None:
    everywhere = blob("everywhere", 4 * KiB)
    pair_small, pair_large = blob("pair-small", 4 * KiB + 1), blob("pair-large", 6 * KiB)
    huge, mid = blob("huge", 12 * KiB), blob("mid", 8 * KiB)
    # Configs of distinct sizes, so no two blobs tie on (uses, size).
    configs = [b"config-a", b"config-bb", b"config-ccc"]
    source.add_image("a", configs[0], [everywhere, pair_small, huge])
    source.add_image("b", configs[1], [everywhere, pair_small, pair_large, mid])
    source.add_image("c", configs[2], [everywhere, pair_large])

    result = await push(source, destination, clock, config=ONE_WORKER)

    assert result.ok
    expected = [everywhere, pair_large, pair_small, huge, mid, *reversed(configs)]
    started = [call.subject for call in destination.answered("start_upload")]
    assert started == [digest(data) for data in expected]


# --- retries ---------------------------------------------------------------------------------


async def test_a_requeued_blob_starts_over_with_a_fresh_upload_after_its_backoff(
    source: FakeSource, destination: FakeDestination, clock: FakeClock
) -> None:
    layer = one_layer_image(source)
    destination.fail("commit", digest(layer), "BadUpload")

    result = await push(source, destination, clock, config=ONE_WORKER)

    assert result.ok
    first, second = sorted({upload for _, upload, _, _ in blob_calls(destination, layer)})
    assert blob_calls(destination, layer) == [
        ("start_upload", first, -1, None),
        *[("send_part", first, part, None) for part in range(3)],
        ("commit", first, -1, "BadUpload"),
        ("start_upload", second, -1, None),
        *[("send_part", second, part, None) for part in range(3)],
        ("commit", second, -1, None),
    ]
    # One backoff, slept on the fake clock before the fresh upload started.
    delay = the_one_backoff(clock)
    restart = [c for c in destination.answered("start_upload") if c.upload == second]
    assert restart[0].at == delay
    assert result.retries == [
        RetryEvent(
            digest(layer), "layer", 1, "BadUpload", "the fake service says BadUpload", delay, 0.0
        )
    ]
    assert outcome(result, layer).attempts == 2
    assert outcome(result, layer).bytes_sent == 2 * len(layer)
    assert destination.blobs[digest(layer)] == layer


async def test_a_retry_part_error_resends_the_same_part_of_the_same_upload(
    source: FakeSource, destination: FakeDestination, clock: FakeClock
) -> None:
    layer = one_layer_image(source)
    destination.fail("send_part", digest(layer), "Transient", part=1)

    result = await push(source, destination, clock, config=ONE_WORKER)

    assert result.ok
    (upload,) = {upload for _, upload, _, _ in blob_calls(destination, layer)}
    assert blob_calls(destination, layer) == [
        ("start_upload", upload, -1, None),
        ("send_part", upload, 0, None),
        ("send_part", upload, 1, "Transient"),
        ("send_part", upload, 1, None),
        ("send_part", upload, 2, None),
        ("commit", upload, -1, None),
    ]
    delay = the_one_backoff(clock)
    assert [(e.scope, e.attempt, e.cause, e.delay) for e in result.retries] == [
        ("part", 1, "Transient", delay)
    ]
    # The part sent twice landed once.
    assert destination.blobs[digest(layer)] == layer


async def test_a_part_whose_retries_run_out_requeues_the_blob(
    source: FakeSource, destination: FakeDestination, clock: FakeClock
) -> None:
    layer = one_layer_image(source)
    for _ in range(2):
        destination.fail("send_part", digest(layer), "Transient", part=2)

    result = await push(source, destination, clock, config=ONE_WORKER.replace(part_attempts=2))

    assert result.ok
    assert [(e.scope, e.attempt, e.cause) for e in result.retries] == [
        ("part", 1, "Transient"),
        ("layer", 1, "Transient"),
    ]
    assert result.retry_causes() == {"Transient": 2}
    assert len(destination.answered("start_upload")) == 3  # the config, and the layer twice
    assert outcome(result, layer).attempts == 2
    assert destination.blobs[digest(layer)] == layer


# --- failures --------------------------------------------------------------------------------


async def test_a_corrupt_blob_fails_only_the_images_that_reference_it(
    source: FakeSource, destination: FakeDestination, clock: FakeClock
) -> None:
    shared, promised = blob("shared", 5 * KiB), blob("promised", 9 * KiB)
    # Same size, other bytes: only the digest check after the last part can tell.
    corrupt = source.add_blob(promised, stored=blob("tampered", len(promised)))
    first = source.add_image("first", b"config-first", [shared, corrupt])
    clean = source.add_image("clean", b"config-clean", [shared, blob("clean", 6 * KiB)])
    last = source.add_image("last", b"config-last", [corrupt])

    result = await push(source, destination, clock)

    assert [image.status for image in result.images] == ["failed", "pushed", "failed"]
    for image in (result.images[0], result.images[2]):
        assert image.error is not None
        assert "not tagged" in image.error
        assert f"source blob {corrupt.digest} is corrupt" in image.error
    assert [call.subject for call in destination.answered("put_manifest")] == [
        clean.manifest.digest
    ]
    assert first.manifest.digest not in destination.manifests
    assert last.manifest.digest not in destination.manifests
    # Read once, every part sent, never committed, and not retried: no retry can fix it.
    assert [op for op, *_ in blob_calls(destination, promised)] == [
        "start_upload",
        "send_part",
        "send_part",
        "send_part",
    ]
    assert corrupt.digest not in destination.blobs
    assert outcome(result, promised).status == "failed"
    assert result.retries == []


async def test_cancelling_mid_upload_puts_no_manifest(
    source: FakeSource, destination: FakeDestination, clock: FakeClock
) -> None:
    held = blob("held", 9 * KiB)
    one = source.add_image("one", b"config-one", [held, blob("one", 5 * KiB)])
    two = source.add_image("two", b"config-two", [blob("two", 6 * KiB), held])
    gate = destination.hold("send_part", digest(held))
    others = {d.digest for image in (one, two) for d in image.blobs()} - {digest(held)}

    async with anyio.create_task_group() as tg:
        tg.start_soon(push, source, destination, clock)
        # Everything but the held blob has landed: only that upload stands between the
        # images and their tags when the run is cancelled.
        await wait_until(lambda: set(destination.blobs) == others)
        assert gate.entered.is_set()
        tg.cancel_scope.cancel()

    assert gate.cancelled
    assert [call for call in destination.calls if call.op == "put_manifest"] == []
    assert destination.manifests == {}
    assert digest(held) not in destination.blobs


async def test_a_fail_verdict_fails_the_blobs_images_with_the_tables_hint(
    source: FakeSource, destination: FakeDestination, clock: FakeClock
) -> None:
    denied, flaky = blob("denied", 5 * KiB), blob("flaky", 9 * KiB)
    source.add_image("refused", b"config-refused", [denied, flaky])
    kept = source.add_image("kept", b"config-kept", [flaky, blob("kept", 6 * KiB)])
    destination.fail("commit", digest(denied), "Denied")
    destination.fail("send_part", digest(flaky), "Transient", part=2)

    result = await push(source, destination, clock)

    refused, pushed = result.images
    assert pushed.status == "pushed"
    assert refused.status == "failed"
    assert refused.error is not None
    assert refused.error.startswith("fake-destination:refused: not tagged: ")
    assert f"{digest(denied)}: Denied" in refused.error
    assert DENIED_HINT in refused.error
    assert [call.subject for call in destination.answered("put_manifest")] == [kept.manifest.digest]
    # A FAIL is final: one upload, no requeue, and the error kept on the blob's outcome.
    assert [op for op, _, _, error in blob_calls(destination, denied)] == [
        "start_upload",
        "send_part",
        "send_part",
        "commit",
    ]
    assert outcome(result, denied).status == "failed"
    assert outcome(result, denied).attempts == 1
    assert DENIED_HINT in (outcome(result, denied).error or "")
    # The report tells what was retried: the one flaky part, nothing for the refusal.
    assert result.retry_causes() == {"Transient": 1}
    assert [(e.subject, e.scope, e.attempt) for e in result.retries] == [(digest(flaky), "part", 1)]
    assert "1 retries (Transient 1)" in result.summary()
