"""The source side of a sync mapping: its tags, each tag's manifest digest, its images.

A registry (``docker://``) is asked for its paginated tag list and a manifest HEAD per tag
(HEADs do not count against Docker Hub's pull limit); its images are pulled only for the tags
that are copied. A local source (``oci:``, ``docker-archive:``) is read once: its tags and
digests are its loaded images'.

:func:`run_source` opens the source a mapping's copy reads, limited to the tags chosen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from layerhoist.errors import SourceError
from layerhoist.image import Descriptor, Image
from layerhoist.sources import Source, open_source
from layerhoist.sync.model import SyncConfig, SyncMapping
from layerhoist.transfer.config import PushConfig

if TYPE_CHECKING:
    from layerhoist.sources.registry import RegistrySource, RegistrySourceOptions
    from layerhoist.transfer.pacing import TokenBucket

#: A host's request bucket holds this many seconds of its rate as burst.
RATE_BURST_SECONDS = 1.0


class SourceRates:
    """One request bucket per source host whose ``registries:`` entry sets
    ``requests_per_second``, shared by every client of that host (the plan's HEADs, the
    copies' pulls). Made once per phase: the plan ends before the run begins."""

    def __init__(self, sync: SyncConfig) -> None:
        self._sync = sync
        self._buckets: dict[str, TokenBucket] = {}

    def of(self, host: str | None) -> TokenBucket | None:
        """The bucket of ``host`` (``None``: unpaced)."""
        rate = self._sync.registry(host).requests_per_second
        if host is None or rate is None:
            return None
        bucket = self._buckets.get(host)
        if bucket is None:
            from layerhoist.transfer.pacing import TokenBucket

            bucket = self._buckets[host] = TokenBucket(
                rate=rate, burst=max(1.0, rate * RATE_BURST_SECONDS)
            )
        return bucket


def registry_options(
    sync: SyncConfig,
    mapping: SyncMapping,
    *,
    config: PushConfig,
    auth_file: Path | None,
    rates: SourceRates,
    tags: Sequence[str] = (),
) -> RegistrySourceOptions:
    """How ``mapping``'s registry source is reached: the ``registries:`` settings of its host
    (credentials, TLS, request rate), else the auth file; loading ``tags``."""
    from layerhoist.oci.client import ClientSettings
    from layerhoist.sources.registry import RegistrySourceOptions

    settings = sync.registry(mapping.source.host)
    return RegistrySourceOptions(
        credentials=settings.credentials,
        auth_file=auth_file,
        tags=tuple(tags),
        client=ClientSettings(tls_verify=settings.tls_verify),
        config=mapping_config(sync, mapping, config),
        rate=rates.of(mapping.source.host),
    )


def mapping_config(sync: SyncConfig, mapping: SyncMapping, config: PushConfig) -> PushConfig:
    """The run's settings for ``mapping``: its source host's ``concurrency`` when set."""
    concurrency = sync.registry(mapping.source.host).concurrency
    if concurrency is None or mapping.source.transport != "docker":
        return config
    return dataclasses.replace(config, blob_concurrency=concurrency)


class MappingSource:
    """One mapping's source, as the plan asks it; use as an async context manager."""

    def __init__(
        self,
        sync: SyncConfig,
        mapping: SyncMapping,
        *,
        config: PushConfig,
        auth_file: Path | None,
        rates: SourceRates,
    ) -> None:
        self.mapping = mapping
        self.description = mapping.origin
        self._registry: RegistrySource | None = None
        self._local: Source | None = None
        self._images: dict[str, Image] | None = None
        if mapping.source.transport == "docker":
            from layerhoist.sources.registry import RegistrySource

            self._registry = RegistrySource(
                mapping.source,
                registry_options(sync, mapping, config=config, auth_file=auth_file, rates=rates),
            )
        else:
            self._local = open_source(dataclasses.replace(mapping.source, tag=None))

    async def __aenter__(self) -> MappingSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the registry's session, or the local source."""
        if self._registry is not None:
            await self._registry.aclose()
        if self._local is not None:
            await self._local.aclose()

    async def _local_images(self) -> dict[str, Image]:
        assert self._local is not None
        if self._images is None:
            images = await self._local.load()
            self._images = {image.tag: image for image in images if image.tag is not None}
        return self._images

    async def list_tags(self) -> list[str]:
        """Every tag of the source (a registry's in its order, a local source's sorted)."""
        if self._registry is not None:
            return await self._registry.list_tags()
        return sorted(await self._local_images())

    async def head(self, tag: str) -> Descriptor:
        """The descriptor of ``tag``'s manifest (a registry: one HEAD)."""
        if self._registry is not None:
            return await self._registry.head(tag)
        image = (await self._local_images()).get(tag)
        if image is None:
            raise SourceError(f"{self.description}: no tag {tag!r}")
        manifest = image.manifest
        return Descriptor(manifest.media_type, manifest.digest, manifest.size)

    async def images(self, tags: Sequence[str]) -> dict[str, Image]:
        """The images of ``tags``, manifests read (a registry: pulled, which Docker Hub counts)."""
        if self._registry is not None:
            loaded = await self._registry.load_tags(tags)
            return {image.tag: image for image in loaded if image.tag is not None}
        local = await self._local_images()
        return {tag: local[tag] for tag in tags if tag in local}


def run_source(
    sync: SyncConfig,
    mapping: SyncMapping,
    tags: Sequence[str],
    *,
    config: PushConfig,
    auth_file: Path | None,
    rates: SourceRates,
) -> Source:
    """The source a mapping's copy reads: only ``tags`` are loaded."""
    if mapping.source.transport == "docker":
        options = registry_options(
            sync, mapping, config=config, auth_file=auth_file, rates=rates, tags=tags
        )
        return open_source(mapping.source, registry=options)
    return ChosenTags(open_source(dataclasses.replace(mapping.source, tag=None)), tags)


class ChosenTags:
    """A local source of which only some tags are loaded (:class:`~layerhoist.sources.Source`)."""

    def __init__(self, source: Source, tags: Sequence[str]) -> None:
        self._source = source
        self._tags = frozenset(tags)
        self.description = source.description

    async def load(self) -> list[Image]:
        """The source's images of the chosen tags."""
        return [image for image in await self._source.load() if image.tag in self._tags]

    def blob_chunks(
        self, descriptor: Descriptor, *, offset: int = 0, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """The source's blob stream."""
        return self._source.blob_chunks(descriptor, offset=offset, chunk_size=chunk_size)

    async def aclose(self) -> None:
        """Close the source."""
        await self._source.aclose()
