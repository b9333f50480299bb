"""What a sync did, for people and for machines: the summary line, the JSON report, the metrics.

Everything is read from the run's :class:`~layerhoist.sync.records.TagRecord` list. Each tag
has one *result*: the record's action, with a planned copy that was never carried out counted
as ``pending`` (in a dry run, every copy the plan would make)::

    copied  up_to_date  skipped  failed  pending

The metrics file is for node_exporter's textfile collector: gauges built with
prometheus_client and written by its ``write_to_textfile``, which writes a temporary file
beside the target and renames it over the target, so the collector never reads a partial
file. The collector only reads files named ``*.prom``. The timestamp of the last successful
run outlives failed runs: a failed run copies it from the file it replaces.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, Final

from layerhoist.errors import LayerhoistError, UsageError
from layerhoist.exits import EXIT_FAILED, EXIT_OK
from layerhoist.sync.records import Action, TagRecord
from layerhoist.units import format_bytes

#: The result each action counts as, in the order the summary and the metrics list them.
RESULTS: Final[Mapping[Action, str]] = {
    "copied": "copied",
    "up-to-date": "up_to_date",
    "skipped": "skipped",
    "failed": "failed",
    "copy": "pending",
}
#: What the summary line shows of each result, in its order; a real run adds the copies it left
#: undone (``not run``) only when there are any.
_RUN_PHRASES: Final = (
    ("copied", "copied"),
    ("up_to_date", "up to date"),
    ("skipped", "skipped"),
    ("failed", "failed"),
)
_DRY_RUN_PHRASES: Final = (("pending", "would copy"), *_RUN_PHRASES[1:])
_NOT_RUN_PHRASE: Final = "not run"

#: Prefix of every metric this module writes.
METRIC_PREFIX: Final = "layerhoist_sync"
TAGS_METRIC: Final = f"{METRIC_PREFIX}_tags"
COPIED_BYTES_METRIC: Final = f"{METRIC_PREFIX}_copied_bytes"
DURATION_METRIC: Final = f"{METRIC_PREFIX}_duration_seconds"
LAST_RUN_METRIC: Final = f"{METRIC_PREFIX}_last_run_timestamp_seconds"
LAST_SUCCESS_METRIC: Final = f"{METRIC_PREFIX}_last_success_timestamp_seconds"
#: Label of the tag counts.
RESULT_LABEL: Final = "result"
#: Label every metric carries when the run was one shard (``I/N``): shards that share a node's
#: textfile directory then write series that differ, as the collector requires.
SHARD_LABEL: Final = "shard"


@dataclass
class SyncReport:
    """A whole sync run (or its plan, ``dry_run``): its records, how long it took, its outcome.

    ``shard`` is ``I/N`` when the run took one shard of the work; ``started`` is when it began,
    in seconds since the epoch (``None``: the run ends when the report is written).
    """

    records: list[TagRecord]
    _: KW_ONLY
    seconds: float
    dry_run: bool
    shard: str | None = None
    started: float | None = None

    def counts(self) -> dict[str, int]:
        """Tags per result, every result present (zero when none), in :data:`RESULTS` order."""
        found = Counter(RESULTS[record.action] for record in self.records)
        return {result: found[result] for result in RESULTS.values()}

    @property
    def ok(self) -> bool:
        """No tag failed, and a real run left no planned copy undone."""
        counts = self.counts()
        return counts["failed"] == 0 and (self.dry_run or counts["pending"] == 0)

    @property
    def exit_code(self) -> int:
        """``EXIT_OK`` when :attr:`ok`, else ``EXIT_FAILED``."""
        return EXIT_OK if self.ok else EXIT_FAILED

    @property
    def total_bytes(self) -> int:
        """Bytes copied (a dry run: the bytes its copies would move, where known)."""
        counted = "copy" if self.dry_run else "copied"
        return sum(record.bytes for record in self.records if record.action == counted)

    def retry_causes(self) -> dict[str, int]:
        """Retries of the whole run by cause."""
        total: Counter[str] = Counter()
        for record in self.records:
            total.update(record.retries)
        return dict(sorted(total.items()))

    def summary(self) -> str:
        """One line: ``sync: 12 tags: 3 copied, 8 up to date, 1 skipped, 0 failed; 45.2 MiB in
        3.1 s`` (a dry run: ``would copy``, and the bytes those copies would move)."""
        counts = self.counts()
        phrases = _DRY_RUN_PHRASES if self.dry_run else _RUN_PHRASES
        parts = [f"{counts[result]} {phrase}" for result, phrase in phrases]
        if not self.dry_run and counts["pending"]:
            parts.append(f"{counts['pending']} {_NOT_RUN_PHRASE}")
        head = "sync (dry run)" if self.dry_run else "sync"
        if self.shard is not None:
            head += f" shard {self.shard}"
        moved = (
            f"{format_bytes(self.total_bytes)} to copy, planned in {self.seconds:.1f} s"
            if self.dry_run
            else f"{format_bytes(self.total_bytes)} in {self.seconds:.1f} s"
        )
        return f"{head}: {len(self.records)} tags: {', '.join(parts)}; {moved}"

    def to_json(self) -> dict[str, Any]:
        """The report ``--json`` writes: the run, its totals, and one record per tag."""
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "shard": self.shard,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "totals": {
                "tags": len(self.records),
                **self.counts(),
                "bytes": self.total_bytes,
                "retries": self.retry_causes(),
            },
            "tags": [dataclasses.asdict(record) for record in self.records],
        }

    def write_json(self, path: Path) -> None:
        """Write :meth:`to_json` to ``path``; one-line error when it cannot be written."""
        text = json.dumps(self.to_json(), indent=2) + "\n"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise LayerhoistError(f"cannot write the report {path}: {exc.strerror}") from exc

    def write_metrics(self, path: Path) -> None:
        """Write the run's metrics to ``path`` for node_exporter's textfile collector.

        Gauges: tags per result, bytes copied, the run's duration, when it ended, and when
        the last successful run ended (this run's end when it is :attr:`ok`; otherwise the
        value in the file being replaced, and no sample when that file has none). A dry run
        changes nothing that monitoring watches and writes no metrics.
        """
        if self.dry_run:
            raise UsageError("a dry run writes no metrics file: drop --metrics-file or --dry-run")
        # Imported here: only runs that write metrics pay for it.
        from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

        ended = (self.started + self.seconds) if self.started is not None else time.time()
        last_success = ended if self.ok else _previous_last_success(path, self.shard)
        shard = {SHARD_LABEL: self.shard} if self.shard is not None else {}
        registry = CollectorRegistry()

        def gauge(name: str, documentation: str, value: float) -> None:
            metric = Gauge(name, documentation, list(shard), registry=registry)
            (metric.labels(**shard) if shard else metric).set(value)

        tags = Gauge(
            TAGS_METRIC,
            "Tags of the last sync run by result.",
            [RESULT_LABEL, *shard],
            registry=registry,
        )
        for result, count in self.counts().items():
            tags.labels(**{RESULT_LABEL: result}, **shard).set(count)
        gauge(COPIED_BYTES_METRIC, "Bytes the last sync run copied.", self.total_bytes)
        gauge(DURATION_METRIC, "How long the last sync run took.", self.seconds)
        gauge(LAST_RUN_METRIC, "When the last sync run ended.", ended)
        if last_success is not None:
            gauge(
                LAST_SUCCESS_METRIC, "When the last sync run without failures ended.", last_success
            )
        try:
            write_to_textfile(str(path), registry)
        except OSError as exc:
            raise LayerhoistError(f"cannot write the metrics file {path}: {exc.strerror}") from exc


def _previous_last_success(path: Path, shard: str | None) -> float | None:
    """The last-success timestamp in the metrics file at ``path`` for ``shard``, if it has one.

    A missing or unreadable file has none: it is about to be replaced either way.
    """
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text(encoding="utf-8")
        families = list(text_string_to_metric_families(text))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    for family in families:
        for sample in family.samples:
            if sample.name == LAST_SUCCESS_METRIC and sample.labels.get(SHARD_LABEL) == shard:
                return float(sample.value)
    return None
