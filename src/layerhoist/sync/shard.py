"""Split a sync's work items across machines: ``--shard I/N`` and ``--shards N``.

A work item (a mapping's tag, named by :func:`layerhoist.sync.records.work_key`) belongs to
shard ``sha256(key) mod N``: the same on every machine, in every process and every run (unlike
:func:`hash`, which Python salts per process), so N shards partition the work exactly.

Indexes count from 0, as the engines that run array jobs number them: ``--shards N`` reads the
index from ``JOB_COMPLETION_INDEX`` (a Kubernetes Indexed Job) or else from
``AWS_BATCH_JOB_ARRAY_INDEX`` (an AWS Batch array job).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from layerhoist.errors import UsageError

#: Where ``--shards N`` finds this shard's index, in this order.
KUBERNETES_INDEX_ENV = "JOB_COMPLETION_INDEX"
AWS_BATCH_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"
INDEX_VARIABLES = (KUBERNETES_INDEX_ENV, AWS_BATCH_INDEX_ENV)
_SHARD_PATTERN = re.compile(r"(?P<index>[0-9]+)/(?P<count>[0-9]+)")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``0 <= index < count``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= index < count")

    def takes(self, key: str) -> bool:
        """Whether the work item named ``key`` is this shard's."""
        return shard_index(key, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_index(key: str, count: int) -> int:
    """The shard (of ``count``) the work item named ``key`` belongs to."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest, "big") % count


def parse_shard(text: str) -> Shard:
    """Parse ``--shard I/N`` (``0 <= I < N``)."""
    match = _SHARD_PATTERN.fullmatch(text)
    if match is None:
        raise UsageError(f"--shard {text!r}: expected I/N, shard I of N counted from 0 (e.g. 0/3)")
    index, count = int(match["index"]), int(match["count"])
    if count < 1:
        raise UsageError(f"--shard {text!r}: N, the number of shards, must be at least 1")
    if index >= count:
        raise UsageError(
            f"--shard {text!r}: shards count from 0, so I must be below N "
            f"(0/{count} to {count - 1}/{count})"
        )
    return Shard(index, count)


def shard_from_environment(count: int, environ: Mapping[str, str] | None = None) -> Shard:
    """This machine's shard of ``count`` (``--shards N``), its index from the array job's
    environment (:data:`INDEX_VARIABLES`, the first one set)."""
    if count < 1:
        raise UsageError(f"--shards {count}: the number of shards must be at least 1")
    env = os.environ if environ is None else environ
    for variable in INDEX_VARIABLES:
        value = env.get(variable, "")
        if not value:
            continue
        if not value.isdigit() or not value.isascii():
            raise UsageError(f"{variable}={value!r} is not a shard index (0, 1, 2…)")
        index = int(value)
        if index >= count:
            raise UsageError(
                f"{variable}={index} is out of range for --shards {count} (0 to {count - 1}): "
                "run as many array jobs as shards"
            )
        return Shard(index, count)
    raise UsageError(
        f"--shards {count} needs this shard's index, and neither {KUBERNETES_INDEX_ENV} "
        f"(Kubernetes Indexed Job) nor {AWS_BATCH_INDEX_ENV} (AWS Batch array job) is set: "
        f"give it with --shard I/{count}"
    )
