"""``docker://HOST/REPO[:TAG]`` as a destination: any OCI registry, over the distribution API.

:class:`RegistryDestination` is driven by the pipeline as any destination:

- :meth:`~RegistryDestination.prepare` pings ``/v2/`` and learns the auth challenge; a
  registry creates a repository on its first push, so there is nothing to create;
- :meth:`~RegistryDestination.missing_blobs` HEADs every blob (bounded concurrency); a blob
  missing here that this process pushed to another repository of the same registry is
  **mounted** (``POST ?mount=&from=``) before anything is read from the source. A 202 to the
  mount opens an ordinary session, kept for that blob's upload;
- :meth:`~RegistryDestination.start_upload` opens a session (POST) and returns a
  :class:`~.upload.StreamedUpload` or a :class:`~.upload.ChunkedUpload`, as
  :class:`~.limits.RegistryUploadSettings` say; an upload asked to be resumable goes as
  chunks whatever they say, since a streamed body cannot be resumed where it broke;
- :meth:`~RegistryDestination.resume_upload` GETs a session a killed run journaled and goes
  on from the bytes its ``Range`` says it holds, as chunks;
- :meth:`~RegistryDestination.put_manifest` PUTs the manifest's bytes with its media type,
  by digest, or by tag for the tagged one (the pipeline puts children first, the tag last).

The destination is an async context manager: it holds the HTTP session and the task group
the streamed PUTs run in; leaving it ends every upload not committed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Self, TypeVar

import anyio
from anyio.abc import TaskGroup
from yarl import URL

from layerhoist.destinations.base import DestinationOptions, PartLimits, ResumedUpload
from layerhoist.destinations.registry.errors import RegistryDestinationErrors
from layerhoist.destinations.registry.limits import PART_LIMITS, RegistryUploadSettings
from layerhoist.destinations.registry.mounts import PROCESS_BLOBS, KnownBlobs
from layerhoist.destinations.registry.upload import (
    SESSION_GONE_STATUSES,
    ChunkedUpload,
    RequestPacing,
    StreamedUpload,
    UploadContext,
    timed,
)
from layerhoist.image import Descriptor, Manifest, short_digest
from layerhoist.oci.client import ClientSettings, RegistryClient
from layerhoist.oci.credentials import find_credentials, parse_credentials
from layerhoist.oci.errors import RegistryResponseError
from layerhoist.oci.push import (
    blob_exists,
    open_upload,
    push_scope,
    put_manifest,
    upload_status,
)
from layerhoist.refs import DOCKER_HUB, DOCKER_HUB_ENDPOINT, DOCKER_PREFIX, DestinationRef
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.metrics import RequestMetrics
from layerhoist.transfer.pacing import Pacer
from layerhoist.transfer.verdicts import ErrorTable

Upload = StreamedUpload | ChunkedUpload
R = TypeVar("R")


class RegistryDestination:
    """One repository of an OCI registry, written through the distribution API.

    ``known_blobs`` is shared by every destination of the process (default
    :data:`~.mounts.PROCESS_BLOBS`), so blobs pushed to one repository are mounted into the
    next one of the same registry.

    A registry reached another way than ``docker://`` (ECR's ``/v2/``) passes its own
    ``client`` (credentials and endpoint already chosen; closed with the destination) and
    the ``pacing`` of its quotas, and names itself with ``description``.
    """

    #: Any part size; parts go on the wire raw.
    limits: PartLimits = PART_LIMITS

    def __init__(
        self,
        ref: DestinationRef,
        *,
        config: PushConfig,
        options: DestinationOptions,
        settings: RegistryUploadSettings | None = None,
        known_blobs: KnownBlobs | None = None,
        client: RegistryClient | None = None,
        pacing: RequestPacing | None = None,
        description: str | None = None,
    ) -> None:
        if ref.transport != "docker" or ref.host is None:
            raise ValueError(f"{ref} is not a docker:// destination")
        self.ref = ref
        self.host = ref.host
        self.repository = ref.repository
        self.description = description or f"{DOCKER_PREFIX}{ref.host}/{ref.repository}"
        #: Client-side pacing of its requests (ECR's quotas); distribution publishes none.
        self.pacer: Pacer | None = pacing.pacer if pacing is not None else None
        self._pacing = pacing
        #: Requests made, errors and latency percentiles per operation.
        self.metrics = RequestMetrics()
        #: Registry quirks met, by name.
        self.quirks: Counter[str] = Counter()
        #: Blobs mounted from another repository instead of uploaded.
        self.mounted: list[str] = []
        self.errors: ErrorTable = RegistryDestinationErrors()
        self.settings = settings or RegistryUploadSettings()
        self._options = options
        self._known = PROCESS_BLOBS if known_blobs is None else known_blobs
        self._part_size = self.settings.chunk_size or self.limits.part_size(config, offered=None)
        self._client: RegistryClient | None = client
        self._tasks: TaskGroup | None = None
        self._uploads: dict[str, Upload] = {}
        # Sessions a mount opened instead of mounting (202), used by the blob's upload.
        self._sessions: dict[str, URL] = {}

    @property
    def part_size(self) -> int:
        """Bytes per part of its uploads (per PATCH, when they go as chunks)."""
        return self._part_size

    def target_name(self, tag: str | None) -> str:
        """``docker://HOST/REPO:TAG`` (without a tag: ``docker://HOST/REPO``)."""
        return self.description if tag is None else f"{self.description}:{tag}"

    @property
    def client(self) -> RegistryClient:
        """The registry's client; entering the destination opens it."""
        if self._client is None:
            raise RuntimeError(f"{self.description}: the destination is not open")
        return self._client

    async def __aenter__(self) -> Self:
        if self._client is None:
            options = self._options
            credentials = (
                parse_credentials(options.credentials)
                if options.credentials is not None
                else await find_credentials(self.host, self.repository, auth_file=options.authfile)
            )
            self._client = RegistryClient(
                registry=self.host,
                endpoint=DOCKER_HUB_ENDPOINT if self.host == DOCKER_HUB else self.host,
                credentials=credentials,
                settings=ClientSettings(tls_verify=options.tls_verify),
            )
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for upload in self._uploads.values():
            upload.abort()
        self._uploads.clear()
        try:
            if self._tasks is not None:
                self._tasks.cancel_scope.cancel()
                # The body's own exception is not the task group's: its tasks keep theirs, so
                # passing it on would only wrap it in an exception group.
                await self._tasks.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self.client.aclose()

    def _context(self) -> UploadContext:
        return UploadContext(
            client=self.client,
            repository=self.repository,
            where=self.description,
            metrics=self.metrics,
            quirks=self.quirks,
            landed=self._landed,
            pacing=self._pacing,
        )

    async def _timed(self, operation: str, fn: Callable[[], Awaitable[R]]) -> R:
        return await timed(self.metrics, operation, fn, pacing=self._pacing)

    def _landed(self, digest: str) -> None:
        self._uploads.pop(digest, None)
        self._known.add(self.host, self.repository, digest)

    async def prepare(self, *, create: bool) -> None:
        """Ping ``/v2/`` and, when the registry asks for credentials, try them there once.

        A registry creates a repository on its first push, so ``create`` changes nothing.
        Checking the credentials here stops a run with wrong ones before any blob is read.
        """
        client = self.client
        await timed(self.metrics, "Ping", client.ping)
        if client.auth.scheme is not None:
            await timed(self.metrics, "Ping", lambda: self._authenticated_ping(client))

    async def _authenticated_ping(self, client: RegistryClient) -> None:
        async with await client.send(
            "GET", "/v2/", scope=push_scope(self.repository), what="login"
        ):
            pass

    async def missing_blobs(self, digests: Iterable[str]) -> set[str]:
        """The ``digests`` the repository lacks, after mounting those another one holds."""
        wanted = list(dict.fromkeys(digests))
        missing: set[str] = set()
        limiter = anyio.CapacityLimiter(self.settings.head_concurrency)

        async def check(digest: str) -> None:
            async with limiter:
                where = f"{self.description}: blob {short_digest(digest)}"
                present = await timed(
                    self.metrics,
                    "HeadBlob",
                    lambda: blob_exists(self.client, self.repository, digest, where=where),
                )
                if present:
                    self._known.add(self.host, self.repository, digest)
                elif not await self._mount(digest):
                    missing.add(digest)

        async with anyio.create_task_group() as tg:
            for digest in wanted:
                tg.start_soon(check, digest)
        return missing

    async def _mount(self, digest: str) -> bool:
        """Mount ``digest`` from a repository known to hold it; whether it is there now."""
        holders = self._known.holders(self.host, digest, besides=self.repository)
        if not self.settings.mount or not holders or digest in self._sessions:
            return False
        where = f"{self.description}: blob {short_digest(digest)} (mount from {holders[0]})"
        try:
            opened = await self._timed(
                "MountBlob",
                lambda: open_upload(
                    self.client, self.repository, where=where, mount=(digest, holders[0])
                ),
            )
        except RegistryResponseError:
            # A mount is an optimisation: a registry that refuses it (no read access to the
            # other repository, mounting off) still takes the blob as an upload.
            return False
        if opened.mounted:
            self.mounted.append(digest)
            self._known.add(self.host, self.repository, digest)
            return True
        assert opened.location is not None  # open_upload gives one unless mounted
        self._sessions[digest] = opened.location
        return False

    async def start_upload(self, descriptor: Descriptor, *, resumable: bool = False) -> Upload:
        """Open a session (or take the one a declined mount opened) for the blob.

        ``resumable`` sends it as PATCH chunks of the part size even where the settings ask
        for one streamed PUT: only an upload acknowledged chunk by chunk can be resumed.
        """
        digest = descriptor.digest
        self._abort(digest)
        location = self._sessions.pop(digest, None)
        if location is None:
            where = f"{self.description}: blob {short_digest(digest)}"
            opened = await self._timed(
                "StartUpload",
                lambda: open_upload(self.client, self.repository, where=where),
            )
            assert opened.location is not None  # no mount was asked for
            location = opened.location
        upload: Upload
        if self.settings.chunk_size is None and not resumable:
            assert self._tasks is not None  # set with the client
            upload = StreamedUpload(
                context=self._context(),
                location=location,
                digest=digest,
                part_size=self._part_size,
                tasks=self._tasks,
            )
        else:
            upload = ChunkedUpload(
                context=self._context(), location=location, digest=digest, part_size=self._part_size
            )
        self._uploads[digest] = upload
        return upload

    async def resume_upload(
        self, descriptor: Descriptor, *, session: str, part_size: int
    ) -> ResumedUpload | None:
        """GET the upload URL ``session`` a killed run journaled; go on from the bytes its
        ``Range`` says the registry holds, as PATCH chunks of ``part_size``.

        ``None`` for a URL that is no upload session of this repository on this registry, a
        part size out of bounds, or a session the registry no longer knows or refuses to go
        on with (distribution cancels one whose bytes disagree with its state).
        """
        digest = descriptor.digest
        location = URL(session, encoded=True)
        limits = self.limits
        if (
            not location.is_absolute()
            or location.raw_authority != self.client.endpoint
            or not location.raw_path.startswith(f"/v2/{self.repository}/blobs/uploads/")
            or not limits.min_part_size <= part_size <= limits.max_part_size
        ):
            return None
        where = f"{self.description}: blob {short_digest(digest)} (resumed)"
        try:
            status = await self._timed(
                "UploadStatus",
                lambda: upload_status(self.client, self.repository, location, where=where),
            )
        except RegistryResponseError as exc:
            if exc.status in SESSION_GONE_STATUSES:
                return None
            raise
        self._abort(digest)
        upload = ChunkedUpload(
            context=self._context(),
            location=status.location,
            digest=digest,
            part_size=part_size,
            resumed=True,
        )
        self._uploads[digest] = upload
        return ResumedUpload(upload=upload, acknowledged=status.received)

    def _abort(self, digest: str) -> None:
        """End an earlier upload of ``digest`` not committed (a requeue starts a new one)."""
        previous = self._uploads.pop(digest, None)
        if previous is not None:
            previous.abort()

    async def put_manifest(self, manifest: Manifest, *, tag: str | None) -> None:
        """PUT the manifest's bytes, by ``tag`` when given, else by its digest."""
        reference = tag if tag is not None else manifest.digest
        where = (
            self.target_name(tag)
            if tag is not None
            else f"{self.description}@{short_digest(manifest.digest)}"
        )
        await self._timed(
            "PutManifest",
            lambda: put_manifest(
                self.client, self.repository, manifest, reference=reference, where=where
            ),
        )
