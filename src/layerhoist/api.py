"""The library entry point, ``await layerhoist.copy(source, destination)``, and the one place
a copy is composed: a loaded source, an open and prepared destination, a pipeline.

:func:`prepare_push` is that composition; :func:`copy` (and :func:`push`, its former name),
the CLI, the demo and the bench all go through it, so they copy the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from layerhoist.destinations import (
    Destination,
    DestinationOptions,
    open_destination,
    part_limits,
)
from layerhoist.errors import UsageError
from layerhoist.image import Image
from layerhoist.refs import DestinationRef, SourceRef, parse_destination, parse_source
from layerhoist.sources import Source, open_source
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.pipeline import Pipeline, ProgressSink
from layerhoist.transfer.report import PushResult


@dataclass(frozen=True)
class PreparedPush:
    """A push ready to run: the images loaded, the destination open and its repository there."""

    images: Sequence[Image]
    #: The tag each image gets (``None``: by digest only).
    targets: Sequence[str | None]
    destination: Destination
    pipeline: Pipeline

    async def run(self) -> PushResult:
        """Push every image; failures are reported in the result."""
        return await self.pipeline.run(self.images, targets=self.targets)


@asynccontextmanager
async def prepare_push(
    source: Source,
    destination: DestinationRef,
    *,
    config: PushConfig,
    options: DestinationOptions,
    progress: ProgressSink | None = None,
) -> AsyncIterator[PreparedPush]:
    """Load ``source``, open ``destination`` and make sure its repository exists.

    Raises a :class:`~layerhoist.errors.LayerhoistError` for what stops the run before any
    image is pushed (an unreadable source, a missing repository, rejected credentials). The
    caller keeps ``source`` and closes it.
    """
    part_limits(destination).check(config)
    images = await source.load()
    targets = _targets(images, destination)
    async with open_destination(destination, config=config, options=options) as dest:
        pipeline = Pipeline(source=source, destination=dest, config=config, progress=progress)
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
        yield PreparedPush(images=images, targets=targets, destination=dest, pipeline=pipeline)


async def copy(
    source: str | SourceRef,
    destination: str | DestinationRef,
    *,
    config: PushConfig | None = None,
    options: DestinationOptions | None = None,
    progress: ProgressSink | None = None,
) -> PushResult:
    """Copy every image of ``source`` into ``destination``.

    ``source`` is ``oci:DIR[:TAG]`` or ``docker-archive:FILE[:TAG]``; ``destination``
    is ``ecr-public:REPO[:TAG]``, ``ecr:REPO[:TAG]``, ``public.ecr.aws/ALIAS/REPO[:TAG]``,
    ``ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG]`` or ``oci:DIR[:TAG]`` (an OCI image
    layout, created if needed). Images that fail are reported in the result (``result.ok``
    is False); errors that stop the whole run before any image could be copied (bad
    reference, unreadable source, missing repository, rejected credentials) raise a
    :class:`~layerhoist.errors.LayerhoistError`.
    """
    source_ref = parse_source(source) if isinstance(source, str) else source
    destination_ref = (
        parse_destination(destination) if isinstance(destination, str) else destination
    )
    opened = open_source(source_ref)
    try:
        async with prepare_push(
            opened,
            destination_ref,
            config=config or PushConfig(),
            options=options or DestinationOptions(),
            progress=progress,
        ) as prepared:
            return await prepared.run()
    finally:
        await opened.aclose()


def copy_sync(
    source: str | SourceRef,
    destination: str | DestinationRef,
    *,
    config: PushConfig | None = None,
    options: DestinationOptions | None = None,
    progress: ProgressSink | None = None,
) -> PushResult:
    """Blocking form of :func:`copy`, for scripts."""

    async def main() -> PushResult:
        return await copy(source, destination, config=config, options=options, progress=progress)

    return anyio.run(main)


async def push(
    source: str | SourceRef,
    destination: str | DestinationRef,
    *,
    config: PushConfig | None = None,
    options: DestinationOptions | None = None,
    progress: ProgressSink | None = None,
) -> PushResult:
    """:func:`copy` under its former name, which existing callers use."""
    return await copy(source, destination, config=config, options=options, progress=progress)


def push_sync(
    source: str | SourceRef,
    destination: str | DestinationRef,
    *,
    config: PushConfig | None = None,
    options: DestinationOptions | None = None,
    progress: ProgressSink | None = None,
) -> PushResult:
    """:func:`copy_sync` under its former name, which existing callers use."""
    return copy_sync(source, destination, config=config, options=options, progress=progress)


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
