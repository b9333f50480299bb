"""Shards: ``--shard I/N`` and ``--shards N`` parsed, N shards partitioning any work exactly,
and the same assignment in every process."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layerhoist.errors import UsageError
from layerhoist.exits import EXIT_USAGE
from layerhoist.sync.records import work_key
from layerhoist.sync.shard import (
    AWS_BATCH_INDEX_ENV,
    KUBERNETES_INDEX_ENV,
    Shard,
    parse_shard,
    shard_from_environment,
    shard_index,
)

#: One work key and the shard of 7 it belongs to, computed once (sha256 mod 7): a change of
#: the hash would move every work item of running jobs to other shards.
FIXED_KEY = work_key("docker.io/library/alpine", "ecr:mirror/library/alpine:3.20")
FIXED_SHARD_OF_7 = 2


def test_parse_shard() -> None:
    assert parse_shard("0/1") == Shard(0, 1)
    assert parse_shard("2/3") == Shard(2, 3)
    assert str(parse_shard("4/10")) == "4/10"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3/3", "--shard '3/3': shards count from 0, so I must be below N (0/3 to 2/3)"),
        ("1/0", "--shard '1/0': N, the number of shards, must be at least 1"),
        ("1", "--shard '1': expected I/N"),
        ("-1/3", "--shard '-1/3': expected I/N"),
        ("a/b", "--shard 'a/b': expected I/N"),
        (" 1/3", "--shard ' 1/3': expected I/N"),
    ],
)
def test_parse_shard_refuses(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_shard(text)
    assert str(caught.value).startswith(message)
    assert caught.value.exit_code == EXIT_USAGE


def test_a_shard_out_of_range_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="0 <= index < count"):
        Shard(3, 3)


def test_shards_from_the_kubernetes_index_then_aws_batch() -> None:
    both = {KUBERNETES_INDEX_ENV: "1", AWS_BATCH_INDEX_ENV: "2"}
    assert shard_from_environment(3, both) == Shard(1, 3)
    assert shard_from_environment(3, {AWS_BATCH_INDEX_ENV: "2"}) == Shard(2, 3)
    # An empty variable is an unset one (a template that left it blank).
    assert shard_from_environment(3, {KUBERNETES_INDEX_ENV: "", AWS_BATCH_INDEX_ENV: "0"}) == Shard(
        0, 3
    )


def test_shards_from_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KUBERNETES_INDEX_ENV, raising=False)
    monkeypatch.setenv(AWS_BATCH_INDEX_ENV, "4")
    assert shard_from_environment(5) == Shard(4, 5)


def test_shards_without_an_index_say_where_they_looked() -> None:
    with pytest.raises(UsageError) as caught:
        shard_from_environment(3, {})
    assert str(caught.value) == (
        "--shards 3 needs this shard's index, and neither JOB_COMPLETION_INDEX (Kubernetes "
        "Indexed Job) nor AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array job) is set: give it with "
        "--shard I/3"
    )
    assert caught.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("count", "environ", "message"),
    [
        (3, {KUBERNETES_INDEX_ENV: "3"}, "JOB_COMPLETION_INDEX=3 is out of range for --shards 3"),
        (2, {AWS_BATCH_INDEX_ENV: "7"}, "AWS_BATCH_JOB_ARRAY_INDEX=7 is out of range"),
        (3, {KUBERNETES_INDEX_ENV: "one"}, "JOB_COMPLETION_INDEX='one' is not a shard index"),
        (3, {KUBERNETES_INDEX_ENV: "-1"}, "JOB_COMPLETION_INDEX='-1' is not a shard index"),
        (3, {KUBERNETES_INDEX_ENV: "²"}, "JOB_COMPLETION_INDEX='²' is not a shard index"),
        (0, {KUBERNETES_INDEX_ENV: "0"}, "--shards 0: the number of shards must be at least 1"),
    ],
)
def test_shards_refuse_a_bad_index(count: int, environ: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        shard_from_environment(count, environ)
    assert str(caught.value).startswith(message)


_keys = st.lists(
    st.builds(work_key, st.text(max_size=30), st.text(max_size=30)), unique=True, max_size=60
)


@given(keys=_keys, count=st.integers(min_value=1, max_value=12))
def test_n_shards_partition_any_keys_exactly(keys: list[str], count: int) -> None:
    shards = [Shard(index, count) for index in range(count)]
    for key in keys:
        assert sum(shard.takes(key) for shard in shards) == 1
    taken = [{key for key in keys if shard.takes(key)} for shard in shards]
    assert set().union(*taken) == set(keys)
    assert sum(len(part) for part in taken) == len(keys)


def test_the_assignment_is_the_same_in_another_process() -> None:
    assert shard_index(FIXED_KEY, 7) == FIXED_SHARD_OF_7
    code = f"from layerhoist.sync.shard import shard_index\nprint(shard_index({FIXED_KEY!r}, 7))\n"
    # Another interpreter with another hash seed: Python's hash() would differ there.
    child = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PYTHONPATH": ":".join(sys.path)},
    )
    assert int(child.stdout) == FIXED_SHARD_OF_7
