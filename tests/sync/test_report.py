"""The sync report: its summary line, its JSON file, its Prometheus metrics file, its exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from layerhoist.errors import LayerhoistError, UsageError
from layerhoist.exits import EXIT_FAILED, EXIT_OK
from layerhoist.sync.records import Action, TagRecord
from layerhoist.sync.report import SyncReport
from layerhoist.units import MiB

STARTED = 1_700_000_000.0
LATER = STARTED + 86_400.0


def record(tag: str, action: Action, **fields: Any) -> TagRecord:
    """One tag of mapping 0 (``docker.io/library/alpine`` into ``ecr:mirror/alpine``)."""
    return TagRecord(
        mapping=0,
        origin="docker.io/library/alpine",
        tag=tag,
        source=f"docker://docker.io/library/alpine:{tag}",
        destination=f"ecr:mirror/alpine:{tag}",
        action=action,
        **fields,
    )


def finished_run() -> list[TagRecord]:
    """Two tags copied, one up to date, one skipped, no failure."""
    return [
        record("3.19", "copied", bytes=30 * MiB, seconds=2.0, retries={"throttled": 2}),
        record(
            "3.20", "copied", bytes=15 * MiB, seconds=1.5, retries={"throttled": 1, "server": 1}
        ),
        record("3.18", "up-to-date", reason="state file"),
        record("3.17", "skipped", reason="immutable tag differs"),
    ]


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a metrics file, parsed by prometheus_client's own parser."""
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_summary_of_a_run() -> None:
    report = SyncReport(finished_run(), seconds=3.14, dry_run=False)

    assert report.summary() == (
        "sync: 4 tags: 2 copied, 1 up to date, 1 skipped, 0 failed; 45.0 MiB in 3.1 s"
    )
    assert report.exit_code == EXIT_OK


def test_summary_of_a_dry_run_names_what_it_would_do() -> None:
    planned = [
        record("3.19", "copy", bytes=3 * MiB),
        record("3.18", "up-to-date"),
        record("edge", "failed", error="manifest unknown"),
    ]
    report = SyncReport(planned, seconds=0.42, dry_run=True, shard="1/3")

    assert report.summary() == (
        "sync (dry run) shard 1/3: 3 tags: 1 would copy, 1 up to date, 0 skipped, 1 failed; "
        "3.0 MiB to copy, planned in 0.4 s"
    )
    assert report.exit_code == EXIT_FAILED


def test_a_planned_copy_left_undone_is_not_a_success() -> None:
    records = [record("3.19", "copy"), record("3.18", "copied")]
    report = SyncReport(records, seconds=1, dry_run=False)

    assert report.summary().startswith("sync: 2 tags: 1 copied, 0 up to date, 0 skipped, 0 failed")
    assert "1 not run" in report.summary()
    assert report.exit_code == EXIT_FAILED
    assert SyncReport([record("3.19", "copy")], seconds=1, dry_run=True).exit_code == EXIT_OK


def test_one_failed_tag_fails_the_run() -> None:
    records = [*finished_run(), record("edge", "failed", error="denied")]

    assert SyncReport(records, seconds=1, dry_run=False).exit_code == EXIT_FAILED


def test_json_has_one_record_per_tag_and_the_totals(tmp_path: Path) -> None:
    records = [*finished_run(), record("edge", "failed", error="denied", retries={"server": 4})]
    report = SyncReport(records, seconds=3.14159, dry_run=False, shard="0/2", started=STARTED)
    path = tmp_path / "report.json"

    report.write_json(path)

    document = json.loads(path.read_text())
    assert document["ok"] is False
    assert document["dry_run"] is False
    assert document["shard"] == "0/2"
    assert document["started"] == STARTED
    assert document["seconds"] == 3.142
    assert document["totals"] == {
        "tags": 5,
        "copied": 2,
        "up_to_date": 1,
        "skipped": 1,
        "failed": 1,
        "pending": 0,
        "bytes": 45 * MiB,
        "retries": {"server": 5, "throttled": 3},
    }
    assert [entry["tag"] for entry in document["tags"]] == ["3.19", "3.20", "3.18", "3.17", "edge"]
    first = document["tags"][0]
    assert set(first) == {
        "mapping",
        "origin",
        "tag",
        "source",
        "destination",
        "action",
        "reason",
        "source_digest",
        "destination_digest",
        "bytes",
        "seconds",
        "retries",
        "error",
    }
    assert first["action"] == "copied"
    assert first["retries"] == {"throttled": 2}
    assert document["tags"][3]["reason"] == "immutable tag differs"
    assert document["tags"][4]["error"] == "denied"


