"""UploadLayerPart bodies built in the hashing pass, and spliced into botocore's request.

botocore would base64-encode a part with the stdlib codec and then ``json.dumps`` a body of
several MiB, which costs more CPU than hashing it. Instead :func:`part_encoder` builds each
part's whole request body (the same JSON botocore would send, the part in SIMD base64) in the
worker-thread pass that hashes the part (:mod:`layerhoist.transfer.parts`), together with the
body's sha256 for SigV4. The API call itself carries a tiny marker blob; :class:`PartSplicer`,
a ``request-created`` hook, swaps the prebuilt body in before SigV4 signs it, and
:func:`send_in_slices`, a ``before-send`` hook, hands the signed body to aiohttp in slices.
The client, its signing, credentials and configuration stay botocore's.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pybase64

from layerhoist.destinations.base import WIRE_SLICE

#: The header SigV4 reads a precomputed body hash from (botocore's canonical request).
CONTENT_SHA256_HEADER = "X-Amz-Content-SHA256"
_BODY_END = b'"}'
#: A per-run random prefix makes the marker that stands in for a part in botocore's
#: serializer impossible to confuse with anything else in a request body.
_MARKER_PREFIX_BYTES = 6
_COUNTER_BYTES = 6


@dataclass(frozen=True, slots=True)
class PartBody:
    """An UploadLayerPart request body, kept in the pieces it was built from."""

    pieces: tuple[bytes, ...]
    #: Hex sha256 of the whole body, for SigV4.
    sha256: str

    def __len__(self) -> int:
        return sum(len(piece) for piece in self.pieces)


def part_encoder(fields: Mapping[str, str]) -> Callable[[int, bytes], PartBody]:
    """How parts become UploadLayerPart bodies, given the call's other ``fields``.

    The body is what botocore's JSON serializer would produce for the same call; the service
    parses JSON, so field order and spacing are free. It stays in the pieces it is made of
    (no copy to join them) with the sha256 that SigV4 signs, computed in the same pass.
    """
    head = json.dumps(dict(fields))[:-1].encode()

    def encode(first_byte: int, data: bytes) -> PartBody:
        last_byte = first_byte + len(data) - 1
        prefix = b'%s, "partFirstByte": %d, "partLastByte": %d, "layerPartBlob": "' % (
            head,
            first_byte,
            last_byte,
        )
        blob = pybase64.b64encode(data)
        body_hash = hashlib.sha256(prefix)
        body_hash.update(blob)
        body_hash.update(_BODY_END)
        return PartBody(pieces=(prefix, blob, _BODY_END), sha256=body_hash.hexdigest())

    return encode


class PartSplicer:
    """A ``request-created`` hook: prebuilt bodies stand in for the markers botocore serialized."""

    def __init__(self) -> None:
        self._bodies: dict[bytes, PartBody] = {}
        self._markers = itertools.count()
        self._marker_prefix = os.urandom(_MARKER_PREFIX_BYTES)

    @contextmanager
    def marker(self, body: PartBody) -> Iterator[bytes]:
        """A unique blob to pass as ``layerPartBlob``; ``body`` is sent in its place."""
        raw = self._marker_prefix + next(self._markers).to_bytes(_COUNTER_BYTES, "big")
        serialized = b'"' + pybase64.b64encode(raw) + b'"'
        self._bodies[serialized] = body
        try:
            yield raw
        finally:
            del self._bodies[serialized]

    def __call__(self, request: Any, **_: Any) -> None:
        """Swap the body in; SigV4 then reads its hash from the signed header."""
        data: bytes = request.data
        for serialized, payload in self._bodies.items():
            if serialized in data:
                request.data = payload
                request.headers[CONTENT_SHA256_HEADER] = payload.sha256
                return


def send_in_slices(request: Any, **_: Any) -> None:
    """A ``before-send`` hook: a signed part body goes to aiohttp as slices of its pieces."""
    # A body written whole would be joined with the headers and, on Python 3.11, copied
    # again by the transport for what the socket cannot take at once.
    body = request.body
    if isinstance(body, PartBody):
        request.body = _slices(body)


async def _slices(body: PartBody) -> AsyncIterator[memoryview]:
    for piece in body.pieces:
        view = memoryview(piece)
        for start in range(0, len(view), WIRE_SLICE):
            yield view[start : start + WIRE_SLICE]
