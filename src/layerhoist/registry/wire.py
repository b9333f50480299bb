"""Request bodies of the JSON 1.1 protocol: reading them, and finding a part's bytes cheaply.

An UploadLayerPart body is a few small fields around a base64 string of up to
20 MiB of layer. Parsing all of it with ``json.loads`` would build a 27 MiB Python
string just to decode it again, so :func:`parse_part_body` finds the
``layerPartBlob`` value in the raw bytes instead, parses only what surrounds it,
and decodes the base64 text in place with a SIMD decoder.
"""

from __future__ import annotations

import binascii
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import pybase64
from aiohttp import web

from layerhoist.registry.errors import Code, EcrError

BLOB_FIELD = "layerPartBlob"
_BLOB_KEY = b'"' + BLOB_FIELD.encode() + b'"'
_WHITESPACE = b" \t\r\n"
_QUOTE = ord('"')
_COLON = ord(":")


def serialization_error(problem: str) -> EcrError:
    """The service's refusal of a body that is not the JSON document it expects."""
    return EcrError(Code.SERIALIZATION, problem)


def too_large(limit: int) -> EcrError:
    """The refusal of a body larger than the registry reads."""
    return EcrError(
        Code.INVALID_PARAMETER,
        f"request body exceeds {limit} bytes",
        status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    )


#: Bodies at least this large are read into reusable buffers: a fresh 27 MiB buffer per
#: part would cost a zero-fill and page faults on every request.
POOLED_BODY = 1024 * 1024
#: Idle buffers kept for reuse (memory held: this many times the body limit, at most).
POOLED_BUFFERS = 8


@dataclass(frozen=True)
class Body:
    """A request body: the first ``length`` bytes of ``buffer``."""

    buffer: bytearray
    length: int

    @property
    def view(self) -> memoryview:
        """The body's bytes, without a copy."""
        return memoryview(self.buffer)[: self.length]

    def contents(self) -> bytes | bytearray:
        """The body's bytes as an object ``json.loads`` takes (copied only when pooled)."""
        return self.buffer if len(self.buffer) == self.length else bytes(self.view)


class BodyBuffers:
    """Buffers for large request bodies, reused from one request to the next."""

    def __init__(self, *, capacity: int) -> None:
        self._capacity = capacity
        self._idle: list[bytearray] = []

    def acquire(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes (exactly ``size`` when it is small)."""
        if size < POOLED_BODY or size > self._capacity:
            return bytearray(size)
        return self._idle.pop() if self._idle else bytearray(self._capacity)

    def release(self, body: Body) -> None:
        """Hand a body's buffer back once nothing reads it any more."""
        buffer = body.buffer
        if len(buffer) == self._capacity and len(self._idle) < POOLED_BUFFERS:
            self._idle.append(buffer)


async def read_body(
    request: web.BaseRequest,
    *,
    buffers: BodyBuffers,
    limit: int,
    consume: Callable[[int], Awaitable[None]],
) -> Body:
    """Read the whole request body, at most ``limit`` bytes, pacing it through ``consume``.

    With a Content-Length the body is copied once, from the socket's chunks into a
    buffer from ``buffers`` (hand it back with :meth:`BodyBuffers.release`).
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    buffer = buffers.acquire(declared) if declared is not None else bytearray()
    try:
        received = await _fill(
            request, buffer, fixed=declared is not None, limit=limit, consume=consume
        )
    except BaseException:
        buffers.release(Body(buffer, 0))
        raise
    if declared is not None and received != declared:
        buffers.release(Body(buffer, 0))
        raise serialization_error("request body shorter than its Content-Length")
    return Body(buffer, received)


async def _fill(
    request: web.BaseRequest,
    buffer: bytearray,
    *,
    fixed: bool,
    limit: int,
    consume: Callable[[int], Awaitable[None]],
) -> int:
    received = 0
    while chunk := await request.content.readany():
        end = received + len(chunk)
        if end > limit:
            raise too_large(limit)
        if fixed:
            buffer[received:end] = chunk
        else:
            buffer += chunk
        received = end
        await consume(len(chunk))
    return received


def parse_object(body: bytes | bytearray) -> dict[str, Any]:
    """Parse a JSON object body; ``SerializationException`` when it is anything else."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise serialization_error("request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise serialization_error("request body must be a JSON object")
    return document


def _skip_whitespace(buffer: bytearray, index: int, length: int) -> int:
    while index < length and buffer[index] in _WHITESPACE:
        index += 1
    return index


def _locate_blob(body: Body) -> tuple[dict[str, Any], memoryview] | None:
    """The small fields and a view of the base64 text, or ``None`` off the common path."""
    buffer, length = body.buffer, body.length
    key = buffer.find(_BLOB_KEY, 0, length)
    if key < 0:
        return None
    colon = _skip_whitespace(buffer, key + len(_BLOB_KEY), length)
    if colon >= length or buffer[colon] != _COLON:
        return None
    start = _skip_whitespace(buffer, colon + 1, length)
    if start >= length or buffer[start] != _QUOTE:
        return None
    end = buffer.find(b'"', start + 1, length)
    if end < 0:
        return None
    fields = parse_object(buffer[: start + 1] + buffer[end:length])
    if fields.get(BLOB_FIELD) != "":
        return None
    return fields, body.view[start + 1 : end]


def parse_part_body(body: Body) -> tuple[dict[str, Any], bytes]:
    """Parse an UploadLayerPart body into its small fields and the decoded part.

    The returned fields map ``layerPartBlob`` to ``""`` (or to whatever non-string the
    body held, for the caller to refuse). The base64 text is decoded straight from
    ``body`` in the common case; a value the strict decoder refuses may still hold a JSON
    escape (an encoder may write ``/`` as ``\\/``), so the body is then parsed in full
    and decoded again: only text that is not base64 even after unescaping is refused.
    Runs in a worker thread (it touches every byte of the body).
    """
    located = _locate_blob(body)
    if located is not None:
        fields, text = located
        try:
            return fields, pybase64.b64decode(text, validate=True)
        except binascii.Error:
            pass
    fields = parse_object(body.contents())
    value = fields.get(BLOB_FIELD)
    if not isinstance(value, str):
        return fields, b""
    fields[BLOB_FIELD] = ""
    try:
        return fields, pybase64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise EcrError(
            Code.INVALID_PARAMETER, f"Invalid parameter at '{BLOB_FIELD}': not valid base64"
        ) from None


def json_response(document: object, *, status: int = HTTPStatus.OK) -> web.Response:
    """A JSON 1.1 protocol response."""
    return web.Response(
        body=json.dumps(document, separators=(",", ":")).encode(),
        status=status,
        content_type="application/x-amz-json-1.1",
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
    )
