"""Running a sync: the plan's copies, grouped per mapping, and the state file kept up to date.

Each mapping with tags to copy opens one source and one destination and copies all of those
tags in one pipeline run (:func:`layerhoist.api.prepare_push`), so a blob shared between its
tags goes once. Up to :attr:`~layerhoist.sync.settings.SyncSettings.mappings_at_once` mappings
run at once. Every ECR destination of one service, region and endpoint paces its requests with
one shared :class:`~layerhoist.transfer.pacing.Pacer`, so that the run as a whole stays within
the service's request quotas however many repositories it writes.

A failing tag does not stop the others: its record is ``failed`` with one line (the pipeline
never tags an image whose blobs did not all land). A mapping that cannot start (its source or
destination refuses) fails its tags. When a registry's pull limit stops pulls, no further
mapping from that host starts, and its tags say why. Each tag that lands, or that the
destination was found to hold, is confirmed in the state file at once, so a killed run loses
nothing it did; large uploads are journaled in the same file
(:class:`~layerhoist.state.journal.StateJournal`), so the next run resumes those it left.

:func:`sync` is the whole command: the state file's lock, the plan, the run. A dry run takes
no lock and writes nothing: it reads the state file as it is (see
:func:`~layerhoist.state.tags.read_confirmed`), so it can show the plan while a run is going on.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import anyio

from layerhoist.api import prepare_push
from layerhoist.destinations.base import DestinationOptions
from layerhoist.errors import LayerhoistError
from layerhoist.refs import DestinationRef
from layerhoist.state import StateFile
from layerhoist.state.journal import StateJournal
from layerhoist.state.tags import ConfirmedTags, platforms_key, read_confirmed
from layerhoist.sync.catalog import SourceRates, mapping_config, run_source
from layerhoist.sync.model import SyncConfig, SyncMapping
from layerhoist.sync.plan import HELD_BY_DESTINATION, make_plan, one_line
from layerhoist.sync.records import TagRecord
from layerhoist.sync.settings import SyncSettings, destination_options, state_key
from layerhoist.sync.shard import Shard
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.journal import UploadJournal
from layerhoist.transfer.pacing import Pacer
from layerhoist.transfer.report import ImageOutcome, PushResult
from layerhoist.transfer.retry import RetryEvent

#: Why a copy planned for a tag did not happen although its mapping ran.
NOT_LOADED = "not copied: the source did not load this tag"


async def sync(
    config: SyncConfig,
    settings: SyncSettings,
    *,
    state: Path | None = None,
    shard: Shard | None = None,
    dry_run: bool = False,
) -> list[TagRecord]:
    """Plan and (unless ``dry_run``) run the sync ``config`` describes; one record per tag.

    ``state`` is the state file (default :func:`~layerhoist.state.default_state_path`). A run
    holds its lock throughout: :class:`~layerhoist.errors.StateLockedError` (exit 3) when
    another run holds it.
    """
    if dry_run:
        path = state if state is not None else StateFile().path
        with read_confirmed(path) as confirmed:
            return await make_plan(config, settings, confirmed=confirmed, shard=shard, dry_run=True)
    with StateFile(state) as opened:
        confirmed_tags = ConfirmedTags.of(opened)
        records = await make_plan(config, settings, confirmed=confirmed_tags, shard=shard)
        await run_plan(
            config, records, settings, confirmed=confirmed_tags, journal=StateJournal(opened.db)
        )
        return records


class Pacers:
    """One pacer per ECR service, region and endpoint, shared by all of a run's destinations."""

    def __init__(self, config: PushConfig) -> None:
        self._config = config
        self._pacers: dict[tuple[str, str | None, str | None], Pacer] = {}

    def for_destination(self, ref: DestinationRef, options: DestinationOptions) -> Pacer | None:
        """The pacer of ``ref``'s service (``None``: not ECR, or not paced by ``--pacing``)."""
        if ref.transport not in ("ecr", "ecr-public"):
            return None
        # Imported here: only ECR destinations load the AWS SDK.
        from layerhoist.destinations.ecr.destination import paces
        from layerhoist.destinations.ecr.limits import PUBLISHED_QUOTAS, api_region

        if not paces(self._config, options):
            return None
        key = (ref.service, api_region(ref, options.region), options.endpoint_url)
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = self._pacers[key] = Pacer(quotas=PUBLISHED_QUOTAS[ref.service])
        return pacer


async def run_plan(
    config: SyncConfig,
    records: Sequence[TagRecord],
    settings: SyncSettings,
    *,
    confirmed: ConfirmedTags,
    journal: UploadJournal | None = None,
) -> None:
    """Copy the records planned ``copy`` (each becomes ``copied`` or ``failed``) and confirm
    in ``confirmed`` what landed and what the destination was found to hold. With
    ``journal``, large uploads are journaled, and those a killed run left are resumed."""
    mappings = {mapping.index: mapping for mapping in config.mappings}
    for record in records:
        if record.action == "up-to-date" and record.reason == HELD_BY_DESTINATION:
            mapping = mappings[record.mapping]
            assert record.destination_digest is not None  # found there by the plan
            confirmed.confirm(
                _state_key(config, mapping, settings),
                record.tag,
                record.destination_digest,
                source_digest=record.source_digest,
                platforms=_platforms(mapping),
            )
    copies: defaultdict[int, list[TagRecord]] = defaultdict(list)
    for record in records:
        if record.action == "copy":
            copies[record.mapping].append(record)
    run = _Run(config, settings, confirmed, journal)
    limiter = anyio.CapacityLimiter(settings.mappings_at_once)

    async def copy_one(mapping: SyncMapping, tags: list[TagRecord]) -> None:
        async with limiter:
            try:
                await run.copy_mapping(mapping, tags)
            except Exception as exc:
                # Fails this mapping's tags, never the other mappings.
                error = one_line(exc, subject=str(mapping.destination))
                for record in tags:
                    if record.action == "copy":
                        _fail(record, str(error))

    async with anyio.create_task_group() as tg:
        for index, tags in copies.items():
            tg.start_soon(copy_one, mappings[index], tags)


