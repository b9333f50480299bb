"""The library entry point, ``await layerhoist.copy(source, destination)``, and the one place
a copy is composed: a loaded source, an open and prepared destination, a pipeline.

:func:`prepare_push` is that composition; :func:`copy` (and :func:`push`, its former name),
the CLI, the demo and the bench all go through it, so they copy the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypedDict, Unpack, runtime_checkable

import anyio

from layerhoist.destinations import (
    Destination,
    DestinationOptions,
    open_destination,
    part_limits,
)
from layerhoist.errors import CorruptBlobError, UsageError
from layerhoist.image import (
    Image,
    Platform,
    check_image_platform,
    select_platforms,
    sha256_digest,
    short_digest,
)
from layerhoist.refs import DestinationRef, SourceRef, parse_destination, parse_source
from layerhoist.sources import Source, open_source
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.journal import UploadJournal
from layerhoist.transfer.pipeline import Pipeline, ProgressSink
from layerhoist.transfer.report import PushResult

if TYPE_CHECKING:
    from layerhoist.oci.blob import BlobStats
    from layerhoist.oci.ratelimit import RateLimit
    from layerhoist.sources.registry import RegistrySourceOptions
    from layerhoist.transfer.pacing import Pacer


@runtime_checkable
class _RegistryDiagnostics(Protocol):
    """What a registry source tells the report (``RegistrySource``: resumes, pull limit).

    A protocol rather than the class, so that a copy from files never imports the registry
    client to ask.
    """

    stats: BlobStats
    stopped: str | None

    @property
    def rate_limit(self) -> RateLimit | None: ...


@dataclass(frozen=True)
class PreparedPush:
    """A push ready to run: the images loaded, the destination open and its repository there."""

    images: Sequence[Image]
    #: The tag each image gets (``None``: by digest only).
    targets: Sequence[str | None]
    destination: Destination
    pipeline: Pipeline
    #: Where the images come from: a registry source adds its resumes, its pull limit and
    #: whether it stopped pulling to the report.
    source: Source | None = None

    async def run(self) -> PushResult:
        """Push every image; failures are reported in the result."""
        result = await self.pipeline.run(self.images, targets=self.targets)
        for image, outcome in zip(self.images, result.images, strict=True):
            outcome.source_digest = image.source_digest
        if isinstance(self.source, _RegistryDiagnostics):
            result.source_resumes = self.source.stats.resumed
            result.source_restarts = self.source.stats.restarted
            limit = self.source.rate_limit
            result.pull_limit_remaining = limit.remaining if limit is not None else None
            result.stopped = self.source.stopped
        return result


@asynccontextmanager
async def prepare_push(
    source: Source,
    destination: DestinationRef,
    *,
    config: PushConfig,
    options: DestinationOptions,
    progress: ProgressSink | None = None,
    platforms: Sequence[Platform] = (),
    pacer: Pacer | None = None,
    journal: UploadJournal | None = None,
) -> AsyncIterator[PreparedPush]:
    """Load ``source``, open ``destination`` and make sure its repository exists.

    With ``platforms``, each index keeps only the children of those platforms (a new index,
    see :func:`~layerhoist.image.select_platforms`) and a single image must be of one of them.
    ``pacer`` paces an ECR destination's requests (default: its own, see
    :func:`~layerhoist.destinations.open_destination`). With ``journal``, large uploads are
    journaled and those a killed run left are resumed
    (:class:`~layerhoist.transfer.pipeline.Pipeline`).

    Raises a :class:`~layerhoist.errors.LayerhoistError` for what stops the run before any
    image is pushed (an unreadable source, a missing repository, rejected credentials). The
    caller keeps ``source`` and closes it.
    """
    part_limits(destination, options).check(config)
    images = await _choose_platforms(source, await source.load(), platforms)
    targets = _targets(images, destination)
    async with open_destination(destination, config=config, options=options, pacer=pacer) as dest:
        pipeline = Pipeline(
            source=source, destination=dest, config=config, progress=progress, journal=journal
        )
        subject = str(destination)
        try:
            # Attempts only: a destination that never answered is more likely misnamed than
            # restarting, and the user should hear so in seconds.
            await pipeline.retry(
                lambda: dest.prepare(create=options.create_repository),
                subject=subject,
                retry_for=0.0,
            )
        except Exception as exc:
            error = pipeline.user_error(exc, subject=subject)
            if error is exc:
                raise
            raise error from exc
        yield PreparedPush(
            images=images, targets=targets, destination=dest, pipeline=pipeline, source=source
        )


async def _choose_platforms(
    source: Source, images: Sequence[Image], platforms: Sequence[Platform]
) -> list[Image]:
    if not platforms:
        return list(images)
    chosen = []
    for image in images:
        if image.manifest.is_index:
            chosen.append(select_platforms(image, platforms))
            continue
        # A single image names its platform only in its config blob (small: read whole).
        config = image.manifest.config
        assert config is not None  # parse_manifest requires one for a single image
        data = b"".join(
            [piece async for piece in source.blob_chunks(config, chunk_size=max(config.size, 1))]
        )
        if sha256_digest(data) != config.digest:
            raise CorruptBlobError(
                f"{image.name}: config {short_digest(config.digest)} does not match its digest",
                digest=config.digest,
            )
        check_image_platform(image, data, platforms)
        chosen.append(image)
    return chosen


async def copy(
    source: str | SourceRef,
    destination: str | DestinationRef,
    *,
    config: PushConfig | None = None,
    options: DestinationOptions | None = None,
    progress: ProgressSink | None = None,
    source_options: RegistrySourceOptions | None = None,
    platforms: Sequence[Platform | str] = (),
    journal: UploadJournal | None = None,
) -> PushResult:
    """Copy every image of ``source`` into ``destination``.

    ``source`` is ``oci:DIR[:TAG]``, ``docker-archive:FILE[:TAG]`` or
    ``docker://[HOST/]REPO[:TAG|@DIGEST]``, reached as ``source_options`` say (credentials,
    auth file, TLS, every tag); their ``config`` is replaced by ``config``, so one retry policy
    rules the whole run. ``platforms`` (``OS/ARCH[/VARIANT]``) chooses the children of an
    index to copy (default: all of them); ``destination``
    is ``ecr-public:REPO[:TAG]``, ``ecr:REPO[:TAG]``, ``public.ecr.aws/ALIAS/REPO[:TAG]``,
    ``ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG]``, ``docker://HOST/REPO[:TAG]`` (any OCI
    registry) or ``oci:DIR[:TAG]`` (an OCI image layout, created if needed). Images that fail
    are reported in the result (``result.ok`` is False); errors that stop the whole run before
    any image could be copied (bad reference, unreadable source, missing repository, rejected
    credentials) raise a
    :class:`~layerhoist.errors.LayerhoistError`. ``journal`` (a state file's
    :class:`~layerhoist.state.journal.StateJournal`) lets a run killed halfway through a large
    blob be resumed by the next one with the same journal.
    """
    source_ref = parse_source(source) if isinstance(source, str) else source
    destination_ref = (
        parse_destination(destination) if isinstance(destination, str) else destination
    )
    run_config = config or PushConfig()
    chosen = [p if isinstance(p, Platform) else _platform(p) for p in platforms]
    registry = (
        dataclasses.replace(source_options, config=run_config)
        if source_options is not None
        else None
    )
    if registry is None and source_ref.transport == "docker":
        from layerhoist.sources.registry import RegistrySourceOptions

        registry = RegistrySourceOptions(config=run_config)
    opened = open_source(source_ref, registry=registry)
    try:
        async with prepare_push(
            opened,
            destination_ref,
            config=run_config,
            options=options or DestinationOptions(),
            progress=progress,
            platforms=chosen,
            journal=journal,
        ) as prepared:
            return await prepared.run()
    finally:
        await opened.aclose()


class CopyKeywords(TypedDict, total=False):
    """The keyword arguments of :func:`copy`, which its other forms pass on unchanged."""

    config: PushConfig | None
    options: DestinationOptions | None
    progress: ProgressSink | None
    source_options: RegistrySourceOptions | None
    platforms: Sequence[Platform | str]
    journal: UploadJournal | None


def copy_sync(
    source: str | SourceRef, destination: str | DestinationRef, **keywords: Unpack[CopyKeywords]
) -> PushResult:
    """Blocking form of :func:`copy`, for scripts; the same keyword arguments."""

    async def main() -> PushResult:
        return await copy(source, destination, **keywords)

    return anyio.run(main)


async def push(
    source: str | SourceRef, destination: str | DestinationRef, **keywords: Unpack[CopyKeywords]
) -> PushResult:
    """:func:`copy` under its former name, which existing callers use."""
    return await copy(source, destination, **keywords)


def push_sync(
    source: str | SourceRef, destination: str | DestinationRef, **keywords: Unpack[CopyKeywords]
) -> PushResult:
    """:func:`copy_sync` under its former name, which existing callers use."""
    return copy_sync(source, destination, **keywords)


def _targets(images: Sequence[Image], destination: DestinationRef) -> list[str | None]:
    if destination.tag is not None:
        if len(images) != 1:
            raise UsageError(
                f"{destination} names a tag but the source holds {len(images)} images; "
                "drop the destination tag to push each image under its own tag"
            )
        return [destination.tag]
    targets = [image.tag for image in images]
    # A layout names its images by tag only: an untagged image would land unreachable.
    if destination.transport == "oci" and None in targets:
        raise UsageError(
            f"the source holds an untagged image; name its tag in the destination "
            f"({destination}:TAG)"
        )
    return targets


def _platform(text: str) -> Platform:
    try:
        return Platform.parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
