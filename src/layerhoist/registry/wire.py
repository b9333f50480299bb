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
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import anyio
import pybase64
from aiohttp import web

from layerhoist.registry.errors import Code, EcrError

BLOB_FIELD = "layerPartBlob"
_BLOB_KEY = b'"' + BLOB_FIELD.encode() + b'"'
_WHITESPACE = b" \t\r\n"
_QUOTE = ord('"')
_COLON = ord(":")
_OPENERS = frozenset(b"[{")
#: A quote or a bracket: the tokens that decide how JSON nests.
_STRUCTURE = re.compile(rb'["\[\]{}]')
#: The rest of a JSON string after its opening quote, escapes included.
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def serialization_error(problem: str) -> EcrError:
    """The service's refusal of a body that is not the JSON document it expects."""
    return EcrError(Code.SERIALIZATION, problem)


def nested_too_deep(limits: JsonLimits) -> EcrError:
    """The refusal of a body whose arrays and objects nest or number beyond ``limits``."""
    return serialization_error(
        f"request body nests JSON arrays and objects deeper than {limits.max_depth} levels "
        f"or holds more than {limits.max_containers} of them"
    )


def too_large(limit: int) -> EcrError:
    """The refusal of a body larger than the registry reads."""
    return EcrError(
        Code.INVALID_PARAMETER,
        f"request body exceeds {limit} bytes",
        status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    )


#: Bodies declared at least this large may reuse an idle buffer: a fresh 27 MiB buffer per
#: part would cost page faults on every request.
POOLED_BODY = 1024 * 1024
#: Idle buffers kept for reuse (memory held: this many times the body limit, at most).
POOLED_BUFFERS = 8


@dataclass(frozen=True)
class JsonLimits:
    """How deep arrays and objects of a request body may nest, and how many there may be."""

    max_depth: int
    max_containers: int


class BodyUnreadable(Exception):
    """The client stopped sending its body (``body_idle_timeout``) or the connection failed."""


@dataclass(frozen=True)
class Body:
    """A request body: the first ``length`` bytes of ``buffer``, ``reserved`` bytes of budget."""

    buffer: bytearray
    length: int
    reserved: int = 0

    @property
    def view(self) -> memoryview:
        """The body's bytes, without a copy."""
        return memoryview(self.buffer)[: self.length]

    def contents(self) -> bytes | bytearray:
        """The body's bytes as an object ``json.loads`` takes (copied only when pooled)."""
        return self.buffer if len(self.buffer) == self.length else bytes(self.view)


EMPTY_BODY = Body(bytearray(), 0)


class BodyBuffers:
    """The budget of body bytes held by all requests at once, and buffers reused between them.

    A body reserves its bytes before they are read (its declared length, or chunk by chunk
    when it declares none): a reservation the budget cannot cover is ThrottlingException,
    so the bodies held never exceed ``budget`` bytes. Buffers are allocated as bytes arrive;
    a body declared large may instead take an idle buffer a finished request handed back.
    """

    def __init__(self, *, capacity: int, budget: int) -> None:
        self._capacity = capacity
        self._budget = budget
        self._idle: list[bytearray] = []
        #: Body bytes reserved by requests being read or served.
        self.held = 0

    def reserve(self, nbytes: int) -> None:
        """Take ``nbytes`` of the budget, or refuse the request with ThrottlingException."""
        if self.held + nbytes > self._budget:
            raise EcrError(
                Code.THROTTLING,
                "Rate exceeded: the registry holds as many request bodies as it can; retry",
            )
        self.held += nbytes

    def acquire(self, declared: int | None) -> bytearray:
        """A buffer for a body of ``declared`` bytes: an idle one, or an empty one that grows."""
        if declared is not None and declared >= POOLED_BODY and self._idle:
            return self._idle.pop()
        return bytearray()

    def release(self, body: Body) -> None:
        """Give back a body's reservation, and its buffer for reuse once nothing reads it."""
        self.held -= body.reserved
        buffer = body.buffer
        if POOLED_BODY <= len(buffer) <= self._capacity and len(self._idle) < POOLED_BUFFERS:
            self._idle.append(buffer)


async def read_body(
    request: web.BaseRequest,
    *,
    buffers: BodyBuffers,
    limit: int,
    idle_timeout: float,
    consume: Callable[[int], Awaitable[None]],
) -> Body:
    """Read the whole request body, at most ``limit`` bytes, pacing it through ``consume``.

    The body is copied once, from the socket's chunks into a buffer from ``buffers`` (hand it
    back with :meth:`BodyBuffers.release`). Raises ``EcrError`` for a body over ``limit``
    (413) or beyond the budget (ThrottlingException), :class:`BodyUnreadable` when no byte
    arrives for ``idle_timeout`` seconds or the connection fails.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    buffers.reserve(declared or 0)
    intake = _Intake(buffers.acquire(declared), reserved=declared or 0)
    try:
        await _fill(
            request,
            intake,
            buffers=buffers,
            limit=limit,
            idle_timeout=idle_timeout,
            consume=consume,
        )
    except BaseException:
        buffers.release(Body(intake.buffer, 0, intake.reserved))
        raise
    body = Body(intake.buffer, intake.received, intake.reserved)
    if declared is not None and body.length != declared:
        buffers.release(body)
        raise serialization_error("request body shorter than its Content-Length")
    return body


async def stream_body(
    request: web.BaseRequest,
    *,
    buffers: BodyBuffers,
    piece_size: int,
    limit: int,
    idle_timeout: float,
    consume: Callable[[int], Awaitable[None]],
    sink: Callable[[bytes, bool], Awaitable[None]],
) -> int:
    """Hand the request body to ``sink`` in pieces of ``piece_size`` bytes; its length.

    For bodies too large to hold (a ``/v2/`` blob): one piece is held at a time, reserved
    from ``buffers``' budget before the first byte is read and allocated as bytes arrive.
    ``sink(piece, first)`` is awaited for each piece (``first`` for the body's first one; an
    empty body gives none). Refusals are those of :func:`read_body`.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    reserved = min(piece_size, declared if declared is not None else piece_size)
    buffers.reserve(reserved)
    piece = bytearray()
    total = 0
    first = True
    try:
        with anyio.CancelScope() as idle:
            while True:
                idle.deadline = anyio.current_time() + idle_timeout
                chunk = await _next_chunk(request)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise too_large(limit)
                view = memoryview(chunk)
                while view:
                    room = piece_size - len(piece)
                    piece += view[:room]
                    view = view[room:]
                    if len(piece) == piece_size:
                        idle.deadline = anyio.current_time() + idle_timeout
                        await sink(bytes(piece), first)
                        first = False
                        piece.clear()
                await consume(len(chunk))
        if idle.cancelled_caught:
            raise BodyUnreadable(f"no byte of the request body for {idle_timeout:g} s")
        if piece:
            await sink(bytes(piece), first)
    finally:
        buffers.release(Body(bytearray(), 0, reserved))
    if declared is not None and total != declared:
        raise serialization_error("request body shorter than its Content-Length")
    return total


