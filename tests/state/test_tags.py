"""The confirmed-tags table: kept across runs, one row per destination tag, read-only looks."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerhoist.image import Platform
from layerhoist.state import StateFile
from layerhoist.state.tags import Confirmation, ConfirmedTags, platforms_key, read_confirmed

REPO = "ecr:mirror/app"
ONE = "sha256:" + "1" * 64
TWO = "sha256:" + "2" * 64


def test_confirm_is_kept_across_opens_and_replaced_per_tag(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with StateFile(path) as state:
        tags = ConfirmedTags.of(state, clock=lambda: 100.0)
        assert tags.confirmed(REPO, "v1") is None
        tags.confirm(REPO, "v1", ONE)
        tags.confirm(REPO, "v2", TWO, source_digest=ONE, platforms="linux/amd64")
        tags.confirm(REPO, "v1", TWO)
    with StateFile(path) as state:
        tags = ConfirmedTags.of(state)
        assert tags.confirmed(REPO, "v1") == Confirmation(TWO, TWO, "", 100.0)
        assert tags.confirmed(REPO, "v2") == Confirmation(TWO, ONE, "linux/amd64", 100.0)
        assert tags.confirmed("ecr:other", "v1") is None
        tags.forget(REPO, "v1")
        assert tags.confirmed(REPO, "v1") is None


def test_read_confirmed_sees_rows_while_locked_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with read_confirmed(path) as absent:
        assert absent is None
    assert not path.exists()
    with StateFile(path) as state:
        with read_confirmed(path) as before:
            assert before is not None
            assert before.confirmed(REPO, "v1") is None  # no table yet: nothing known
        ConfirmedTags.of(state).confirm(REPO, "v1", ONE)
        with read_confirmed(path) as looked:
            assert looked is not None
            found = looked.confirmed(REPO, "v1")
            assert found is not None and found.digest == ONE
            with pytest.raises(RuntimeError):
                looked.confirm(REPO, "v2", ONE)


def test_platforms_key_ignores_order() -> None:
    amd, arm = Platform.parse("linux/amd64"), Platform.parse("linux/arm64/v8")
    assert platforms_key([arm, amd]) == platforms_key((amd, arm)) == "linux/amd64,linux/arm64/v8"
    assert platforms_key(()) == ""
