"""ECR and ECR Public through their ``/v2/`` endpoint (``--transport oci``).

:class:`EcrOciDestination` composes the two transports it sits between:

- a :class:`~layerhoist.destinations.registry.destination.RegistryDestination` does the
  ``/v2/`` push (uploads streamed or chunked, manifests), with a
  :class:`~layerhoist.oci.client.RegistryClient` this module opens: on the registry host
  (GetAuthorizationToken's ``proxyEndpoint`` for ECR, ``public.ecr.aws`` for ECR Public; with
  ``--endpoint-url`` that URL unless the token answer names another), with the token's
  password as credentials (:mod:`.token`, refreshed before expiry), and paced as the API
  actions its steps count as (:data:`~.limits.OCI_STEP_QUOTAS`);
- an :class:`~layerhoist.destinations.ecr.destination.EcrDestination` (aioboto3, the same
  credential chain, region, endpoint and pacer as ``--transport api``) makes the calls the
  ``/v2/`` protocol does worse or not at all: GetAuthorizationToken, BatchCheckLayerAvailability
  (one call per 100 digests instead of a HEAD per blob) and CreateRepository.

ECR's quirks are met at their step: 201 on PATCH and a stalled ``Range`` by the generic
upload; the 5 MiB minimum chunk by :func:`upload_settings`; ``BLOB_UPLOAD_INVALID`` by the
error table (a fresh session); ``NAME_UNKNOWN`` on the POST by creating the repository through
the API when asked (else one line: create it or pass ``--create-repo``); and a zero-byte blob,
which ECR cannot complete ("does not have any parts"), is refused before its upload opens.
Cross-repository mounts are not tried: ECR Public has none, and ECR's are off unless the
account turned them on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self, TypeVar

from yarl import URL

from layerhoist.destinations.base import DestinationOptions, PartLimits, ResumedUpload
from layerhoist.destinations.ecr.destination import EcrDestination
from layerhoist.destinations.ecr.limits import MIN_CHUNK_SIZE, OCI_STEP_QUOTAS
from layerhoist.destinations.ecr.oci_errors import EcrOciErrors, is_missing_repository
from layerhoist.destinations.ecr.token import EcrTokens, EcrTokenSettings
from layerhoist.destinations.registry.destination import RegistryDestination, Upload
from layerhoist.destinations.registry.limits import PART_LIMITS, RegistryUploadSettings
from layerhoist.destinations.registry.upload import RequestPacing
from layerhoist.errors import DestinationError, UsageError
from layerhoist.image import Descriptor, Manifest, short_digest
from layerhoist.oci.client import ClientSettings, RegistryClient
from layerhoist.oci.errors import RegistryResponseError
from layerhoist.refs import ECR_PUBLIC_HOST, DestinationRef
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.metrics import RequestMetrics
from layerhoist.transfer.pacing import Pacer
from layerhoist.transfer.verdicts import ErrorTable
from layerhoist.units import MiB

R = TypeVar("R")

#: The scheme of ECR Public's registry (and of ECR's ``proxyEndpoint`` on AWS).
HTTPS = "https"


def upload_settings(chunk_size: int | None) -> RegistryUploadSettings:
    """The ``/v2/`` upload strategy for ECR: a chunk under 5 MiB is a usage error.

    No mounts: ECR Public has none, and ECR's need an account setting off by default.
    """
    if chunk_size is not None and chunk_size < MIN_CHUNK_SIZE:
        raise UsageError(
            f"--chunk-size: ECR takes PATCH chunks of at least {MIN_CHUNK_SIZE // MiB} MiB "
            f"(LayerPartTooSmallException), not {chunk_size} bytes"
        )
    try:
        return RegistryUploadSettings(chunk_size=chunk_size, mount=False)
    except ValueError as exc:
        raise UsageError(f"--chunk-size: {exc}") from exc


def registry_url(ref: DestinationRef, options: DestinationOptions, proxy: str | None) -> URL:
    """Where ``/v2/`` is served: the token's ``proxyEndpoint``, else ``--endpoint-url``,
    else ``public.ecr.aws`` (ECR Public)."""
    if proxy is not None:
        return URL(proxy)
    if options.endpoint_url is not None:
        return URL(options.endpoint_url)
    if ref.service == "ecr-public":
        return URL(f"{HTTPS}://{ECR_PUBLIC_HOST}")
    raise DestinationError(f"{ref}: GetAuthorizationToken named no proxyEndpoint")


def oci_repository(ref: DestinationRef, options: DestinationOptions) -> str:
    """The repository's name on ``/v2/``: ``ALIAS/REPO`` on ``public.ecr.aws``."""
    if ref.service != "ecr-public" or options.endpoint_url is not None:
        return ref.repository
    if ref.alias is None:
        raise UsageError(
            f"{ref}: --transport oci to ECR Public needs the registry alias: "
            f"write the destination as {ECR_PUBLIC_HOST}/ALIAS/{ref.repository}"
        )
    return f"{ref.alias}/{ref.repository}"