def _state_key(config: SyncConfig, mapping: SyncMapping, settings: SyncSettings) -> str:
    return state_key(mapping.destination, destination_options(config, mapping, settings))


def _platforms(mapping: SyncMapping) -> str:
    return platforms_key(mapping.platforms)


def _fail(record: TagRecord, error: str) -> None:
    record.action = "failed"
    record.reason = record.error = error


class _Run:
    """What the mappings of one run share: the pacers, the hosts that stopped pulls, the state
    file's confirmed tags and upload journal."""

    def __init__(
        self,
        config: SyncConfig,
        settings: SyncSettings,
        confirmed: ConfirmedTags,
        journal: UploadJournal | None,
    ) -> None:
        self._journal = journal
        self._config = config
        self._settings = settings
        self._confirmed = confirmed
        self._pacers = Pacers(settings.config)
        self._rates = SourceRates(config)
        #: Source host -> why it stopped serving pulls (its pull limit).
        self._stopped: dict[str, str] = {}

    async def copy_mapping(self, mapping: SyncMapping, records: list[TagRecord]) -> None:
        """Copy ``records``' tags of ``mapping`` in one pipeline run."""
        host = mapping.source.host
        if host is not None and host in self._stopped:
            for record in records:
                _fail(record, f"not started: {self._stopped[host]}")
            return
        settings = self._settings
        options = destination_options(self._config, mapping, settings)
        config = mapping_config(self._config, mapping, settings.config)
        source = run_source(
            self._config,
            mapping,
            [record.tag for record in records],
            config=config,
            auth_file=settings.auth_file,
            rates=self._rates,
        )
        try:
            async with prepare_push(
                source,
                mapping.destination,
                config=config,
                options=options,
                progress=_Confirmer(
                    self._confirmed,
                    key=state_key(mapping.destination, options),
                    platforms=_platforms(mapping),
                    records=records,
                ),
                platforms=mapping.platforms,
                pacer=self._pacers.for_destination(mapping.destination, options),
                journal=self._journal,
            ) as prepared:
                result = await prepared.run()
                targets = list(prepared.targets)
        except Exception as exc:
            error = one_line(exc, subject=str(mapping.destination))
            self._note_pull_limit(host, error)
            for record in records:
                _fail(record, str(error))
            return
        finally:
            await source.aclose()
        if host is not None and result.stopped is not None:
            self._stopped[host] = result.stopped
        _record(records, targets, result)

    def _note_pull_limit(self, host: str | None, exc: LayerhoistError) -> None:
        if host is None:
            return
        from layerhoist.sources.registry import PullLimitReached

        if isinstance(exc, PullLimitReached):
            self._stopped[host] = str(exc)


def _record(records: list[TagRecord], targets: Sequence[str | None], result: PushResult) -> None:
    """Complete ``records`` from the pipeline's ``result`` (image *i* went to ``targets[i]``)."""
    by_tag = {record.tag: record for record in records}
    blobs = {blob.digest: blob for blob in result.blobs}
    done: set[str] = set()
    for target, outcome in zip(targets, result.images, strict=True):
        record = by_tag.get(target) if target is not None else None
        if record is None:
            continue
        done.add(record.tag)
        record.seconds = result.seconds
        mine = {*outcome.blobs, outcome.destination}
        record.retries = dict(
            Counter(event.cause for event in result.retries if event.subject in mine)
        )
        if outcome.status != "pushed":
            _fail(record, outcome.error or f"{outcome.destination}: not copied")
            continue
        record.action = "copied"
        record.bytes = sum(blobs[digest].bytes_sent for digest in outcome.blobs)
    for record in records:
        if record.tag not in done:
            _fail(record, result.stopped or NOT_LOADED)


class _Confirmer:
    """Confirms each tag in the state file the moment the pipeline has tagged it, so that a
    run killed halfway keeps what it did (:class:`~layerhoist.transfer.pipeline.ProgressSink`)."""

    def __init__(
        self,
        confirmed: ConfirmedTags,
        *,
        key: str,
        platforms: str,
        records: Sequence[TagRecord],
    ) -> None:
        self._confirmed = confirmed
        self._key = key
        self._platforms = platforms
        self._records = {record.destination: record for record in records}

    def image_finished(self, outcome: ImageOutcome) -> None:
        """Confirm a tagged image's tag."""
        record = self._records.get(outcome.destination)
        if outcome.status != "pushed" or record is None:
            return
        # Without platforms the copied manifest is the source's; with them it may be a new
        # index cut from the source's, whose digest the plan's HEAD gave.
        self._confirmed.confirm(
            self._key,
            record.tag,
            outcome.digest,
            source_digest=record.source_digest if self._platforms else None,
            platforms=self._platforms,
        )

    def blob_started(self, digest: str, size: int) -> None:
        """Not needed here."""

    def bytes_sent(self, digest: str, nbytes: int) -> None:
        """Not needed here."""

    def blob_finished(self, digest: str, *, ok: bool) -> None:
        """Not needed here."""

    def retried(self, event: RetryEvent) -> None:
        """Not needed here."""
