from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pybase64
import pytest
import xxhash

from layerhoist.destinations.ecr.limits import BASE64_EXPANSION
from layerhoist.errors import CorruptBlobError, SourceChangedError
from layerhoist.transfer.budget import ByteBudget
from layerhoist.transfer.config import part_cost
from layerhoist.transfer.parts import PartReader

pytestmark = pytest.mark.anyio

PART = 1000


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def reader(data: bytes, chunk: int, **kwargs: object) -> PartReader:
    return PartReader(
        chunks_of(data, chunk),
        digest=kwargs.pop("digest", "sha256:" + hashlib.sha256(data).hexdigest()),  # type: ignore[arg-type]
        size=len(data),
        part_size=PART,
        budget=kwargs.pop(
            "budget", ByteBudget(10 * part_cost(PART, payload_expansion=BASE64_EXPANSION))
        ),  # type: ignore[arg-type]
        encode=lambda first_byte, data: pybase64.b64encode(data),
        payload_expansion=BASE64_EXPANSION,
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
    assert r.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    r.verify()


async def test_empty_blob_is_one_empty_part() -> None:
    r = reader(b"", PART)
    async with r:
        sizes = [p.size async for p in r.parts()]
    assert sizes == [0]


async def test_digest_mismatch_names_the_blob() -> None:
    data = b"x" * 2500
    claimed = "sha256:" + "0" * 64
    r = reader(data, PART, digest=claimed)
    async with r:
        async for part in r.parts():
            part.release()
    with pytest.raises(CorruptBlobError, match=claimed):
        r.verify()


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