class EcrOciDestination:
    """A repository of ECR or ECR Public, written through ``/v2/``.

    Use as an async context manager: it opens the AWS client, fetches the first token (which
    names the registry) and the registry client. ``wall_clock`` (epoch seconds) decides when
    the token is refreshed.
    """

    #: Parts go on the wire raw, as to any OCI registry.
    limits: PartLimits = PART_LIMITS

    def __init__(
        self,
        ref: DestinationRef,
        *,
        config: PushConfig,
        options: DestinationOptions,
        tokens: EcrTokenSettings | None = None,
        wall_clock: Callable[[], float] = time.time,
        pacer: Pacer | None = None,
    ) -> None:
        self.ref = ref
        self.description = str(dataclasses.replace(ref, tag=None))
        self.settings = upload_settings(options.chunk_size)
        self._config = config
        self._options = options
        self._repository = oci_repository(ref, options)
        #: The API side: tokens, blob checks, repository creation, and the pacer.
        self.api = EcrDestination(ref, config=config, options=options, pacer=pacer)
        #: Requests of both sides, per operation.
        self.metrics = RequestMetrics()
        self.api.metrics = self.metrics
        #: The published quotas of the service (``--pacing``), for ``/v2/`` steps and API calls.
        self.pacer: Pacer | None = self.api.pacer
        self.errors: ErrorTable = EcrOciErrors()
        #: GetAuthorizationToken's credentials, refreshed before expiry.
        self.tokens = EcrTokens(
            self._get_authorization_token,
            service=ref.service,
            settings=tokens,
            wall_clock=wall_clock,
        )
        self._registry: RegistryDestination | None = None
        self._stack = AsyncExitStack()

    @property
    def registry(self) -> RegistryDestination:
        """The ``/v2/`` side; entering the destination opens it."""
        if self._registry is None:
            raise RuntimeError(f"{self.description}: the destination is not open")
        return self._registry

    def target_name(self, tag: str | None) -> str:
        """Named as the user wrote the destination, with this image's tag."""
        return str(dataclasses.replace(self.ref, tag=tag))

    async def _get_authorization_token(self) -> Mapping[str, Any]:
        return await self.api.call("GetAuthorizationToken", in_registry=False)

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.api)
            token = await self.tokens.current()
            url = registry_url(self.ref, self._options, token.proxy_endpoint)
            host = url.raw_authority
            client = RegistryClient(
                registry=host,
                endpoint=host,
                credentials=self.tokens.credentials,
                settings=ClientSettings(tls_verify=self._options.tls_verify),
                scheme=url.scheme or HTTPS,
            )
            pacing = (
                RequestPacing(pacer=self.pacer, operations=OCI_STEP_QUOTAS)
                if self.pacer is not None
                else None
            )
            registry = RegistryDestination(
                DestinationRef(
                    transport="docker", repository=self._repository, tag=None, host=host
                ),
                config=self._config,
                options=self._options,
                settings=self.settings,
                client=client,
                pacing=pacing,
                description=self.description,
            )
            registry.metrics = self.metrics
            await stack.enter_async_context(registry)
            self._registry = registry
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def prepare(self, *, create: bool) -> None:
        """Log in to ``/v2/``, then check the repository exists through the API (as
        ``--transport api`` does), creating it when ``create`` is set.

        A missing repository is so reported in one line before anything is read from the
        source; one that goes missing later meets ``NAME_UNKNOWN`` on its POST.
        """
        await self.registry.prepare(create=create)
        await self.api.prepare(create=create)

    async def missing_blobs(self, digests: Iterable[str]) -> set[str]:
        """BatchCheckLayerAvailability: one call per 100 digests, not a HEAD per blob."""
        return await self.api.missing_blobs(digests)

    async def start_upload(self, descriptor: Descriptor, *, resumable: bool = False) -> Upload:
        """POST a session; a missing repository is created first when ``--create-repo``.

        ``resumable`` goes as PATCH chunks (see :meth:`RegistryDestination.start_upload`) when
        the part size is one ECR takes as a chunk; a smaller one keeps the streamed PUT.
        """
        if descriptor.size == 0:
            raise DestinationError(
                f"{self.description}: blob {short_digest(descriptor.digest)} is empty, and "
                "ECR's /v2/ cannot complete an upload without parts",
                code="EmptyBlob",
                hint="push this image with --transport api",
            )
        chunks = resumable and self.registry.part_size >= MIN_CHUNK_SIZE
        return await self._creating(
            lambda: self.registry.start_upload(descriptor, resumable=chunks)
        )

    async def resume_upload(
        self, descriptor: Descriptor, *, session: str, part_size: int
    ) -> ResumedUpload | None:
        """The ``/v2/`` session, if ECR still knows it, continued from the journal's offset.

        ECR's ``Range`` can stop advancing though every chunk was stored
        (aws/containers-roadmap#2831), so it is not trusted: the first PATCH's answer confirms
        where the session stands, as the layer API's first part does.
        """
        if part_size < MIN_CHUNK_SIZE:
            return None
        resumed = await self.registry.resume_upload(
            descriptor, session=session, part_size=part_size
        )
        return None if resumed is None else ResumedUpload(upload=resumed.upload, acknowledged=None)

    async def put_manifest(self, manifest: Manifest, *, tag: str | None) -> None:
        """PUT the manifest (PutImage's quota), by ``tag`` when given, else by digest."""
        await self._creating(lambda: self.registry.put_manifest(manifest, tag=tag))

    async def _creating(self, step: Callable[[], Awaitable[R]]) -> R:
        """Run ``step``; on ``NAME_UNKNOWN`` with ``--create-repo``, create the repository
        through the API and run it once more."""
        try:
            return await step()
        except RegistryResponseError as exc:
            if not (is_missing_repository(exc) and self._options.create_repository):
                raise
        await self.api.create_repository()
        return await step()
