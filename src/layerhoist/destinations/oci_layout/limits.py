"""The part rules of writing an OCI layout: local files take parts of any size, written raw."""

from __future__ import annotations

from layerhoist.destinations.base import RAW_PART_LIMITS

#: The part rules of an OCI layout destination: parts are written as they were read.
PART_LIMITS = RAW_PART_LIMITS
