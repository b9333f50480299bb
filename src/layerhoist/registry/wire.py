"""Request bodies of the JSON 1.1 protocol: reading them, and finding a part's bytes cheaply.

An UploadLayerPart body is a few small fields around a base64 string of up to
20 MiB of layer. Parsing all of it with ``json.loads`` would build a 27 MiB Python
string just to decode it again, so :func:`split_part_body` finds the
``layerPartBlob`` value in the raw bytes instead, parses only what surrounds it,
and hands back a view of the base64 text for a SIMD decoder.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from layerhoist.registry.errors import Code, EcrError

BLOB_FIELD = "layerPartBlob"
_BLOB_KEY = b'"' + BLOB_FIELD.encode() + b'"'
_WHITESPACE = b" \t\r\n"
_QUOTE = ord('"')
_COLON = ord(":")
_BACKSLASH = b"\\"


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


async def read_body(
    request: web.BaseRequest, *, limit: int, consume: Callable[[int], Awaitable[None]]
) -> bytearray:
    """Read the whole request body, at most ``limit`` bytes, pacing it through ``consume``.

    With a Content-Length the buffer is allocated once and filled in place, so the body
    is copied once on its way from the socket.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    body = bytearray(declared) if declared is not None else bytearray()
    received = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        end = received + len(chunk)
        if end > limit:
            raise too_large(limit)
        if declared is not None:
            body[received:end] = chunk
        else:
            body += chunk
        received = end
        await consume(len(chunk))
    if declared is not None and received != declared:
        raise serialization_error("request body shorter than its Content-Length")
    return body


def parse_object(body: bytes | bytearray) -> dict[str, Any]:
    """Parse a JSON object body; ``SerializationException`` when it is anything else."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise serialization_error("request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise serialization_error("request body must be a JSON object")
    return document


def _skip_whitespace(body: bytearray, index: int) -> int:
    while index < len(body) and body[index] in _WHITESPACE:
        index += 1
    return index


def split_part_body(body: bytearray) -> tuple[dict[str, Any], memoryview | bytes]:
    """Split an UploadLayerPart body into its small fields and the base64 text of the part.

    The returned fields map ``layerPartBlob`` to ``""``. The base64 text is a view into
    ``body`` (no copy) in the common case; if the value holds a JSON escape (a JSON
    encoder may write ``/`` as ``\\/``), or the fast path finds anything unexpected, the
    body is parsed in full instead, and the outcome is the same.
    """
    key = body.find(_BLOB_KEY)
    if key >= 0:
        colon = _skip_whitespace(body, key + len(_BLOB_KEY))
        if colon < len(body) and body[colon] == _COLON:
            start = _skip_whitespace(body, colon + 1)
            if start < len(body) and body[start] == _QUOTE:
                end = body.find(b'"', start + 1)
                if end > start and body.find(_BACKSLASH, start + 1, end) < 0:
                    rest = body[: start + 1] + body[end:]
                    fields = parse_object(rest)
                    if fields.get(BLOB_FIELD) == "":
                        return fields, memoryview(body)[start + 1 : end]
    fields = parse_object(body)
    text = fields.get(BLOB_FIELD)
    if not isinstance(text, str):
        return fields, b""
    fields[BLOB_FIELD] = ""
    try:
        return fields, text.encode("ascii")
    except UnicodeEncodeError:
        raise EcrError(
            Code.INVALID_PARAMETER, "Invalid parameter at 'layerPartBlob': not base64"
        ) from None


def json_response(document: object, *, status: int = HTTPStatus.OK) -> web.Response:
    """A JSON 1.1 protocol response."""
    return web.Response(
        body=json.dumps(document, separators=(",", ":")).encode(),
        status=status,
        content_type="application/x-amz-json-1.1",
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
    )
