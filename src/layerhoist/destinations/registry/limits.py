"""The part rules of an OCI registry destination, and its settings.

Distribution has no minimum chunk: parts are cut only for memory and progress, and are sent
raw (no encoding, no payload cost).
"""

from __future__ import annotations

from dataclasses import dataclass

from layerhoist.destinations.base import PartLimits
from layerhoist.units import MiB

#: A registry takes a chunk of any length: one byte is a valid part.
MIN_PART_SIZE = 1
#: A part is held in memory whole until it is on the wire; past this a larger part only takes
#: memory from the other blobs in flight.
MAX_PART_SIZE = 64 * MiB
#: The part size when the user names none: large enough that handing a part to the
#: connection costs nothing next to hashing it, small enough that the default memory budget
#: keeps every blob worker busy.
PART_SIZE = 8 * MiB
#: Parts go on the wire as they were read.
PAYLOAD_EXPANSION = 0.0
#: The part rules of an OCI registry destination.
PART_LIMITS = PartLimits(
    min_part_size=MIN_PART_SIZE,
    max_part_size=MAX_PART_SIZE,
    preferred_max_part_size=PART_SIZE,
    payload_expansion=PAYLOAD_EXPANSION,
)
#: Blob HEADs (and mount POSTs) in flight at once while checking what the repository lacks.
HEAD_CONCURRENCY = 16


@dataclass(frozen=True, kw_only=True)
class RegistryUploadSettings:
    """How blobs are uploaded to an OCI registry.

    ``chunk_size=None`` (the default) uploads each blob as a POST and **one streamed PUT**
    ``?digest=`` whose body is fed by the parts as they are read: two requests per blob, the
    same on every registry (ECR included), and no chunk rules to meet. A ``chunk_size`` uploads
    it as a POST, one PATCH of ``chunk_size`` bytes per part (``Content-Range``), and an empty
    PUT: for registries or proxies that refuse chunked transfer encoding, at one request per
    chunk. Memory per blob in flight: one part being read plus one handed to the connection
    (streamed), or one part in its PATCH (chunks).
    """

    #: Bytes per PATCH; ``None``: one streamed PUT per blob.
    chunk_size: int | None = None
    #: Blob HEADs and mount POSTs in flight at once.
    head_concurrency: int = HEAD_CONCURRENCY
    #: Try a cross-repository mount for a blob this process pushed to another repository of
    #: the same registry.
    mount: bool = True

    def __post_init__(self) -> None:
        size = self.chunk_size
        if size is not None and not MIN_PART_SIZE <= size <= MAX_PART_SIZE:
            raise ValueError(f"chunk_size {size} is outside {MIN_PART_SIZE}..{MAX_PART_SIZE} bytes")
        if self.head_concurrency <= 0:
            raise ValueError(f"head_concurrency must be positive, got {self.head_concurrency}")