def test_metrics_file_parses_with_the_run_figures(tmp_path: Path) -> None:
    path = tmp_path / "sync.prom"
    report = SyncReport(finished_run(), seconds=3.5, dry_run=False, started=STARTED)

    report.write_metrics(path)

    assert samples(path) == {
        ("layerhoist_sync_tags", (("result", "copied"),)): 2.0,
        ("layerhoist_sync_tags", (("result", "up_to_date"),)): 1.0,
        ("layerhoist_sync_tags", (("result", "skipped"),)): 1.0,
        ("layerhoist_sync_tags", (("result", "failed"),)): 0.0,
        ("layerhoist_sync_tags", (("result", "pending"),)): 0.0,
        ("layerhoist_sync_copied_bytes", ()): 45.0 * MiB,
        ("layerhoist_sync_duration_seconds", ()): 3.5,
        ("layerhoist_sync_last_run_timestamp_seconds", ()): STARTED + 3.5,
        ("layerhoist_sync_last_success_timestamp_seconds", ()): STARTED + 3.5,
    }


def test_a_shard_labels_every_metric(tmp_path: Path) -> None:
    path = tmp_path / "sync.prom"

    SyncReport(finished_run(), seconds=1, dry_run=False, shard="2/3").write_metrics(path)

    labels = {dict(labelled)["shard"] for _, labelled in samples(path)}
    assert labels == {"2/3"}


def test_last_success_survives_a_failed_run(tmp_path: Path) -> None:
    path = tmp_path / "sync.prom"
    SyncReport(finished_run(), seconds=2, dry_run=False, started=STARTED).write_metrics(path)
    failed = [*finished_run(), record("edge", "failed", error="denied")]

    SyncReport(failed, seconds=7, dry_run=False, started=LATER).write_metrics(path)

    found = samples(path)
    assert found["layerhoist_sync_last_success_timestamp_seconds", ()] == STARTED + 2
    assert found["layerhoist_sync_last_run_timestamp_seconds", ()] == LATER + 7
    assert found["layerhoist_sync_tags", (("result", "failed"),)] == 1.0

    # And a later successful run moves it on.
    SyncReport(finished_run(), seconds=1, dry_run=False, started=LATER + 60).write_metrics(path)

    assert samples(path)["layerhoist_sync_last_success_timestamp_seconds", ()] == LATER + 61


def test_a_failed_first_run_has_no_last_success(tmp_path: Path) -> None:
    path = tmp_path / "sync.prom"
    path.write_text("this is no metrics file {\n")
    failed = [record("edge", "failed", error="denied")]

    SyncReport(failed, seconds=1, dry_run=False, started=STARTED).write_metrics(path)

    names = {name for name, _ in samples(path)}
    assert "layerhoist_sync_last_success_timestamp_seconds" not in names
    assert "layerhoist_sync_last_run_timestamp_seconds" in names


def test_last_success_is_kept_per_shard(tmp_path: Path) -> None:
    path = tmp_path / "sync.prom"
    SyncReport(finished_run(), seconds=2, dry_run=False, started=STARTED).write_metrics(path)
    failed = [record("edge", "failed", error="denied")]

    # The file held the unsharded run's timestamp, not this shard's.
    SyncReport(failed, seconds=1, dry_run=False, shard="0/2", started=LATER).write_metrics(path)

    names = {name for name, _ in samples(path)}
    assert "layerhoist_sync_last_success_timestamp_seconds" not in names


def test_metrics_replace_the_file_whole(tmp_path: Path) -> None:
    """The new file is renamed over the old one: a reader holding the old file still reads it
    complete, and no temporary file is left beside it."""
    path = tmp_path / "sync.prom"
    SyncReport(finished_run(), seconds=2, dry_run=False, started=STARTED).write_metrics(path)
    before = path.read_bytes()
    inode = path.stat().st_ino

    with path.open("rb") as reader:
        failed = [record("edge", "failed", error="denied")]
        SyncReport(failed, seconds=1, dry_run=False, started=LATER).write_metrics(path)

        assert reader.read() == before
    assert path.stat().st_ino != inode
    assert path.read_bytes() != before
    assert [entry.name for entry in tmp_path.iterdir()] == ["sync.prom"]


def test_a_dry_run_writes_no_metrics(tmp_path: Path) -> None:
    path = tmp_path / "sync.prom"

    with pytest.raises(UsageError, match="dry run"):
        SyncReport([record("3.19", "copy")], seconds=1, dry_run=True).write_metrics(path)

    assert not path.exists()


def test_an_unwritable_file_is_one_line(tmp_path: Path) -> None:
    report = SyncReport(finished_run(), seconds=1, dry_run=False)
    missing = tmp_path / "no-such-directory"

    with pytest.raises(LayerhoistError, match=r"metrics file .*no-such-directory/sync\.prom"):
        report.write_metrics(missing / "sync.prom")
    with pytest.raises(LayerhoistError, match=r"report .*no-such-directory/report\.json"):
        report.write_json(missing / "report.json")
