"""Resuming through the upload journal: a run is killed mid-blob, the next one resumes it.

The pipeline drives :class:`~fakes.FakeDestination` (whose uploads outlive a run, as a
service's do) and journals into a real state file. A "killed" run is one cancelled while the
destination holds a part's request, so the journal and the destination stand exactly as a
SIGKILL there would leave them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import anyio
import pytest

from fakes import FakeClock, FakeDestination, FakeSource, Gate
from layerhoist.image import Descriptor
from layerhoist.image import sha256_digest as digest
from layerhoist.state import StateFile
from layerhoist.state.journal import StateJournal
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.pipeline import Pipeline
from layerhoist.transfer.report import BlobOutcome, PushResult
from layerhoist.units import KiB, MiB, format_bytes

pytestmark = pytest.mark.anyio

SEED = 99
HANG_GUARD_SECONDS = 10.0
#: The fake destination's part size.
PART = 4 * KiB
#: Parts of the layer every test pushes.
PARTS = 8
#: The part the killed run was sending when it died (parts before it are journaled).
KILLED_AT = 3
CONFIG = PushConfig(
    blob_concurrency=2,
    memory_budget=1 * MiB,
    thread_hash_threshold=1 * MiB,
    retry_for=0.0,
    # The layer is journaled, the image config (a few bytes) is not.
    resume_min_size=2 * PART,
)


def layer_bytes(label: str = "layer") -> bytes:
    """:data:`PARTS` parts of bytes unique to ``label``, the last part short."""
    pattern = f"{label}|".encode()
    size = PARTS * PART - 7
    return (pattern * (size // len(pattern) + 1))[:size]


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[StateJournal]:
    """The upload journal of a fresh state file, held for the test."""
    with StateFile(tmp_path / "state.sqlite") as state:
        yield StateJournal(state.db)


@pytest.fixture
def clock() -> FakeClock:
    """The pipeline's clock and sleep."""
    return FakeClock()


def pipeline(
    source: FakeSource,
    destination: FakeDestination,
    journal: StateJournal,
    clock: FakeClock,
) -> Pipeline:
    """A pipeline over the fakes journaling into ``journal``, on the fake clock."""
    return Pipeline(
        source=source,
        destination=destination,
        config=CONFIG,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(SEED),
        journal=journal,
    )


async def run(
    source: FakeSource, destination: FakeDestination, journal: StateJournal, clock: FakeClock
) -> PushResult:
    """One whole run of every image of ``source``."""
    images = await source.load()
    with anyio.fail_after(HANG_GUARD_SECONDS):
        return await pipeline(source, destination, journal, clock).run(
            images, targets=[image.tag for image in images]
        )


async def run_until_held(
    source: FakeSource,
    destination: FakeDestination,
    journal: StateJournal,
    clock: FakeClock,
    gates: list[Gate],
) -> None:
    """A run cancelled (as if killed) once the destination holds a request at every gate."""
    images = await source.load()
    push = pipeline(source, destination, journal, clock)

    async def go() -> None:
        await push.run(images, targets=[image.tag for image in images])

    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(go)
            for gate in gates:
                await gate.entered.wait()
            tg.cancel_scope.cancel()


async def killed_run(
    source: FakeSource,
    destination: FakeDestination,
    journal: StateJournal,
    clock: FakeClock,
    *,
    layer: str,
) -> None:
    """A run killed while the destination holds part :data:`KILLED_AT` of ``layer``."""
    gate = destination.hold("send_part", layer, part=KILLED_AT)
    await run_until_held(source, destination, journal, clock, [gate])
    assert layer not in destination.blobs
    assert journal.pending(destination.description)[layer].acknowledged == KILLED_AT * PART


class Killed(NamedTuple):
    """A plain layer in a source, and the destination a killed run left it half sent to."""

    data: bytes
    source: FakeSource
    layer: str
    destination: FakeDestination


