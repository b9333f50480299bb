"""Blobs over the distribution API: a GET streamed, resumed with ``Range`` where it broke.

:class:`BlobReader` holds one blob's answer open and hands out its bytes as they arrive, never
more than the caller asks for. When the connection breaks (or stalls past the read timeout)
the read raises; the next read opens a new request with ``Range: bytes=N-`` from the first
byte not yet received. A registry that answers 206 continues from there (a *resume*); one that
ignores the range and answers 200 sends the blob from its start again, and the bytes already
received are read and dropped (a *restart*). Redirects (to a CDN or object store) are
followed; aiohttp drops the ``Authorization`` header when one leaves the registry's host.

The reader does not retry by itself: the caller wraps each read in
:func:`~layerhoist.transfer.retry.retry_call`, so one retry policy rules every request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import aiohttp

from layerhoist.errors import CorruptBlobError
from layerhoist.image import Descriptor, short_digest
from layerhoist.oci.client import RegistryClient, pull_scope

PARTIAL_CONTENT = 206
_CONTENT_RANGE = re.compile(r"bytes\s+(?P<first>[0-9]+)-[0-9]+/(?:[0-9]+|\*)")


@dataclass
class BlobStats:
    """What blob streams of one source met, for the report."""

    #: Streams continued from the byte they broke at, with a 206 answer to ``Range``.
    resumed: int = 0
    #: Streams the registry sent from the start again (it ignored ``Range``).
    restarted: int = 0
    #: Bytes received and dropped because a registry ignored ``Range``.
    bytes_discarded: int = 0


def blob_path(repository: str, digest: str) -> str:
    """The API path of blob ``digest`` of ``repository``."""
    return f"/v2/{repository}/blobs/{digest}"


class BlobReader:
    """The bytes of one blob from ``offset``, reopening the request where it broke."""

    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        descriptor: Descriptor,
        *,
        offset: int = 0,
        where: str,
        stats: BlobStats | None = None,
    ) -> None:
        if not 0 <= offset <= descriptor.size:
            raise ValueError(f"offset {offset} is outside blob of {descriptor.size} bytes")
        self._client = client
        self._repository = repository
        self._descriptor = descriptor
        self._where = where
        self.stats = stats if stats is not None else BlobStats()
        #: Offset in the blob of the next byte to hand out.
        self.position = offset
        self._response: aiohttp.ClientResponse | None = None
        self._broken = False

    async def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the blob, as soon as some arrive; ``b""`` at its end.

        Raises aiohttp's exception when the connection breaks (the next call resumes), and
        :class:`CorruptBlobError` when the registry's blob is longer or shorter than the
        descriptor says.
        """
        size = self._descriptor.size
        if self.position >= size:
            await self._check_end()
            return b""
        if self._response is None:
            self._response = await self._open()
        try:
            data = await self._response.content.read(min(limit, size - self.position))
        except BaseException:
            self._drop()
            raise
        if not data:
            self._drop()
            raise CorruptBlobError(
                f"{self._where}: blob {short_digest(self._descriptor.digest)} ended after "
                f"{self.position} of {size} bytes",
                digest=self._descriptor.digest,
            )
        self.position += len(data)
        return data

    async def aclose(self) -> None:
        """Release the open answer, if any."""
        self._drop()

    def _drop(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
            self._broken = True

    async def _check_end(self) -> None:
        response = self._response
        if response is None:
            return
        try:
            extra = await response.content.read(1)
        finally:
            self._response = None
            response.release()
        if extra:
            raise CorruptBlobError(
                f"{self._where}: blob {short_digest(self._descriptor.digest)} is longer than "
                f"the {self._descriptor.size} bytes its descriptor says",
                digest=self._descriptor.digest,
            )

    async def _open(self) -> aiohttp.ClientResponse:
        """The answer of a GET from :attr:`position`, positioned at it."""
        headers = {"Range": f"bytes={self.position}-"} if self.position else {}
        response = await self._client.send(
            "GET",
            blob_path(self._repository, self._descriptor.digest),
            scope=pull_scope(self._repository),
            what=f"{self._where}: blob {short_digest(self._descriptor.digest)}",
            headers=headers,
            expect=(200, PARTIAL_CONTENT),
        )
        if not self.position:
            return response
        ranged = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if response.status == PARTIAL_CONTENT and ranged and int(ranged["first"]) == self.position:
            if self._broken:
                self.stats.resumed += 1
            return response
        try:
            await self._skip(response, self.position)
        except BaseException:
            response.close()
            raise
        if self._broken:
            self.stats.restarted += 1
        return response

    async def _skip(self, response: aiohttp.ClientResponse, count: int) -> None:
        """Read and drop the first ``count`` bytes of a full answer to a ranged request."""
        read_size = self._client.settings.read_size
        left = count
        while left:
            data = await response.content.read(min(left, read_size))
            if not data:
                raise CorruptBlobError(
                    f"{self._where}: blob {short_digest(self._descriptor.digest)} is shorter "
                    f"than the {count} bytes already received",
                    digest=self._descriptor.digest,
                )
            left -= len(data)
            self.stats.bytes_discarded += len(data)