@dataclass
class _Intake:
    """A body being read: its buffer, the bytes received and the bytes of budget reserved."""

    buffer: bytearray
    reserved: int
    received: int = 0


async def _fill(
    request: web.BaseRequest,
    intake: _Intake,
    *,
    buffers: BodyBuffers,
    limit: int,
    idle_timeout: float,
    consume: Callable[[int], Awaitable[None]],
) -> None:
    # One scope whose deadline moves before every wait: a scope per chunk costs more CPU
    # than everything else done per chunk.
    with anyio.CancelScope() as idle:
        while True:
            idle.deadline = anyio.current_time() + idle_timeout
            chunk = await _next_chunk(request)
            if not chunk:
                return
            end = intake.received + len(chunk)
            if end > limit:
                raise too_large(limit)
            if end > intake.reserved:
                buffers.reserve(end - intake.reserved)
                intake.reserved = end
            # Overwrites a reused buffer, and grows it (or a fresh one) past its end.
            intake.buffer[intake.received : end] = chunk
            intake.received = end
            await consume(len(chunk))
    raise BodyUnreadable(f"no byte of the request body for {idle_timeout:g} s")


async def _next_chunk(request: web.BaseRequest) -> bytes:
    try:
        return await request.content.readany()
    # Whatever the stream raises (a reset, a body cut short), the client is gone.
    except Exception as error:
        raise BodyUnreadable(f"the request body could not be read: {error!r}") from error


def _check_structure(body: bytes | bytearray, limits: JsonLimits) -> None:
    """Refuse a body whose arrays and objects nest or number beyond ``limits``, unparsed.

    ``json.loads`` would build every container first (a 28 MB ``[{},{},…]`` takes gigabytes)
    or recurse until RecursionError. Most bodies hold fewer brackets, counted at C speed,
    than the depth allowed; the others are scanned token by token, strings skipped whole.
    """
    if body.count(b"[") + body.count(b"{") <= limits.max_depth:
        return
    depth = containers = position = 0
    while (token := _STRUCTURE.search(body, position)) is not None:
        char = body[token.start()]
        if char == _QUOTE:
            string = _STRING_REST.match(body, token.end())
            if string is None:
                return  # an unterminated string: json.loads refuses it
            position = string.end()
            continue
        position = token.end()
        if char in _OPENERS:
            depth += 1
            containers += 1
            if depth > limits.max_depth or containers > limits.max_containers:
                raise nested_too_deep(limits)
        else:
            depth -= 1


def parse_object(body: bytes | bytearray, limits: JsonLimits) -> dict[str, Any]:
    """Parse a JSON object body; ``SerializationException`` when it is anything else."""
    _check_structure(body, limits)
    try:
        document = json.loads(body)
    # RecursionError too: the structure check bounds nesting, this keeps that promise anyway.
    except (ValueError, RecursionError):
        raise serialization_error("request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise serialization_error("request body must be a JSON object")
    return document


def _skip_whitespace(buffer: bytearray, index: int, length: int) -> int:
    while index < length and buffer[index] in _WHITESPACE:
        index += 1
    return index


def _locate_blob(body: Body, limits: JsonLimits) -> tuple[dict[str, Any], memoryview] | None:
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
    fields = parse_object(buffer[: start + 1] + buffer[end:length], limits)
    if fields.get(BLOB_FIELD) != "":
        return None
    return fields, body.view[start + 1 : end]


def parse_part_body(body: Body, limits: JsonLimits) -> tuple[dict[str, Any], bytes]:
    """Parse an UploadLayerPart body into its small fields and the decoded part.

    The returned fields map ``layerPartBlob`` to ``""`` (or to whatever non-string the
    body held, for the caller to refuse). The base64 text is decoded straight from
    ``body`` in the common case; a value the strict decoder refuses may still hold a JSON
    escape (an encoder may write ``/`` as ``\\/``), so the body is then parsed in full
    and decoded again: only text that is not base64 even after unescaping is refused.
    Runs in a worker thread (it touches every byte of the body).
    """
    located = _locate_blob(body, limits)
    if located is not None:
        fields, text = located
        try:
            return fields, pybase64.b64decode(text, validate=True)
        except binascii.Error:
            pass
    fields = parse_object(body.contents(), limits)
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
