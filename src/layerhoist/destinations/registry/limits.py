"""The part rules of an OCI registry destination, and its settings.

Distribution has no minimum chunk: parts are cut only for memory and progress, and are sent
raw (no encoding, no payload cost).
"""

from __future__ import annotations

from dataclasses import dataclass

from layerhoist.destinations.base import RAW_PART_LIMITS

#: The part rules of an OCI registry destination: chunks of any length, sent as read.
PART_LIMITS = RAW_PART_LIMITS
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
        low, high = PART_LIMITS.min_part_size, PART_LIMITS.max_part_size
        if size is not None and not low <= size <= high:
            raise ValueError(f"chunk_size {size} is outside {low}..{high} bytes")
        if self.head_concurrency <= 0:
            raise ValueError(f"head_concurrency must be positive, got {self.head_concurrency}")
