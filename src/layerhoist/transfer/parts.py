"""The chunk-and-hash stream: a blob's bytes cut into upload parts in one pass.

Each part is read from the source once, and in that same pass it is added to the
blob's sha256 (the OCI digest the destination will recompute), given an xxh3
fingerprint (cheap, recorded so a re-read for a retry can prove the source did not
change) and turned into its request payload by the upload's encoder (for ECR: the
whole UploadLayerPart JSON body, base64 inside). The raw bytes are dropped right
after: only the payload waits for the wire.

:class:`PartReader` reads ahead: while part *n* is being uploaded, part *n+1* is
read and hashed in a worker thread, so the network and the CPU overlap.

A resumed upload reads the blob from its first byte all the same (the sha256 covers every
byte, and each part's xxh3 must match the journal's), but the parts the destination holds
already are not encoded: they come out marked :attr:`Part.acknowledged`, with no payload, and
a part the destination holds in part comes out as its tail only.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Sequence, Sized
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import anyio
import xxhash
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from layerhoist.errors import CorruptBlobError, SourceChangedError
from layerhoist.transfer.budget import ByteBudget, Lease
from layerhoist.transfer.config import part_cost
from layerhoist.transfer.rechunk import Rechunker

#: Turns a part (its first byte's offset and its bytes) into what goes on the wire.
PartEncoder = Callable[[int, bytes], Sized]


@dataclass(slots=True)
class Part:
    """One part of a blob, ready to send: where it sits in the blob and its payload.

    ``first_byte`` and ``size`` are the bytes to send; a resumed upload's part the destination
    holds in part starts at the first byte it lacks (its tail), while ``index`` and ``xxh3``
    are always the whole part's, cut every ``part_size`` bytes.
    """

    index: int
    first_byte: int
    size: int
    xxh3: int
    #: The request payload the destination's encoder made of the part's bytes.
    payload: Sized
    #: Memory held for this part; released once its upload is answered.
    lease: Lease
    #: The destination holds this part already (a resumed upload): nothing to send.
    acknowledged: bool = False

    def release(self) -> None:
        """Drop the payload and give its memory back to the budget (idempotent)."""
        self.payload = ()
        self.lease.release()

    @property
    def last_byte(self) -> int:
        """Inclusive offset of the part's last byte (ECR ranges are inclusive)."""
        return self.first_byte + self.size - 1

    @property
    def end(self) -> int:
        """Offset just past the part's last byte: what the destination holds once it is sent."""
        return self.first_byte + self.size


def _digest_part(
    sha256: hashlib._Hash, data: bytes, first_byte: int, encode: PartEncoder, held: int
) -> tuple[int, Sized]:
    """Hash ``data`` (the part at ``first_byte``); encode what the destination lacks of it,
    all but its first ``held`` bytes (nothing when it holds all of them)."""
    sha256.update(data)
    fingerprint = xxhash.xxh3_64_intdigest(data)
    if not held:
        return fingerprint, encode(first_byte, data)
    if held >= len(data):
        return fingerprint, ()
    return fingerprint, encode(first_byte + held, data[held:])


