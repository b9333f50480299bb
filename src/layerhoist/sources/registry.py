"""``docker://[HOST/]REPO[:TAG|@DIGEST]``: images read from a registry over the OCI API.

``load()`` resolves the tag or digest (or, with ``all_tags``, every tag of the repository) to
images: a manifest, or an index with every child manifest, platforms kept. Every manifest's
bytes are checked against its digest. Blobs are not touched until the pipeline streams them.

``blob_chunks`` streams a blob straight from the registry in pieces of exactly
``chunk_size`` bytes (:class:`~layerhoist.transfer.rechunk.Rechunker`), never to disk and
never more than one piece held. A connection that breaks mid-blob is retried in place from
the last byte received (``Range``), counted in :attr:`RegistrySource.stats`.

Each request is retried by :func:`~layerhoist.transfer.retry.retry_call` under the
transport's classifier (:func:`layerhoist.oci.errors.classifier`), with the attempts, backoff,
retry time and budget of the run's :class:`~layerhoist.transfer.config.PushConfig`. The first
request (the ``/v2/`` ping) gets its attempts only: a registry that never answered is more
likely misnamed than restarting. Errors are one line naming the registry, repository and tag.

Docker Hub announces its pull limit on manifest GETs (:mod:`layerhoist.oci.ratelimit`). Once
the pulls left are at or below ``pull_limit_reserve``, no further manifest GET is started:
:class:`PullLimitReached` says how long the limit's window is. With ``all_tags`` the images
loaded before then are copied and :attr:`RegistrySource.stopped` says why the rest are not.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import anyio

from layerhoist.errors import LayerhoistError, ManifestError, SourceError
from layerhoist.image import MANIFEST_TYPES, Descriptor, Image, Manifest, short_digest
from layerhoist.oci.blob import BlobReader, BlobStats
from layerhoist.oci.client import ClientSettings, RegistryClient
from layerhoist.oci.credentials import Credentials, find_credentials
from layerhoist.oci.errors import classifier
from layerhoist.oci.manifest import get_manifest, head_manifest
from layerhoist.oci.ratelimit import RateLimit
from layerhoist.oci.tag import list_tags
from layerhoist.refs import DOCKER_PREFIX, SourceRef
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.pacing import TokenBucket
from layerhoist.transfer.rechunk import Rechunker
from layerhoist.transfer.retry import Backoff, RetryBudget, RetryEvent, retry_call
from layerhoist.transfer.verdicts import to_user_error

R = TypeVar("R")

#: Docker Hub pulls left unused when a run stops for the pull limit: enough for the person
#: whose quota it is to still pull an image (one per platform) instead of meeting 429s.
PULL_LIMIT_RESERVE = 2
SECONDS_PER_HOUR = 3600
SECONDS_PER_MINUTE = 60


class PullLimitReached(SourceError):
    """The source registry's pull limit is (nearly) used up; no more manifests are pulled."""


@dataclass(frozen=True, kw_only=True)
class RegistrySourceOptions:
    """How a registry source is reached."""

    #: Explicit credentials (``--src-creds``); ``None``: look in the auth file, else anonymous.
    credentials: Credentials | None = None
    #: The auth file (``--authfile``); ``None``: ``REGISTRY_AUTH_FILE``, then Docker's.
    auth_file: Path | None = None
    #: Load every tag of the repository (``--all-tags``) instead of the reference's tag.
    all_tags: bool = False
    #: Load these tags instead of the reference's (``layerhoist sync``'s chosen ones); the
    #: pull limit stops them as it stops ``all_tags``.
    tags: tuple[str, ...] = ()
    #: The HTTP client's settings, TLS verification among them.
    client: ClientSettings = field(default_factory=ClientSettings)
    #: The run's settings: their ``part_attempts``, ``backoff_*``, ``retry_for`` and
    #: ``retry_budget`` govern the retries of every request to the registry.
    config: PushConfig = field(default_factory=PushConfig)
    #: Stop starting manifest pulls once the registry's ``ratelimit-remaining`` is at or
    #: below this (Docker Hub; default :data:`PULL_LIMIT_RESERVE`).
    pull_limit_reserve: int = PULL_LIMIT_RESERVE
    #: Paces every request to the registry (``requests_per_second`` of a sync file's
    #: ``registries:``; one bucket per host, shared by its sources); ``None``: unpaced.
    rate: TokenBucket | None = None

    def __post_init__(self) -> None:
        if self.pull_limit_reserve < 0:
            raise ValueError(f"pull_limit_reserve must be >= 0, got {self.pull_limit_reserve}")


