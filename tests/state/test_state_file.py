"""The state file: one run at a time, and a killed run leaves no lock behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from layerhoist.errors import StateLockedError
from layerhoist.exits import EXIT_LOCKED
from layerhoist.state import StateFile, default_state_path


def test_a_second_open_is_refused_with_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with StateFile(path):
        with pytest.raises(StateLockedError) as caught:
            StateFile(path).open()
        assert caught.value.exit_code == EXIT_LOCKED
        assert str(path) in str(caught.value)
    with StateFile(path) as again:
        assert again.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_killed_holder_leaves_no_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib, time\n"
            "from layerhoist.state import StateFile\n"
            f"s = StateFile(pathlib.Path({str(path)!r})); s.open()\n"
            "print('held', flush=True); time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(StateLockedError):
        StateFile(path).open()
    holder.kill()
    holder.wait()
    with StateFile(path):
        pass


def test_the_default_lives_in_the_cache_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_state_path() == tmp_path / "layerhoist" / "sync-state.sqlite"
