"""The plan of a sync: per (mapping, tag), copy, up to date, skipped and why, or failed.

For each mapping, in this order: its source's tags (a registry's paginated list), filtered by
its ``tags:`` rules; the work items this shard takes; each tag's source digest (a manifest
HEAD for a registry); then what the destination holds, asked only about tags the state file
does not confirm (:mod:`layerhoist.state.tags`), unless ``verify``
(:mod:`layerhoist.sync.holdings`).

The digest a copy would give the destination tag is the source's, except with ``platforms:``
over an index: the copy writes a new index (:func:`~layerhoist.image.select_platforms`). That
digest is known from the state file when it confirmed the same source digest and platforms;
otherwise the index is pulled and cut as a copy would cut it, so that a destination already
holding it is found up to date without a state file.

Bytes: in a dry run, a planned copy counts the sizes of the image's distinct blobs (config
and layers of the chosen platforms), what a copy reads from the source; blobs the destination
already holds are not subtracted. For a registry that means pulling the manifests of the tags
to copy, which Docker Hub counts against its pull limit. A real run does not count ahead: its
records say what each copy moved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from layerhoist.destinations.base import DestinationOptions
from layerhoist.errors import LayerhoistError
from layerhoist.image import INDEX_TYPES, Descriptor, Image, select_platforms
from layerhoist.refs import DestinationRef, SourceRef
from layerhoist.state.tags import Confirmation, ConfirmedTags, platforms_key
from layerhoist.sync.catalog import MappingSource, SourceRates
from layerhoist.sync.filters import select_tags
from layerhoist.sync.holdings import Holdings, destination_holdings
from layerhoist.sync.model import SyncConfig, SyncMapping
from layerhoist.sync.records import TagRecord
from layerhoist.sync.settings import SyncSettings, destination_options, state_key
from layerhoist.sync.shard import Shard
from layerhoist.transfer.verdicts import Classifier, to_user_error
from layerhoist.units import format_bytes

#: ``reason`` of a tag the state file confirms (no destination request made).
CONFIRMED_BY_STATE = "confirmed by the state file"
#: ``reason`` of a tag the destination was found to hold.
HELD_BY_DESTINATION = "the destination holds it"
#: ``reason`` of a tag whose destination differs in a repository whose tags cannot move.
IMMUTABLE_DIFFERS = "immutable tag differs"
#: The ``tag`` of a record about a whole mapping (its tags could not be listed).
WHOLE_MAPPING = "*"


@dataclass(frozen=True)
class Confirmations:
    """Where the plan looks up confirmed tags: a state file's table, or none."""

    table: ConfirmedTags | None

    def lookup(self, key: str, tag: str) -> Confirmation | None:
        """The confirmation of ``tag`` of the destination named ``key``, if any."""
        return self.table.confirmed(key, tag) if self.table is not None else None


async def make_plan(
    sync: SyncConfig,
    settings: SyncSettings,
    *,
    confirmed: ConfirmedTags | None = None,
    shard: Shard | None = None,
    dry_run: bool = False,
) -> list[TagRecord]:
    """One record per (mapping, tag) this shard takes, in the file's order then the tags'."""
    results: list[list[TagRecord]] = [[] for _ in sync.mappings]
    limiter = anyio.CapacityLimiter(settings.mappings_at_once)
    lookups = Confirmations(confirmed)
    rates = SourceRates(sync)

    async def plan_one(position: int, mapping: SyncMapping) -> None:
        async with limiter:
            try:
                results[position] = await plan_mapping(
                    sync,
                    mapping,
                    settings,
                    confirmed=lookups,
                    shard=shard,
                    dry_run=dry_run,
                    rates=rates,
                )
            except Exception as exc:
                # What no tag of it could survive fails the mapping, not the other mappings.
                whole = _whole_mapping(mapping, one_line(exc, subject=mapping.origin))
                results[position] = [whole] if shard is None or shard.takes(whole.key) else []

    async with anyio.create_task_group() as tg:
        for position, mapping in enumerate(sync.mappings):
            tg.start_soon(plan_one, position, mapping)
    return [record for records in results for record in records]


def tag_source(source: SourceRef, tag: str) -> SourceRef:
    """``source`` naming ``tag`` (a registry reference's digest dropped)."""
    return dataclasses.replace(source, tag=tag, digest=None)


def tag_destination(destination: DestinationRef, tag: str) -> DestinationRef:
    """``destination`` with ``tag``."""
    return dataclasses.replace(destination, tag=tag)


async def plan_mapping(
    sync: SyncConfig,
    mapping: SyncMapping,
    settings: SyncSettings,
    *,
    confirmed: Confirmations,
    shard: Shard | None,
    dry_run: bool,
    rates: SourceRates,
) -> list[TagRecord]:
    """The records of one mapping (see :func:`make_plan`); ``rates`` paces its source."""
    async with MappingSource(
        sync, mapping, config=settings.config, auth_file=settings.auth_file, rates=rates
    ) as source:
        try:
            tags = await source.list_tags()
        except LayerhoistError as exc:
            whole = _whole_mapping(mapping, exc)
            return [whole] if shard is None or shard.takes(whole.key) else []
        tags = select_tags(mapping.tags, tags)
        records = [_record(mapping, tag) for tag in tags]
        records = [r for r in records if shard is None or shard.takes(r.key)]
        heads = await _heads(source, [r.tag for r in records], settings.heads_at_once)
        return await _decide(sync, mapping, settings, source, records, heads, confirmed, dry_run)


