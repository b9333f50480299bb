"""The upload journal in the state file: what the pipeline writes is what the next run reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from layerhoist.state import StateFile
from layerhoist.state.journal import StateJournal
from layerhoist.transfer.journal import JournaledPart, JournalEntry, xxh3_hex

DEST = "ecr-public:team/app"
OTHER = "docker://127.0.0.1:5000/team/app"
DIGEST = "sha256:" + "a" * 64
SECOND = "sha256:" + "b" * 64
PART = 5 * 1024 * 1024


def part(index: int, *, session: str = "upload-1") -> JournaledPart:
    """Part ``index`` of a blob cut every :data:`PART` bytes."""
    return JournaledPart(
        index=index, end=(index + 1) * PART, xxh3=xxh3_hex(index + 1), session=session
    )


def test_an_upload_and_its_parts_come_back_by_destination(tmp_path: Path) -> None:
    with StateFile(tmp_path / "state.sqlite") as state:
        journal = StateJournal(state.db)
        journal.started(DEST, DIGEST, session="upload-1", part_size=PART)
        journal.acknowledged(DEST, DIGEST, part(0))
        journal.acknowledged(DEST, DIGEST, part(1, session="upload-1b"))
        journal.started(OTHER, DIGEST, session="http://x/v2/a/blobs/uploads/1", part_size=PART)

        entry = journal.pending(DEST)[DIGEST]
        assert entry == JournalEntry(
            destination=DEST,
            digest=DIGEST,
            session="upload-1",
            part_size=PART,
            parts=(part(0), part(1, session="upload-1b")),
        )
        assert entry.acknowledged == 2 * PART
        assert entry.latest_session == "upload-1b"
        assert entry.fingerprints == [1, 2]
        assert journal.pending(OTHER)[DIGEST].parts == ()
        assert journal.pending("elsewhere") == {}


def test_the_journal_outlives_the_process_that_wrote_it_killed(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    script = (
        "import os, signal, pathlib\n"
        "from layerhoist.state import StateFile\n"
        "from layerhoist.state.journal import StateJournal\n"
        "from layerhoist.transfer.journal import JournaledPart\n"
        f"state = StateFile(pathlib.Path({str(path)!r})); state.open()\n"
        "journal = StateJournal(state.db)\n"
        f"journal.started({DEST!r}, {DIGEST!r}, session='upload-1', part_size={PART})\n"
        f"journal.acknowledged({DEST!r}, {DIGEST!r}, JournaledPart(0, {PART}, '1' * 16, 'u'))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script], check=False)
    assert killed.returncode < 0
    with StateFile(path) as state:
        entry = StateJournal(state.db).pending(DEST)[DIGEST]
    assert entry.acknowledged == PART
    assert entry.parts[0].xxh3 == "1" * 16


def test_a_new_start_replaces_the_entry_and_its_parts(tmp_path: Path) -> None:
    with StateFile(tmp_path / "state.sqlite") as state:
        journal = StateJournal(state.db)
        journal.started(DEST, DIGEST, session="upload-1", part_size=PART)
        journal.acknowledged(DEST, DIGEST, part(0))
        journal.started(DEST, DIGEST, session="upload-2", part_size=2 * PART)
        entry = journal.pending(DEST)[DIGEST]
    assert (entry.session, entry.part_size, entry.parts) == ("upload-2", 2 * PART, ())


def test_a_part_acknowledged_again_replaces_the_first_record(tmp_path: Path) -> None:
    with StateFile(tmp_path / "state.sqlite") as state:
        journal = StateJournal(state.db)
        journal.started(DEST, DIGEST, session="upload-1", part_size=PART)
        journal.acknowledged(DEST, DIGEST, part(0))
        again = JournaledPart(index=0, end=PART, xxh3="f" * 16, session="upload-1")
        journal.acknowledged(DEST, DIGEST, again)
        assert journal.pending(DEST)[DIGEST].parts == (again,)


def test_truncate_keeps_the_first_parts_and_forget_drops_only_its_blob(tmp_path: Path) -> None:
    with StateFile(tmp_path / "state.sqlite") as state:
        journal = StateJournal(state.db)
        for digest in (DIGEST, SECOND):
            journal.started(DEST, digest, session="upload-1", part_size=PART)
            for index in range(3):
                journal.acknowledged(DEST, digest, part(index))
        journal.truncate(DEST, DIGEST, parts=1)
        assert journal.pending(DEST)[DIGEST].parts == (part(0),)
        journal.forget(DEST, DIGEST)
        assert list(journal.pending(DEST)) == [SECOND]
        assert len(journal.pending(DEST)[SECOND].parts) == 3


def test_parts_after_a_hole_are_not_taken_as_held(tmp_path: Path) -> None:
    with StateFile(tmp_path / "state.sqlite") as state:
        journal = StateJournal(state.db)
        journal.started(DEST, DIGEST, session="upload-1", part_size=PART)
        journal.acknowledged(DEST, DIGEST, part(0))
        journal.acknowledged(DEST, DIGEST, part(2))
        assert journal.pending(DEST)[DIGEST].parts == (part(0),)


def test_the_tables_are_created_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with StateFile(path) as state:
        journal = StateJournal(state.db)
        journal.started(DEST, DIGEST, session="upload-1", part_size=PART)
    with StateFile(path) as state:
        assert list(StateJournal(state.db).pending(DEST)) == [DIGEST]