class PartReader:
    """Reads a blob as parts of ``part_size`` bytes, hashing as it goes, with read-ahead.

    Use as an async context manager and iterate :meth:`parts`. After the last part,
    :attr:`digest`, :attr:`size` and :attr:`fingerprints` describe what was read and
    :meth:`verify` checks them against the ``digest`` and ``size`` the manifest promised
    (the size also sizes each part's charge against the memory ``budget``: the raw part
    plus its payload, ``payload_expansion`` bytes per raw byte).

    ``expected_fingerprints`` are the xxh3 values of an earlier read of the same blob:
    a part that hashes differently means the source changed underneath us, which is
    fatal (:class:`SourceChangedError`) rather than something to retry forever.

    ``acknowledged`` is how many bytes from the start the destination already holds (a
    resumed upload): those are read and hashed but not encoded (see :class:`Part`).
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        digest: str,
        size: int,
        part_size: int,
        budget: ByteBudget,
        encode: PartEncoder,
        payload_expansion: float,
        read_ahead: int,
        thread_threshold: int,
        expected_fingerprints: Sequence[int] = (),
        acknowledged: int = 0,
    ) -> None:
        self._chunks = chunks
        self._acknowledged = acknowledged
        self._expected_digest = digest
        self._expected_size = size
        self._part_size = part_size
        self._budget = budget
        self._encode = encode
        self._payload_expansion = payload_expansion
        self._read_ahead = read_ahead
        self._thread_threshold = thread_threshold
        self._expected = expected_fingerprints
        self._sha256 = hashlib.sha256()
        self.size = 0
        self.fingerprints: list[int] = []
        self._task_group: TaskGroup | None = None
        # A failure while reading ends the stream and is raised to the consumer, so
        # it surfaces as itself rather than wrapped in the task group's ExceptionGroup.
        self._error: Exception | None = None
        self._receive: MemoryObjectReceiveStream[Part] | None = None

    @property
    def digest(self) -> str:
        """The sha256 digest of the bytes read so far, in OCI form."""
        return "sha256:" + self._sha256.hexdigest()

    async def __aenter__(self) -> Self:
        send, receive = anyio.create_memory_object_stream[Part](self._read_ahead)
        self._receive = receive
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._produce, send)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None and self._receive is not None
        if exc is not None:
            self._task_group.cancel_scope.cancel()
        # Parts still buffered were charged to the budget: hand their bytes back.
        for part in _drain(self._receive):
            part.release()
        self._receive.close()
        # The producer reports its own failures through parts(), and was cancelled
        # above if the caller failed: the caller's exception propagates as itself
        # instead of wrapped in the task group's ExceptionGroup.
        await self._task_group.__aexit__(None, None, None)
        return None

    async def parts(self) -> AsyncIterator[Part]:
        """Yield the parts in order; the caller calls each part's ``release()`` when done."""
        assert self._receive is not None
        async for part in self._receive:
            yield part
        if self._error is not None:
            raise self._error

    async def _produce(self, send: MemoryObjectSendStream[Part]) -> None:
        async with send:
            rechunker = Rechunker(self._part_size)
            index = 0
            lease = await self._lease(index)
            try:
                async for chunk in self._chunks:
                    rechunker.add(chunk)
                    del chunk  # the raw bytes must not outlive their part's encoding
                    while (data := rechunker.take()) is not None:
                        part = await self._make_part(index, data, lease)
                        del data
                        await send.send(part)
                        index += 1
                        lease = await self._lease(index)
                if rechunker.held or index == 0:
                    part = await self._make_part(index, rechunker.take_rest(), lease)
                    await send.send(part)
                else:
                    lease.release()
            except Exception as exc:
                lease.release()
                self._error = exc
            except BaseException:
                lease.release()
                raise

    async def _lease(self, index: int) -> Lease:
        # Charge what the part will really hold: a small blob must not reserve a
        # whole part's worth of the budget (the manifest's size is a promise, so a
        # blob longer than promised is charged a full part from there on).
        remaining = self._expected_size - index * self._part_size
        nbytes = self._part_size if remaining <= 0 else min(self._part_size, remaining)
        return await self._budget.acquire(
            part_cost(nbytes, payload_expansion=self._payload_expansion)
        )

    async def _make_part(self, index: int, data: bytes, lease: Lease) -> Part:
        held = min(len(data), max(0, self._acknowledged - self.size))
        if len(data) >= self._thread_threshold:
            fingerprint, payload = await anyio.to_thread.run_sync(
                _digest_part, self._sha256, data, self.size, self._encode, held
            )
        else:
            fingerprint, payload = _digest_part(self._sha256, data, self.size, self._encode, held)
        if index < len(self._expected) and self._expected[index] != fingerprint:
            raise SourceChangedError(
                f"{self._expected_digest}: part {index + 1} read differently than on the "
                "previous attempt; the source changed while it was being pushed",
                digest=self._expected_digest,
            )
        acknowledged = 0 < len(data) == held
        part = Part(
            index=index,
            first_byte=self.size if acknowledged else self.size + held,
            size=len(data) if acknowledged else len(data) - held,
            xxh3=fingerprint,
            payload=payload,
            lease=lease,
            acknowledged=acknowledged,
        )
        self.size += len(data)
        self.fingerprints.append(fingerprint)
        return part

    def verify(self) -> None:
        """Raise :class:`CorruptBlobError` unless what was read matches the manifest."""
        if self.digest != self._expected_digest or self.size != self._expected_size:
            raise CorruptBlobError(
                f"source blob {self._expected_digest} is corrupt: its {self.size} bytes "
                f"hash to {self.digest} (the manifest promises {self._expected_size} bytes)",
                digest=self._expected_digest,
            )


def _drain(receive: MemoryObjectReceiveStream[Part]) -> list[Part]:
    parts: list[Part] = []
    while True:
        try:
            parts.append(receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return parts