async def killed_layer(
    journal: StateJournal, clock: FakeClock, *, reports_offset: bool = False
) -> Killed:
    """:func:`killed_run` of a fresh layer (:func:`layer_bytes`) into a fresh destination."""
    data = layer_bytes()
    source = FakeSource()
    layer = image_of(source, data)
    destination = FakeDestination(part_size=PART, clock=clock, reports_offset=reports_offset)
    await killed_run(source, destination, journal, clock, layer=layer)
    return Killed(data, source, layer, destination)


def image_of(source: FakeSource, layer: bytes | Descriptor) -> str:
    """Add an image of ``layer`` (and a small config) to ``source``; the layer's digest."""
    image = source.add_image("v1", b"config", [layer])
    return image.manifest.layers[0].digest


def sent_parts(destination: FakeDestination, layer: str, *, after: int) -> list[int]:
    """The parts of ``layer`` the destination accepted from its call ``after`` on."""
    return [
        call.part
        for call in destination.calls[after:]
        if call.op == "send_part" and call.subject == layer and call.error is None
    ]


def ops(destination: FakeDestination, layer: str, *, after: int) -> list[str]:
    """The requests about ``layer`` from call ``after`` on, in order."""
    return [call.op for call in destination.calls[after:] if call.subject == layer]


def outcome(result: PushResult, layer: str) -> BlobOutcome:
    """The report's outcome of ``layer``."""
    (found,) = [blob for blob in result.blobs if blob.digest == layer]
    return found


@pytest.mark.parametrize("reports_offset", [True, False], ids=["status-call", "first-part"])
async def test_a_killed_upload_resumes_without_sending_its_prefix_again(
    journal: StateJournal, clock: FakeClock, reports_offset: bool
) -> None:
    data, source, layer, destination = await killed_layer(
        journal, clock, reports_offset=reports_offset
    )
    mark = len(destination.calls)

    result = await run(source, destination, journal, clock)

    assert result.ok
    assert ops(destination, layer, after=mark)[0] == "resume_upload"
    assert "start_upload" not in ops(destination, layer, after=mark)
    assert sent_parts(destination, layer, after=mark) == list(range(KILLED_AT, PARTS))
    assert destination.blobs[layer] == data
    assert outcome(result, layer).bytes_sent == len(data) - KILLED_AT * PART
    assert outcome(result, layer).bytes_resumed == KILLED_AT * PART
    assert f"({format_bytes(KILLED_AT * PART)} more resumed)" in result.summary()
    assert journal.pending(destination.description) == {}


@pytest.mark.parametrize("reports_offset", [True, False], ids=["status-call", "first-part"])
async def test_a_part_that_landed_unjournaled_is_not_sent_again(
    journal: StateJournal, clock: FakeClock, reports_offset: bool
) -> None:
    data, source, layer, destination = await killed_layer(
        journal, clock, reports_offset=reports_offset
    )
    # The run died between the service accepting a part and the journal's write.
    journal.truncate(destination.description, layer, parts=KILLED_AT - 1)
    mark = len(destination.calls)

    result = await run(source, destination, journal, clock)

    assert result.ok
    assert sent_parts(destination, layer, after=mark) == list(range(KILLED_AT, PARTS))
    assert destination.blobs[layer] == data


async def test_a_destination_holding_less_than_journaled_gets_the_rest_again(
    journal: StateJournal, clock: FakeClock
) -> None:
    data, source, layer, destination = await killed_layer(journal, clock)
    (upload,) = destination.sessions.values()
    del upload.received[PART:]
    mark = len(destination.calls)
    # This run is killed too, once it re-sent one part: the journal must say what is held.
    gate = destination.hold("send_part", layer, part=2)
    await run_until_held(source, destination, journal, clock, [gate])
    entry = journal.pending(destination.description)[layer]
    assert [part.index for part in entry.parts] == [0, 1]
    assert entry.acknowledged == 2 * PART

    result = await run(source, destination, journal, clock)

    assert result.ok
    assert sent_parts(destination, layer, after=mark) == list(range(1, PARTS))
    assert destination.blobs[layer] == data


