"""The library entry point: ``await layerhoist.push(source, destination)``."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from layerhoist.classification import classify, to_user_error
from layerhoist.config import PushConfig
from layerhoist.destinations import DestinationOptions, EcrDestination
from layerhoist.errors import UsageError
from layerhoist.image import Image
from layerhoist.pipeline import Pipeline, ProgressSink
from layerhoist.reference import DestinationRef, SourceRef, parse_destination, parse_source
from layerhoist.report import PushResult
from layerhoist.sources import open_source


async def push(
    source: str | SourceRef,
    destination: str | DestinationRef,
    *,
    config: PushConfig | None = None,
    options: DestinationOptions | None = None,
    progress: ProgressSink | None = None,
) -> PushResult:
    """Push every image of ``source`` into the ``destination`` repository.

    ``source`` is ``oci:DIR[:TAG]`` or ``docker-archive:FILE[:TAG]``; ``destination``
    is ``ecr-public:REPO[:TAG]``, ``ecr:REPO[:TAG]``, ``public.ecr.aws/ALIAS/REPO[:TAG]``
    or ``ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG]``. Images that fail are
    reported in the result (``result.ok`` is False); errors that stop the whole run
    before any image could be pushed (bad reference, unreadable source, missing
    repository, rejected credentials) raise a :class:`~layerhoist.errors.LayerhoistError`.
    """
    config = config or PushConfig()
    options = options or DestinationOptions()
    source_ref = parse_source(source) if isinstance(source, str) else source
    destination_ref = (
        parse_destination(destination) if isinstance(destination, str) else destination
    )
    opened = open_source(source_ref)
    try:
        images = await opened.load()
        targets = _targets(images, destination_ref)
        async with EcrDestination(destination_ref, config=config, options=options) as dest:
            pipeline = Pipeline(source=opened, destination=dest, config=config, progress=progress)
            try:
                await pipeline.retry(
                    lambda: dest.ensure_repository(create=options.create_repository),
                    subject=str(destination_ref),
                )
            except Exception as exc:
                error = to_user_error(classify(exc), subject=str(destination_ref))
                if error is exc:
                    raise
                raise error from exc
            return await pipeline.run(images, targets=targets)
    finally:
        await opened.aclose()


def push_sync(
    source: str | SourceRef,
    destination: str | DestinationRef,
    *,
    config: PushConfig | None = None,
    options: DestinationOptions | None = None,
    progress: ProgressSink | None = None,
) -> PushResult:
    """Blocking form of :func:`push`, for scripts."""

    async def main() -> PushResult:
        return await push(source, destination, config=config, options=options, progress=progress)

    return anyio.run(main)


def _targets(images: Sequence[Image], destination: DestinationRef) -> list[str | None]:
    if destination.tag is not None:
        if len(images) != 1:
            raise UsageError(
                f"{destination} names a tag but the source holds {len(images)} images; "
                "drop the destination tag to push each image under its own tag"
            )
        return [destination.tag]
    return [image.tag for image in images]
