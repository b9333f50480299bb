from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator

import anyio
import pybase64
import pytest
import xxhash

from layerhoist.destinations.ecr.limits import BASE64_EXPANSION
from layerhoist.errors import CorruptBlobError, SourceChangedError
from layerhoist.transfer.budget import ByteBudget
from layerhoist.transfer.config import part_cost
from layerhoist.transfer.parts import Part, PartReader

pytestmark = pytest.mark.anyio

PART = 1000
#: Real-time guard so a lost cancellation fails the test instead of hanging the suite.
HANG_GUARD_SECONDS = 10.0


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def reader(data: bytes, chunk: int, **kwargs: object) -> PartReader:
    return PartReader(
        chunks_of(data, chunk),
        digest=kwargs.pop("digest", "sha256:" + hashlib.sha256(data).hexdigest()),  # type: ignore[arg-type]
        size=kwargs.pop("size", len(data)),  # type: ignore[arg-type]
        part_size=PART,
        budget=kwargs.pop(
            "budget", ByteBudget(10 * part_cost(PART, payload_expansion=BASE64_EXPANSION))
        ),  # type: ignore[arg-type]
        encode=kwargs.pop("encode", lambda first_byte, data: pybase64.b64encode(data)),  # type: ignore[arg-type]
        payload_expansion=kwargs.pop("payload_expansion", BASE64_EXPANSION),  # type: ignore[arg-type]
        read_ahead=1,
        thread_threshold=kwargs.pop("thread_threshold", 512),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("chunk", [PART, 300, 1700, 4096])
async def test_parts_are_exact_and_hashed_in_one_pass(chunk: int) -> None:
    data = bytes(range(256)) * 14 + b"tail"  # 3588 bytes: three full parts and a short one
    r = reader(data, chunk)
    parts = []
    payloads = []
    async with r:
        async for part in r.parts():
            parts.append(part)
            assert isinstance(part.payload, bytes)
            payloads.append(part.payload)
            part.release()
    assert [p.size for p in parts] == [PART, PART, PART, 588]
    assert [p.first_byte for p in parts] == [0, 1000, 2000, 3000]
    assert parts[-1].last_byte == len(data) - 1
    assert b"".join(pybase64.b64decode(p) for p in payloads) == data
    assert r.fingerprints == [
        xxhash.xxh3_64_intdigest(data[i : i + PART]) for i in range(0, len(data), PART)
    ]
    assert [p.xxh3 for p in parts] == r.fingerprints
    assert [len(p.payload) for p in parts] == [0, 0, 0, 0]  # dropped on release
    assert r.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    r.verify()


@pytest.mark.parametrize("thread_threshold", [512, 4096], ids=["thread", "loop"])
@pytest.mark.parametrize(
    ("acknowledged", "sent"),
    [
        (0, [(0, 1000), (1000, 1000), (2000, 1000), (3000, 588)]),
        (2000, [(2000, 1000), (3000, 588)]),
        (2300, [(2300, 700), (3000, 588)]),
        (3588, []),
    ],
    ids=["none", "two-parts", "inside-a-part", "all"],
)
async def test_acknowledged_bytes_are_hashed_but_not_encoded(
    acknowledged: int, sent: list[tuple[int, int]], thread_threshold: int
) -> None:
    data = bytes(range(256)) * 14 + b"tail"
    encoded: list[tuple[int, bytes]] = []

    def encode(first_byte: int, chunk: bytes) -> bytes:
        encoded.append((first_byte, chunk))
        return chunk

    r = reader(
        data, 300, encode=encode, acknowledged=acknowledged, thread_threshold=thread_threshold
    )
    parts: list[Part] = []
    async with r:
        async for part in r.parts():
            parts.append(part)
            if part.acknowledged:
                assert part.payload == ()
            else:
                assert part.payload == data[part.first_byte : part.end]
            part.release()
    assert [(p.first_byte, p.size) for p in parts if not p.acknowledged] == sent
    assert [(first, len(chunk)) for first, chunk in encoded] == sent
    # Every part comes out, each with its whole part's place and fingerprint.
    assert [p.index for p in parts] == [0, 1, 2, 3]
    assert [p.end for p in parts] == [1000, 2000, 3000, 3588]
    assert [p.xxh3 for p in parts] == r.fingerprints
    assert sum(p.acknowledged for p in parts) == len(parts) - len(sent)
    r.verify()


async def test_empty_blob_is_one_empty_part() -> None:
    r = reader(b"", PART)
    async with r:
        parts = [(p.size, p.acknowledged) async for p in r.parts()]
    # Sent, though empty: a zero-byte blob's one part is its whole upload.
    assert parts == [(0, False)]


async def test_digest_mismatch_names_the_blob() -> None:
    data = b"x" * 2500
    claimed = "sha256:" + "0" * 64
    r = reader(data, PART, digest=claimed)
    async with r:
        async for part in r.parts():
            part.release()
    with pytest.raises(CorruptBlobError, match=claimed) as caught:
        r.verify()
    assert caught.value.digest == claimed


async def test_changed_source_is_detected_on_reread() -> None:
    first = reader(b"a" * 2500, PART)
    async with first:
        async for part in first.parts():
            part.release()
    changed = b"a" * 1000 + b"b" * 1500
    again = reader(changed, PART, expected_fingerprints=first.fingerprints)
    seen = []
    with pytest.raises(SourceChangedError, match="part 2"):
        async with again:
            async for part in again.parts():
                seen.append(part.index)
                part.release()
    assert seen == [0]


async def test_budget_is_returned_when_the_consumer_stops_early() -> None:
    budget = ByteBudget(10 * part_cost(PART, payload_expansion=BASE64_EXPANSION))
    r = reader(b"z" * 5000, PART, budget=budget)
    async with r:
        async for part in r.parts():
            part.release()
            break
    assert budget.in_use == 0


async def read_all(r: PartReader) -> list[Part]:
    """Every part of ``r``, each released once read."""
    parts = []
    async with r:
        async for part in r.parts():
            parts.append(part)
            part.release()
    return parts


async def test_a_reread_checks_every_part_and_names_the_changed_one() -> None:
    data = bytes(range(256)) * 14 + b"tail"  # four parts
    first = reader(data, PART)
    assert [p.index for p in await read_all(first)] == [0, 1, 2, 3]
    same = reader(data, PART, expected_fingerprints=first.fingerprints)
    assert [p.size for p in await read_all(same)] == [PART, PART, PART, 588]
    changed = data[:2500] + b"!" + data[2501:]  # a byte of the third part
    again = reader(changed, PART, expected_fingerprints=first.fingerprints)
    seen: list[int] = []
    message = (
        "part 3 read differently than on the previous attempt; "
        "the source changed while it was being pushed$"
    )
    with pytest.raises(SourceChangedError, match=message) as caught:
        async with again:
            async for part in again.parts():
                seen.append(part.index)
                part.release()
    assert seen == [0, 1]
    assert caught.value.digest == "sha256:" + hashlib.sha256(changed).hexdigest()


async def test_each_part_is_charged_what_it_holds_and_the_last_only_its_real_size() -> None:
    data = b"q" * 2300
    budget = ByteBudget(100 * PART)
    r = reader(data, PART, budget=budget, payload_expansion=1.5)
    held = []
    async with r:
        async for part in r.parts():
            held.append(part)
    full, last = part_cost(PART, payload_expansion=1.5), part_cost(300, payload_expansion=1.5)
    assert [p.lease.nbytes for p in held] == [full, full, last]
    assert (full, last) == (2500, 750)
    assert budget.in_use == 2 * full + last
    for part in held:
        part.release()
    assert budget.in_use == 0


@pytest.mark.parametrize(
    ("promised", "second_part"),
    [(1500, 500), (2000, PART), (2001, PART)],
    ids=["mid-part", "on-a-boundary", "one-byte-short"],
)
async def test_a_blob_longer_than_promised_is_charged_whole_parts_past_the_promise(
    promised: int, second_part: int
) -> None:
    r = reader(b"q" * 2500, PART, size=promised, payload_expansion=1.5)
    parts = await read_all(r)
    full = part_cost(PART, payload_expansion=1.5)
    # the second part is charged what was promised of it; the third only what was promised
    # of it (the last byte of 2001), or a whole part when nothing was
    third = part_cost(promised - 2 * PART, payload_expansion=1.5) if promised > 2 * PART else full
    expected = [full, part_cost(second_part, payload_expansion=1.5), third]
    assert [p.lease.nbytes for p in parts] == expected
    with pytest.raises(CorruptBlobError, match=f"its 2500 bytes .* promises {promised} bytes"):
        r.verify()


@pytest.mark.parametrize("threshold", [PART, PART + 1])
async def test_the_encoder_gets_each_parts_offset_in_or_off_the_event_loop(threshold: int) -> None:
    calls: list[tuple[int, int, bool]] = []

    def encode(first_byte: int, data: bytes) -> bytes:
        calls.append((first_byte, len(data), threading.current_thread() is threading.main_thread()))
        return first_byte.to_bytes(4, "big") + data

    data = bytes(range(256)) * 14 + b"tail"
    r = reader(data, 700, encode=encode, thread_threshold=threshold)
    parts = await read_all(r)
    in_loop = threshold > PART  # parts of at least the threshold are encoded in a worker
    assert calls == [
        (0, PART, in_loop),
        (1000, PART, in_loop),
        (2000, PART, in_loop),
        (3000, 588, True),
    ]
    assert [p.first_byte for p in parts] == [0, 1000, 2000, 3000]


async def test_a_failing_consumer_stops_a_stalled_source_and_frees_the_budget() -> None:
    budget = ByteBudget(100 * PART)
    never = anyio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"s" * PART
        await never.wait()  # the source hangs: only cancelling the reader ends it
        yield b""

    r = PartReader(
        stalls(),
        digest="sha256:" + "0" * 64,
        size=10 * PART,
        part_size=PART,
        budget=budget,
        encode=lambda first_byte, data: data,
        payload_expansion=1.0,
        read_ahead=1,
        thread_threshold=10 * PART,
    )
    with anyio.fail_after(HANG_GUARD_SECONDS), pytest.raises(RuntimeError, match="consumer"):
        async with r:
            async for part in r.parts():
                part.release()
                raise RuntimeError("the consumer failed")
    assert budget.in_use == 0