def _whole_mapping(mapping: SyncMapping, error: LayerhoistError) -> TagRecord:
    """The one record of a mapping none of whose tags could be planned."""
    whole = _record(mapping, WHOLE_MAPPING)
    whole.destination = str(mapping.destination)
    _fail(whole, str(error))
    return whole


def _record(mapping: SyncMapping, tag: str) -> TagRecord:
    return TagRecord(
        mapping=mapping.index,
        origin=mapping.origin,
        tag=tag,
        source=str(tag_source(mapping.source, tag)),
        destination=str(tag_destination(mapping.destination, tag)),
        action="copy",
    )


async def _heads(
    source: MappingSource, tags: Sequence[str], at_once: int
) -> dict[str, Descriptor | LayerhoistError]:
    found: dict[str, Descriptor | LayerhoistError] = {}
    limiter = anyio.CapacityLimiter(at_once)

    async def head(tag: str) -> None:
        async with limiter:
            try:
                found[tag] = await source.head(tag)
            except LayerhoistError as exc:
                found[tag] = exc

    async with anyio.create_task_group() as tg:
        for tag in tags:
            tg.start_soon(head, tag)
    return found


def _fail(record: TagRecord, error: str) -> None:
    record.action = "failed"
    record.reason = record.error = error


async def _decide(
    sync: SyncConfig,
    mapping: SyncMapping,
    settings: SyncSettings,
    source: MappingSource,
    records: list[TagRecord],
    heads: dict[str, Descriptor | LayerhoistError],
    confirmed: Confirmations,
    dry_run: bool,
) -> list[TagRecord]:
    options = destination_options(sync, mapping, settings)
    key = state_key(mapping.destination, options)
    platforms = platforms_key(mapping.platforms)
    # The digest a copy gives the destination tag, where known without pulling.
    expected: dict[str, str | None] = {}
    ask: list[TagRecord] = []
    for record in records:
        head = heads[record.tag]
        if isinstance(head, LayerhoistError):
            _fail(record, str(head))
            continue
        record.source_digest = head.digest
        cut = bool(mapping.platforms) and head.media_type in INDEX_TYPES
        known = confirmed.lookup(key, record.tag)
        matches = (
            known is not None
            and known.source_digest == head.digest
            and known.platforms == platforms
        )
        expected[record.tag] = (known.digest if known and matches else None) if cut else head.digest
        if matches and known is not None and not settings.verify:
            record.action = "up-to-date"
            record.reason = CONFIRMED_BY_STATE
            record.destination_digest = known.digest
            continue
        ask.append(record)
    holdings = await _holdings(mapping, settings, options, ask)
    if isinstance(holdings, LayerhoistError):
        for record in ask:
            _fail(record, str(holdings))
        return records
    for record in ask:
        record.destination_digest = holdings.tags.get(record.tag)

    def needs_image(record: TagRecord) -> bool:
        digest, held = expected[record.tag], record.destination_digest
        if digest is None and held is not None:
            return True  # an index cut to platforms: is what the destination holds that cut?
        # A dry run counts the bytes of each copy it plans.
        return dry_run and held != digest and not (held is not None and holdings.immutable)

    images = await _images(
        source, [r.tag for r in ask if r.tag not in holdings.errors and needs_image(r)]
    )
    for record in ask:
        if record.tag in holdings.errors:
            _fail(record, holdings.errors[record.tag])
            continue
        image = images.get(record.tag)
        if image is not None:
            try:
                chosen = _chosen(mapping, image)
            except LayerhoistError as exc:
                _fail(record, str(exc))
                continue
            expected[record.tag] = chosen.manifest.digest
            record.bytes = sum(blob.size for blob in chosen.blobs())
        held = record.destination_digest
        if held is not None and held == expected[record.tag]:
            record.action = "up-to-date"
            record.reason = HELD_BY_DESTINATION
        elif held is not None and holdings.immutable:
            record.action = "skipped"
            record.reason = IMMUTABLE_DIFFERS
    return records


def _chosen(mapping: SyncMapping, image: Image) -> Image:
    """``image`` as a copy writes it: an index cut to the mapping's platforms."""
    if mapping.platforms and image.manifest.is_index:
        return select_platforms(image, mapping.platforms)
    return image


async def _holdings(
    mapping: SyncMapping,
    settings: SyncSettings,
    options: DestinationOptions,
    ask: list[TagRecord],
) -> Holdings | LayerhoistError:
    try:
        return await destination_holdings(
            mapping.destination,
            [record.tag for record in ask],
            config=settings.config,
            options=options,
        )
    except Exception as exc:
        return one_line(exc, subject=str(mapping.destination))


async def _images(source: MappingSource, tags: Sequence[str]) -> dict[str, Image]:
    """The images of ``tags``; none when they cannot be read (those tags are then copied,
    and the copy says what is wrong)."""
    if not tags:
        return {}
    try:
        return await source.images(tags)
    except LayerhoistError:
        return {}


def one_line(exc: Exception, *, subject: str) -> LayerhoistError:
    """``exc`` as the one-line error a record carries (an unexpected one names ``subject``)."""
    if isinstance(exc, LayerhoistError):
        return exc
    return to_user_error(Classifier()(exc), subject=subject)


def plan_line(record: TagRecord) -> str:
    """One line of the printed plan: action, source -> destination, bytes or why."""
    if record.action in ("copy", "copied"):
        detail = format_bytes(record.bytes) if record.bytes else "size not known before pulling"
    else:
        detail = record.reason or ""
    return f"{record.action:<10} {record.source} -> {record.destination}  ({detail})"
