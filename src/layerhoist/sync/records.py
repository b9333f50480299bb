"""One record per (mapping, tag): what the plan decided and what the run did with it.

The plan fills the first half (the action and why, the digests on each side, the bytes a copy
would move); the run completes the copies (seconds, retries, error). The report, the JSON file
and the metrics are all read from these records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: What happens to a tag. The plan says ``copy``, ``up-to-date`` or ``skipped``; after the run a
#: ``copy`` is ``copied`` or ``failed`` (a tag the plan could not even resolve is ``failed`` too).
Action = Literal["copy", "copied", "up-to-date", "skipped", "failed"]


@dataclass(kw_only=True)
class TagRecord:
    """One work item of a sync: a tag of a mapping's source and its destination."""

    #: The mapping's position in the file and its ``from:`` as written.
    mapping: int
    origin: str
    tag: str
    #: The source image and the destination image, as references (tag included).
    source: str
    destination: str
    action: Action
    #: Why a tag is skipped or failed (one line), or how it was found up to date.
    reason: str | None = None
    source_digest: str | None = None
    #: What the destination tag held before the run (``None``: nothing, or not asked).
    destination_digest: str | None = None
    #: Bytes a copy moves (planned: the blobs the destination lacks, where known).
    bytes: int = 0
    seconds: float = 0.0
    #: Retries by cause (``throttled``, ``server``, ``connection``…).
    retries: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def key(self) -> str:
        """The work item's stable name (:func:`work_key`)."""
        return work_key(self.origin, self.destination)


def work_key(origin: str, destination: str) -> str:
    """The stable name of the work item copying ``origin``'s tag to ``destination`` (with its
    tag): what sharding hashes, the same on every machine and in every run."""
    return f"{origin}\n{destination}"