async def test_an_offset_inside_a_part_resumes_with_its_tail(
    journal: StateJournal, clock: FakeClock
) -> None:
    data, source, layer, destination = await killed_layer(journal, clock)
    # A registry keeps what arrived of a chunk whose request was cut.
    (upload,) = destination.sessions.values()
    held = 2 * PART + 100
    del upload.received[held:]
    mark = len(destination.calls)

    result = await run(source, destination, journal, clock)

    assert result.ok
    assert sent_parts(destination, layer, after=mark) == list(range(2, PARTS))
    assert outcome(result, layer).bytes_sent == len(data) - held
    assert destination.blobs[layer] == data


async def test_a_prefix_that_reads_differently_starts_the_blob_afresh(
    journal: StateJournal, clock: FakeClock
) -> None:
    data = layer_bytes()
    changed = bytearray(data)
    changed[PART + 5] ^= 0xFF
    broken = FakeSource()
    layer = image_of(broken, broken.add_blob(data, stored=bytes(changed)))
    destination = FakeDestination(part_size=PART, clock=clock)
    await killed_run(broken, destination, journal, clock, layer=layer)
    mark = len(destination.calls)

    fixed = FakeSource()
    image_of(fixed, data)
    result = await run(fixed, destination, journal, clock)

    assert result.ok
    assert ops(destination, layer, after=mark)[:2] == ["resume_upload", "start_upload"]
    assert sent_parts(destination, layer, after=mark) == list(range(PARTS))
    assert outcome(result, layer).bytes_resumed == 0
    assert destination.blobs[layer] == data
    assert journal.pending(destination.description) == {}


async def test_an_expired_upload_starts_the_blob_afresh(
    journal: StateJournal, clock: FakeClock
) -> None:
    data, source, layer, destination = await killed_layer(journal, clock)
    (session,) = destination.sessions
    destination.expire(session)
    mark = len(destination.calls)

    result = await run(source, destination, journal, clock)

    assert result.ok
    assert ops(destination, layer, after=mark)[:2] == ["resume_upload", "start_upload"]
    assert sent_parts(destination, layer, after=mark) == list(range(PARTS))
    assert destination.blobs[layer] == data


async def test_a_blob_whose_rest_is_corrupt_is_never_committed(
    journal: StateJournal, clock: FakeClock
) -> None:
    data = layer_bytes()
    corrupt = bytearray(data)
    corrupt[(PARTS - 1) * PART + 3] ^= 0xFF
    source = FakeSource()
    layer = image_of(source, source.add_blob(data, stored=bytes(corrupt)))
    destination = FakeDestination(part_size=PART, clock=clock)
    await killed_run(source, destination, journal, clock, layer=layer)
    mark = len(destination.calls)

    result = await run(source, destination, journal, clock)

    assert not result.ok
    assert ops(destination, layer, after=mark)[0] == "resume_upload"
    assert "commit" not in ops(destination, layer, after=mark)
    assert layer not in destination.blobs
    assert outcome(result, layer).status == "failed"
    assert "corrupt" in (outcome(result, layer).error or "")


async def test_a_blob_found_present_is_forgotten(journal: StateJournal, clock: FakeClock) -> None:
    _, source, layer, destination = await killed_layer(journal, clock)
    destination.present.add(layer)
    mark = len(destination.calls)

    result = await run(source, destination, journal, clock)

    assert result.ok
    assert ops(destination, layer, after=mark) == []
    assert journal.pending(destination.description) == {}


async def test_only_blobs_past_the_threshold_are_journaled(
    journal: StateJournal, clock: FakeClock
) -> None:
    large, small = layer_bytes("large"), layer_bytes("small")[: CONFIG.resume_min_size - 1]
    source = FakeSource()
    source.add_image("v1", b"config", [large, small])
    destination = FakeDestination(part_size=PART, clock=clock)
    gates = [destination.hold("send_part", digest(data), part=1) for data in (large, small)]
    await run_until_held(source, destination, journal, clock, gates)
    pending = journal.pending(destination.description)
    assert list(pending) == [digest(large)]
    assert pending[digest(large)].acknowledged == PART
