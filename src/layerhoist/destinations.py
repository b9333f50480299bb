"""Destinations: Amazon ECR Public and ECR through their layer API, with aioboto3.

One :class:`EcrDestination` per run holds one client (one connection pool) and
offers the steps of a push as small methods — check, initiate, upload part,
complete, put image — each paced per operation on the client side. Retrying is not
done here: botocore's own retries are switched off so that the scheduler alone
decides, and retries never multiply.

Sending parts cheaply
---------------------
botocore would base64-encode a part with the stdlib codec and then ``json.dumps`` a
body of several MiB, which costs more CPU than hashing it. Instead
:meth:`EcrDestination.part_encoder` builds each part's whole UploadLayerPart body —
the same JSON botocore would send, the part in SIMD base64 — in the worker-thread pass
that hashes the part (:mod:`layerhoist.hashstream`). The call itself carries a tiny
marker blob, and a ``request-created`` hook swaps the prebuilt body in before SigV4
signs it. The client, its signing, credentials and configuration stay botocore's.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, nullcontext
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aioboto3
import pybase64
from botocore import xform_name
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from layerhoist.classification import classify
from layerhoist.config import ECR_MAX_DIGESTS_PER_CHECK, PushConfig
from layerhoist.errors import UsageError
from layerhoist.hashstream import Part
from layerhoist.image import Manifest
from layerhoist.metrics import RequestMetrics
from layerhoist.pacing import PUBLISHED_QUOTAS, Pacer
from layerhoist.reference import DestinationRef
from layerhoist.version import __version__

#: Hosts under these domains are AWS's own endpoints, where the published quotas apply.
AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")
#: ECR Public's API is served from us-east-1 only, whatever region the images serve from.
ECR_PUBLIC_REGION = "us-east-1"
#: The header SigV4 reads a precomputed body hash from (botocore's canonical request).
CONTENT_SHA256_HEADER = "X-Amz-Content-SHA256"
_BODY_END = b'"}'
#: Bytes handed to the HTTP connection per write when a part's body is sent.
WIRE_SLICE = 1024 * 1024
#: A per-run random prefix makes the marker that stands in for a part in botocore's
#: serializer impossible to confuse with anything else in a request body.
_MARKER_PREFIX_BYTES = 6
_COUNTER_BYTES = 6


@dataclass(frozen=True, kw_only=True)
class DestinationOptions:
    """How to reach the destination; ``None`` means the standard AWS default."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    registry_id: str | None = None
    create_repository: bool = False