class RegistrySource:
    """Images of one repository of a registry (:class:`~layerhoist.sources.Source`)."""

    def __init__(
        self,
        ref: SourceRef,
        options: RegistrySourceOptions | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if ref.transport != "docker" or ref.host is None or ref.repository is None:
            raise ValueError(f"{ref} is not a docker:// reference")
        self.ref = ref
        self.description = str(ref)
        self.options = options or RegistrySourceOptions()
        self.repository = ref.repository
        #: Resumes and restarts of blob streams.
        self.stats = BlobStats()
        #: Every in-place retry of a request, in order.
        self.retry_events: list[RetryEvent] = []
        self._where = f"{DOCKER_PREFIX}{ref.host}/{ref.repository}"
        self._classify = classifier("source")
        config = self.options.config
        self._backoff = Backoff.from_config(config)
        self._budget = RetryBudget(config.retry_budget)
        self._sleep = sleep
        self._rng = rng
        self._client: RegistryClient | None = None
        self._manifests: dict[str, Manifest] = {}
        #: Why loading stopped before every tag was loaded (the pull limit), or ``None``.
        self.stopped: str | None = None

    @property
    def rate_limit(self) -> RateLimit | None:
        """Docker Hub's pull limit as last announced (``None`` for other registries)."""
        return self._client.rate_limit if self._client is not None else None

    @property
    def client(self) -> RegistryClient:
        """The registry's client; :meth:`load` opens it."""
        if self._client is None:
            raise RuntimeError(f"{self.description}: load() has not been called")
        return self._client

    async def open(self) -> RegistryClient:
        """The registry's client, opened (credentials found, ``/v2/`` pinged) on first use."""
        ref = self.ref
        assert ref.host is not None  # checked in __init__
        if self._client is None:
            credentials = self.options.credentials or await find_credentials(
                ref.host, self.repository, auth_file=self.options.auth_file
            )
            client = RegistryClient(
                registry=ref.host,
                endpoint=ref.endpoint,
                credentials=credentials,
                settings=self.options.client,
                rate=self.options.rate,
            )
            try:
                await self._retry(client.ping, subject=self._where, retry_for=0.0)
            except BaseException:
                await client.aclose()
                raise
            self._client = client
        return self._client

    async def list_tags(self) -> list[str]:
        """Every tag of the repository, page by page."""
        client = await self.open()
        return await self._retry(
            lambda: list_tags(client, self.repository, where=f"{self._where} (tags)"),
            subject=self._where,
        )

    async def head(self, tag: str) -> Descriptor:
        """The descriptor of ``tag``'s manifest, from a HEAD (free of Docker Hub's pull limit)."""
        client = await self.open()
        label = f"{self._where}:{tag}"
        return await self._retry(
            lambda: head_manifest(client, self.repository, tag, where=label), subject=label
        )

    async def load(self) -> list[Image]:
        """The images the reference names (every tag with ``all_tags``, the chosen ones with
        ``tags``), manifests verified."""
        ref = self.ref
        await self.open()
        if self.options.all_tags or self.options.tags:
            return await self.load_tags(list(self.options.tags) or await self.list_tags())
        if ref.digest is not None:
            return [await self._image(ref.digest, None)]
        assert ref.tag is not None  # a docker reference has a tag or a digest
        return [await self._image(ref.tag, ref.tag)]

    async def load_tags(self, tags: Sequence[str]) -> list[Image]:
        """The images of ``tags``, in order, manifests verified.

        Once the pull limit stops further pulls, the images loaded before are returned and
        :attr:`stopped` says why the rest are not (nothing loaded yet: it is raised).
        """
        await self.open()
        images: list[Image] = []
        for tag in tags:
            try:
                images.append(await self._image(tag, tag))
            except PullLimitReached as exc:
                if not images:
                    raise
                # What was pulled is copied; the rest waits for the window to reset.
                self.stopped = f"{exc} ({len(tags) - len(images)} of {len(tags)} tags left)"
                break
        return images

    async def _image(self, reference: str, tag: str | None) -> Image:
        separator = "@" if tag is None else ":"
        label = f"{self._where}{separator}{reference}"
        top = await self._manifest(reference, label)
        children: list[Manifest] = []
        for child in top.manifests:
            child_label = f"{label} ({child.platform_name or short_digest(child.digest)})"
            if child.media_type not in MANIFEST_TYPES:
                raise ManifestError(
                    f"{child_label}: {short_digest(child.digest)} has media type "
                    f"{child.media_type!r}, not an image manifest or index"
                )
            manifest = await self._manifest(child.digest, child_label)
            if manifest.is_index:
                raise ManifestError(f"{child_label}: a nested index is not supported")
            if manifest.media_type != child.media_type:
                raise ManifestError(
                    f"{child_label}: the index says {child.media_type!r}, the registry "
                    f"sent {manifest.media_type!r}"
                )
            children.append(manifest)
        return Image(tag, top, tuple(children))

    async def _manifest(self, reference: str, label: str) -> Manifest:
        cached = self._manifests.get(reference)
        if cached is not None:
            return cached
        client = self.client
        self._check_pull_limit(label)
        manifest = await self._retry(
            lambda: get_manifest(client, self.repository, reference, where=label), subject=label
        )
        self._manifests[manifest.digest] = manifest
        return manifest

    def _check_pull_limit(self, label: str) -> None:
        """Raise :class:`PullLimitReached` before a manifest GET that the limit cannot spare."""
        limit = self.rate_limit
        reserve = self.options.pull_limit_reserve
        if limit is None or limit.remaining > reserve:
            return
        of = f" of {limit.limit}" if limit.limit is not None else ""
        window = (
            f"its window is {_hours_minutes(limit.window)} (w={limit.window}), so pulls come "
            f"back within that"
            if limit.window is not None
            else "the registry did not say when it resets"
        )
        raise PullLimitReached(
            f"{label}: stopped before pulling: the pull limit has {limit.remaining}{of} pulls "
            f"left (keeping {reserve}); {window}"
        )

    def blob_chunks(
        self, descriptor: Descriptor, *, offset: int = 0, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """Stream a blob from ``offset`` in pieces of exactly ``chunk_size`` (last shorter)."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        reader = BlobReader(
            self.client,
            self.repository,
            descriptor,
            offset=offset,
            where=self._where,
            stats=self.stats,
        )
        return self._pieces(reader, chunk_size, descriptor.digest)

    async def _pieces(
        self, reader: BlobReader, piece_size: int, digest: str
    ) -> AsyncIterator[bytes]:
        subject = f"{self._where}: blob {short_digest(digest)}"
        read_size = self.options.client.read_size
        rechunker = Rechunker(piece_size)
        try:
            while True:
                piece = await self._retry(
                    lambda: _next_piece(reader, rechunker, piece_size, read_size),
                    subject=subject,
                )
                if not piece:
                    return
                # Handed over without keeping it in this frame: a suspended generator would
                # hold the previous piece outside the consumer's memory budget.
                handed = [piece]
                del piece
                yield handed.pop()
        finally:
            await reader.aclose()

    async def _retry(
        self,
        fn: Callable[[], Awaitable[R]],
        *,
        subject: str,
        retry_for: float | None = None,
    ) -> R:
        """``fn()`` retried in place; a failure becomes one line naming ``subject``."""
        config = self.options.config
        try:
            return await retry_call(
                fn,
                subject=subject,
                attempts=config.part_attempts,
                backoff=self._backoff,
                budget=self._budget,
                classify=self._classify,
                sleep=self._sleep,
                rng=self._rng,
                on_retry=self.retry_events.append,
                retry_for=config.retry_for if retry_for is None else retry_for,
            )
        except LayerhoistError:
            raise
        except Exception as exc:
            raise to_user_error(self._classify(exc), subject=subject) from exc

    async def aclose(self) -> None:
        """Close the registry's HTTP session."""
        if self._client is not None:
            await self._client.aclose()


async def _next_piece(
    reader: BlobReader, rechunker: Rechunker, piece_size: int, read_size: int
) -> bytes:
    """The next whole piece, or what is left at the blob's end (``b""`` when nothing is).

    Reads stop at the piece's end, so the rechunker never holds more than one piece. Bytes
    read before a failure stay in ``rechunker`` and the reader's position is past them, so a
    retry of this call continues where the failed one stopped.
    """
    while (piece := rechunker.take()) is None:
        data = await reader.read(min(read_size, piece_size - rechunker.held))
        if not data:
            return rechunker.take_rest()
        rechunker.add(data)
    return piece


def _hours_minutes(seconds: int) -> str:
    hours, rest = divmod(seconds, SECONDS_PER_HOUR)
    minutes = rest // SECONDS_PER_MINUTE
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {rest % SECONDS_PER_MINUTE:02d}s"
