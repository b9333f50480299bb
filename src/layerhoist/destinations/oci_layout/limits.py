"""The part rules of writing an OCI layout: local files take parts of any size, written raw."""

from __future__ import annotations

from layerhoist.destinations.base import PartLimits
from layerhoist.units import MiB

#: A file takes a write of any length: one byte is a valid part.
MIN_PART_SIZE = 1
#: A part is held in memory whole until it is written; past this, a larger write gains a
#: local file nothing and only takes memory from the other blobs in flight.
MAX_PART_SIZE = 64 * MiB
#: The part size when the user names none: large enough that the thread hop and the system
#: call per part cost nothing next to hashing the bytes, small enough that the default
#: memory budget keeps every blob worker busy.
PART_SIZE = 8 * MiB
#: Parts are written as they were read: the payload is the part itself, no copy.
PAYLOAD_EXPANSION = 0.0
#: The part rules of an OCI layout destination.
PART_LIMITS = PartLimits(
    min_part_size=MIN_PART_SIZE,
    max_part_size=MAX_PART_SIZE,
    preferred_max_part_size=PART_SIZE,
    payload_expansion=PAYLOAD_EXPANSION,
)