class EcrDestination:
    """A repository in ECR Public or ECR, reached through the layer API.

    Use as an async context manager; it opens one aioboto3 client for the run.
    """

    def __init__(
        self,
        ref: DestinationRef,
        *,
        config: PushConfig,
        options: DestinationOptions | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.ref = ref
        self._config = config
        self._options = options or DestinationOptions()
        if pacer is None and self._paced():
            pacer = Pacer(quotas=PUBLISHED_QUOTAS[ref.service])
        self.pacer = pacer
        #: Requests made, errors and latency percentiles per operation.
        self.metrics = RequestMetrics()
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._bodies: dict[bytes, PartBody] = {}
        self._markers = itertools.count()
        self._marker_prefix = os.urandom(_MARKER_PREFIX_BYTES)
        registry_id = self._options.registry_id or ref.registry_id
        # registryId is optional in every call; the repository is named per call
        # because DescribeRepositories takes a list of names instead.
        self._registry: dict[str, str] = {"registryId": registry_id} if registry_id else {}

    @property
    def client(self) -> Any:
        """The open aioboto3 client, e.g. to register botocore event hooks for logging."""
        if self._client is None:
            raise RuntimeError("the destination is not open (use it as an async context manager)")
        return self._client

    def _paced(self) -> bool:
        if self._config.pacing != "auto":
            return self._config.pacing == "published"
        endpoint = self._options.endpoint_url
        if endpoint is None:
            return True
        host = urlsplit(endpoint).hostname or ""
        return host.endswith(AWS_DOMAINS)

    def _region(self) -> str | None:
        if self.ref.service == "ecr-public":
            return ECR_PUBLIC_REGION
        return self._options.region or self.ref.region

    async def __aenter__(self) -> Self:
        try:
            session = aioboto3.Session(profile_name=self._options.profile)
        except Exception as exc:  # botocore.exceptions.ProfileNotFound and kin
            raise UsageError(f"AWS profile {self._options.profile!r}: {exc}") from exc
        boto_config = BotoConfig(
            # total_max_attempts counts the first try: botocore never retries, the scheduler does.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=self._config.connect_timeout,
            read_timeout=self._config.read_timeout,
            max_pool_connections=self._config.max_connections,
            tcp_keepalive=True,
            # botocore otherwise rebuilds its User-Agent from some thirty components
            # twice per request, a tenth of a small call's CPU; this one is built once
            # and names layerhoist in CloudTrail's userAgent field.
            user_agent=user_agent(),
        )
        self._client = await self._stack.enter_async_context(
            session.client(
                self.ref.service,
                endpoint_url=self._options.endpoint_url,
                region_name=self._region(),
                config=boto_config,
            )
        )
        events = self._client.meta.events
        events.register_first(
            f"request-created.{self.ref.service}.UploadLayerPart", self._splice_part
        )
        events.register(f"before-send.{self.ref.service}.UploadLayerPart", _send_in_slices)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def _splice_part(self, request: Any, **_: Any) -> None:
        body: bytes = request.data
        for marker, payload in self._bodies.items():
            if marker in body:
                request.data = payload
                # SigV4 takes a body hash given in this (signed) header instead of
                # hashing the body itself: the hash was made in the encoding pass.
                request.headers[CONTENT_SHA256_HEADER] = payload.sha256
                return

    def part_encoder(self, upload_id: str) -> Callable[[int, bytes], PartBody]:
        """How parts of ``upload_id`` become request bodies (called off the event loop).

        The body is what botocore's JSON serializer would produce for the call made in
        :meth:`upload_part`; the service parses JSON, so field order and spacing are free.
        It stays in the pieces it is made of (no copy to join them) with the sha256 that
        SigV4 signs, computed here in the same pass.
        """
        fields = {**self._registry, "repositoryName": self.ref.repository, "uploadId": upload_id}
        head = json.dumps(fields)[:-1].encode()

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

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        method = getattr(self._client, xform_name(operation))
        async with self.pacer.slot(operation) if self.pacer else nullcontext():
            started = time.monotonic()
            try:
                response: dict[str, Any] = await method(**self._registry, **params)
            except Exception as exc:
                self.metrics.record(operation, time.monotonic() - started, ok=False)
                if self.pacer is not None and classify(exc, operation=operation).throttled:
                    self.pacer.throttled(operation)
                raise
        self.metrics.record(operation, time.monotonic() - started, ok=True)
        if self.pacer is not None:
            self.pacer.succeeded(operation)
        return response

    async def ensure_repository(self, *, create: bool) -> None:
        """Check the repository exists; create it when ``create`` is set."""
        try:
            await self._call("DescribeRepositories", repositoryNames=[self.ref.repository])
            return
        except ClientError as exc:
            # Without create, the error table turns this into the user's message.
            if _code(exc) != "RepositoryNotFoundException" or not create:
                raise
        try:
            await self._call("CreateRepository", repositoryName=self.ref.repository)
        except ClientError as exc:
            if _code(exc) != "RepositoryAlreadyExistsException":
                raise

    async def missing_blobs(self, digests: Iterable[str]) -> set[str]:
        """Return the digests the repository does not have yet (BatchCheckLayerAvailability)."""
        wanted = list(dict.fromkeys(digests))
        missing: set[str] = set()
        for start in range(0, len(wanted), ECR_MAX_DIGESTS_PER_CHECK):
            batch = wanted[start : start + ECR_MAX_DIGESTS_PER_CHECK]
            response = await self._call(
                "BatchCheckLayerAvailability",
                repositoryName=self.ref.repository,
                layerDigests=batch,
            )
            available = {
                layer["layerDigest"]
                for layer in response.get("layers", [])
                if layer.get("layerAvailability") == "AVAILABLE"
            }
            missing.update(d for d in batch if d not in available)
        return missing

    async def initiate_upload(self) -> tuple[str, int | None]:
        """Start a layer upload; return its id and the part size the service asks for."""
        response = await self._call("InitiateLayerUpload", repositoryName=self.ref.repository)
        part_size = response.get("partSize")
        return str(response["uploadId"]), int(part_size) if part_size else None

    async def upload_part(self, upload_id: str, part: Part) -> int:
        """Send one part (encoded by :meth:`part_encoder`); return ``lastByteReceived``."""
        if not isinstance(part.payload, PartBody):
            raise TypeError("parts must be encoded by this destination's part_encoder")
        raw_marker = self._marker_prefix + next(self._markers).to_bytes(_COUNTER_BYTES, "big")
        marker = b'"' + pybase64.b64encode(raw_marker) + b'"'
        self._bodies[marker] = part.payload
        try:
            response = await self._call(
                "UploadLayerPart",
                repositoryName=self.ref.repository,
                uploadId=upload_id,
                partFirstByte=part.first_byte,
                partLastByte=part.last_byte,
                layerPartBlob=raw_marker,
            )
        finally:
            del self._bodies[marker]
        return int(response["lastByteReceived"])

    async def complete_upload(self, upload_id: str, digest: str) -> None:
        """Finish an upload; the service recomputes the digest. Already-there is success."""
        try:
            await self._call(
                "CompleteLayerUpload",
                repositoryName=self.ref.repository,
                uploadId=upload_id,
                layerDigests=[digest],
            )
        except ClientError as exc:
            if _code(exc) != "LayerAlreadyExistsException":
                raise

    async def put_image(self, manifest: Manifest, *, tag: str | None) -> None:
        """Store a manifest byte for byte, tagged when ``tag`` is given; already there is fine."""
        params: dict[str, Any] = {
            "repositoryName": self.ref.repository,
            "imageManifest": manifest.raw.decode("utf-8"),
            "imageManifestMediaType": manifest.media_type,
            "imageDigest": manifest.digest,
        }
        if tag is not None:
            params["imageTag"] = tag
        try:
            await self._call("PutImage", **params)
        except ClientError as exc:
            if _code(exc) != "ImageAlreadyExistsException":
                raise


def user_agent() -> str:
    """The User-Agent layerhoist sends to AWS: itself, its SDK and the platform.

    botocore appends the session's own ``botocore/VERSION`` token after it.
    """
    return (
        f"layerhoist/{__version__} aioboto3/{aioboto3.__version__} "
        f"Python/{platform.python_version()} {platform.system()}/{platform.release()}"
    )


@dataclass(frozen=True, slots=True)
class PartBody:
    """An UploadLayerPart request body, kept in the pieces it was built from."""

    pieces: tuple[bytes, ...]
    #: Hex sha256 of the whole body, for SigV4.
    sha256: str

    def __len__(self) -> int:
        return sum(len(piece) for piece in self.pieces)


def _send_in_slices(request: Any, **_: Any) -> None:
    # Once signed, a part's body goes to aiohttp as slices of its pieces: a body
    # written whole would be joined with the headers and, on Python 3.11, copied
    # again by the transport for what the socket cannot take at once.
    body = request.body
    if isinstance(body, PartBody):
        request.body = _slices(body)


async def _slices(body: PartBody) -> AsyncIterator[memoryview]:
    for piece in body.pieces:
        view = memoryview(piece)
        for start in range(0, len(view), WIRE_SLICE):
            yield view[start : start + WIRE_SLICE]


def _code(exc: ClientError) -> str:
    error: Mapping[str, Any] = exc.response.get("Error", {})
    return str(error.get("Code", ""))
