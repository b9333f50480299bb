"""ECR Public and ECR through their layer API, with aioboto3.

One :class:`EcrDestination` per run holds one client (one connection pool) and offers the
steps of a push as small methods, each paced per operation on the client side:
BatchCheckLayerAvailability (:meth:`EcrDestination.missing_blobs`), InitiateLayerUpload
(:meth:`EcrDestination.start_upload`), then per blob an :class:`EcrBlobUpload` for
UploadLayerPart and CompleteLayerUpload, and PutImage (:meth:`EcrDestination.put_manifest`).
Retrying is not done here: botocore's own retries are switched off so that the pipeline's
retry layer alone decides (with :class:`~layerhoist.destinations.ecr.errors.EcrErrors`), and
retries never multiply. Part bodies are built in the hashing pass
(:mod:`layerhoist.destinations.ecr.body`).
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable, Iterable, Sized
from contextlib import AsyncExitStack, nullcontext
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aioboto3
from botocore import xform_name
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, NoRegionError

from layerhoist.destinations.base import (
    DestinationOptions,
    PartLimits,
    ResumedUpload,
    ResumeRefused,
)
from layerhoist.destinations.ecr.body import PartBody, PartSplicer, part_encoder, send_in_slices
from layerhoist.destinations.ecr.errors import EcrErrors, classify, error_code
from layerhoist.destinations.ecr.limits import (
    AWS_DOMAINS,
    MAX_DIGESTS_PER_CHECK,
    PART_LIMITS,
    PUBLISHED_QUOTAS,
    UPLOAD_ID_PATTERN,
    api_region,
)
from layerhoist.errors import UsageError
from layerhoist.image import Descriptor, Manifest
from layerhoist.refs import DestinationRef
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.metrics import RequestMetrics
from layerhoist.transfer.pacing import Pacer
from layerhoist.transfer.parts import Part
from layerhoist.transfer.verdicts import ErrorTable
from layerhoist.version import __version__


class EcrDestination:
    """A repository in ECR Public or ECR, reached through the layer API.

    Use as an async context manager; it opens one aioboto3 client for the run.
    """

    #: ECR's part rules (5 to 20 MiB parts, base64 bodies).
    limits: PartLimits = PART_LIMITS
    #: ECR's error table.
    errors: ErrorTable = EcrErrors()

    def __init__(
        self,
        ref: DestinationRef,
        *,
        config: PushConfig,
        options: DestinationOptions | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.ref = ref
        #: The repository as the user wrote it, without the tag (reports, the upload journal).
        self.description = str(dataclasses.replace(ref, tag=None))
        self._config = config
        self._options = options or DestinationOptions()
        if pacer is None and paces(config, self._options):
            pacer = Pacer(quotas=PUBLISHED_QUOTAS[ref.service])
        self.pacer = pacer
        #: Requests made, errors and latency percentiles per operation.
        self.metrics = RequestMetrics()
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._splicer = PartSplicer()
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

    def target_name(self, tag: str | None) -> str:
        """Named as the user wrote the destination, with this image's tag."""
        return str(dataclasses.replace(self.ref, tag=tag))

    async def __aenter__(self) -> Self:
        try:
            session = aioboto3.Session(profile_name=self._options.profile)
        except Exception as exc:  # botocore.exceptions.ProfileNotFound and kin
            raise UsageError(f"AWS profile {self._options.profile!r}: {exc}") from exc
        boto_config = BotoConfig(
            # total_max_attempts counts the first try: botocore never retries, the pipeline does.
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
        try:
            self._client = await self._stack.enter_async_context(
                session.client(
                    self.ref.service,
                    endpoint_url=self._options.endpoint_url,
                    region_name=api_region(self.ref, self._options.region),
                    config=boto_config,
                )
            )
        except NoRegionError as exc:
            raise UsageError(
                f"{self.description}: no AWS region; pass --region or set AWS_REGION"
            ) from exc
        events = self._client.meta.events
        events.register_first(f"request-created.{self.ref.service}.UploadLayerPart", self._splicer)
        events.register(f"before-send.{self.ref.service}.UploadLayerPart", send_in_slices)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def call(
        self, operation: str, *, in_registry: bool = True, **params: Any
    ) -> dict[str, Any]:
        """Make one API call (paced, measured, registry id added); botocore never retries it.

        ``in_registry=False`` leaves the registry id out, for the operations that take none
        (GetAuthorizationToken).
        """
        method = getattr(self.client, xform_name(operation))
        registry = self._registry if in_registry else {}
        async with self.pacer.slot(operation) if self.pacer else nullcontext():
            started = time.monotonic()
            try:
                response: dict[str, Any] = await method(**registry, **params)
            except Exception as exc:
                self.metrics.record(operation, time.monotonic() - started, ok=False)
                if self.pacer is not None and classify(exc, operation=operation).throttled:
                    self.pacer.throttled(operation)
                raise
        self.metrics.record(operation, time.monotonic() - started, ok=True)
        if self.pacer is not None:
            self.pacer.succeeded(operation)
        return response

    async def prepare(self, *, create: bool) -> None:
        """Check the repository exists; create it when ``create`` is set."""
        try:
            await self.call("DescribeRepositories", repositoryNames=[self.ref.repository])
            return
        except ClientError as exc:
            # Without create, the error table turns this into the user's message.
            if error_code(exc) != "RepositoryNotFoundException" or not create:
                raise
        await self.create_repository()

    async def create_repository(self) -> None:
        """CreateRepository; a repository created meanwhile (already exists) is fine."""
        try:
            await self.call("CreateRepository", repositoryName=self.ref.repository)
        except ClientError as exc:
            if error_code(exc) != "RepositoryAlreadyExistsException":
                raise

    async def missing_blobs(self, digests: Iterable[str]) -> set[str]:
        """Return the digests the repository does not have yet (BatchCheckLayerAvailability)."""
        wanted = list(dict.fromkeys(digests))
        missing: set[str] = set()
        for start in range(0, len(wanted), MAX_DIGESTS_PER_CHECK):
            batch = wanted[start : start + MAX_DIGESTS_PER_CHECK]
            response = await self.call(
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

    async def start_upload(
        self, descriptor: Descriptor, *, resumable: bool = False
    ) -> EcrBlobUpload:
        """InitiateLayerUpload; the part size follows the service's ``partSize``.

        Every upload of the layer API can be resumed by its id, so ``resumable`` changes
        nothing.
        """
        response = await self.call("InitiateLayerUpload", repositoryName=self.ref.repository)
        offered = response.get("partSize")
        return EcrBlobUpload(
            self,
            upload_id=str(response["uploadId"]),
            part_size=self.limits.part_size(
                self._config, offered=int(offered) if offered else None
            ),
        )

    async def resume_upload(
        self, descriptor: Descriptor, *, session: str, part_size: int
    ) -> ResumedUpload | None:
        """Take up upload id ``session`` again, without a request: the layer API has no status
        call, so the first part's answer says whether the upload is still there and where it
        stands (:meth:`EcrBlobUpload.send_part`).

        ``None`` for a session that is no upload id, or a part size the service would refuse.
        """
        limits = self.limits
        if UPLOAD_ID_PATTERN.fullmatch(session) is None or not (
            limits.min_part_size <= part_size <= limits.max_part_size
        ):
            return None
        upload = EcrBlobUpload(self, upload_id=session, part_size=part_size, resumed=True)
        return ResumedUpload(upload=upload, acknowledged=None)

    def part_encoder(self, upload_id: str) -> Callable[[int, bytes], PartBody]:
        """How parts of ``upload_id`` become UploadLayerPart bodies (see :mod:`.body`)."""
        fields = {**self._registry, "repositoryName": self.ref.repository, "uploadId": upload_id}
        return part_encoder(fields)

    async def upload_part(self, upload_id: str, part: Part) -> int:
        """Send one part (encoded by :meth:`part_encoder`); return ``lastByteReceived``."""
        if not isinstance(part.payload, PartBody):
            raise TypeError("parts must be encoded by this destination's part_encoder")
        with self._splicer.marker(part.payload) as marker:
            response = await self.call(
                "UploadLayerPart",
                repositoryName=self.ref.repository,
                uploadId=upload_id,
                partFirstByte=part.first_byte,
                partLastByte=part.last_byte,
                layerPartBlob=marker,
            )
        return int(response["lastByteReceived"])

    async def complete_upload(self, upload_id: str, digest: str) -> None:
        """Finish an upload; the service recomputes the digest. Already-there is success."""
        try:
            await self.call(
                "CompleteLayerUpload",
                repositoryName=self.ref.repository,
                uploadId=upload_id,
                layerDigests=[digest],
            )
        except ClientError as exc:
            if error_code(exc) != "LayerAlreadyExistsException":
                raise

    async def put_manifest(self, manifest: Manifest, *, tag: str | None) -> None:
        """PutImage of the manifest byte for byte, tagged when ``tag`` is given."""
        params: dict[str, Any] = {
            "repositoryName": self.ref.repository,
            "imageManifest": manifest.raw.decode("utf-8"),
            "imageManifestMediaType": manifest.media_type,
            "imageDigest": manifest.digest,
        }
        if tag is not None:
            params["imageTag"] = tag
        try:
            await self.call("PutImage", **params)
        except ClientError as exc:
            if error_code(exc) != "ImageAlreadyExistsException":
                raise


class EcrBlobUpload:
    """One layer upload: UploadLayerPart in order, then CompleteLayerUpload.

    A ``resumed`` upload (an id a killed run journaled) is unconfirmed until its first part
    is answered: a refusal of that part saying the upload is gone, or holds another byte
    count, is raised as :class:`~layerhoist.destinations.base.ResumeRefused`.
    """

    def __init__(
        self,
        destination: EcrDestination,
        *,
        upload_id: str,
        part_size: int,
        resumed: bool = False,
    ) -> None:
        self.upload_id = upload_id
        self.part_size = part_size
        self._destination = destination
        self._encode = destination.part_encoder(upload_id)
        self._confirmed = not resumed

    @property
    def session(self) -> str:
        """The upload id: a later run resumes the upload by it."""
        return self.upload_id

    def encode(self, first_byte: int, data: bytes) -> Sized:
        """The part's whole UploadLayerPart body, with its SigV4 hash."""
        return self._encode(first_byte, data)

    async def send_part(self, part: Part) -> None:
        """UploadLayerPart; a retried part whose first attempt landed counts as sent."""
        try:
            await self._destination.upload_part(self.upload_id, part)
        except ClientError as exc:
            # The first attempt's answer was lost but its bytes landed (or, resumed, a killed
            # run sent the part and died before journaling it): the service refuses the
            # repeat as out of order, naming the last byte it holds.
            code = error_code(exc)
            landed = exc.response.get("lastValidByteReceived")
            if code == "InvalidLayerPartException" and landed == part.last_byte:
                self._confirmed = True
                return
            if not self._confirmed and code in _RESUME_REFUSALS:
                raise self._refused(code, landed) from exc
            raise
        self._confirmed = True

    def _refused(self, code: str, landed: object) -> ResumeRefused:
        """Why the resumed upload does not go on from the part just refused."""
        message = f"upload {self.upload_id}: {code}"
        if code != "InvalidLayerPartException" or not isinstance(landed, int):
            return ResumeRefused(message, held=None)
        held = landed + 1
        # The service keeps whole parts: an offset between two of them cannot be continued
        # without a part shorter than the service's minimum.
        return ResumeRefused(message, held=held if held % self.part_size == 0 else None)

    async def commit(self, digest: str) -> None:
        """CompleteLayerUpload as ``digest``; the layer being there already is success."""
        await self._destination.complete_upload(self.upload_id, digest)


def paces(config: PushConfig, options: DestinationOptions) -> bool:
    """Whether requests to the destination are paced to the published quotas (``--pacing``):
    ``auto`` paces AWS's own endpoints only."""
    if config.pacing != "auto":
        return config.pacing == "published"
    endpoint = options.endpoint_url
    if endpoint is None:
        return True
    host = urlsplit(endpoint).hostname or ""
    return host.endswith(AWS_DOMAINS)


#: The refusals of a resumed upload's first part that end the resume: the id is gone, or the
#: upload holds another byte count than the journal says.
_RESUME_REFUSALS = frozenset({"UploadNotFoundException", "InvalidLayerPartException"})


def user_agent() -> str:
    """The User-Agent layerhoist sends to AWS: itself, its SDK and the platform.

    botocore appends the session's own ``botocore/VERSION`` token after it.
    """
    return (
        f"layerhoist/{__version__} aioboto3/{aioboto3.__version__} "
        f"Python/{platform.python_version()} {platform.system()}/{platform.release()}"
    )
