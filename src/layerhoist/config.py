"""The one configuration object of a push, with documented defaults.

Memory bound (the formula the benchmarks check)::

    peak bytes held for layer data <= memory_budget
    memory_budget >= blob_concurrency * (read_ahead_parts + 2) * part_cost
    part_cost = part_size * (1 + 4/3)   # the raw part plus its base64 request body

(per blob: the part on the wire, ``read_ahead_parts`` encoded and waiting, and one
being read). A smaller budget is safe, it only leaves some blobs waiting for memory.

Every part read from a source is charged against ``memory_budget`` until its
upload request has been answered, so peak memory depends on these settings,
never on layer size or on how many images are pushed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

Pacing = Literal["auto", "published", "off"]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: ECR rejects a non-final part smaller than this (LayerPartTooSmallException).
ECR_MIN_PART_SIZE = 5 * MiB
#: The largest part the ECR API model accepts for UploadLayerPart.
ECR_MAX_PART_SIZE = 20 * MiB
#: BatchCheckLayerAvailability takes at most this many digests per call.
ECR_MAX_DIGESTS_PER_CHECK = 100


@dataclass(frozen=True, kw_only=True)
class PushConfig:
    """Settings of a push; every field has a default that suits a 2-core machine.

    Sizes are in bytes, durations in seconds.
    """

    #: Blobs uploading at once across all images of a run (the unit of concurrency:
    #: the parts of one ECR layer must be sent one after another).
    blob_concurrency: int = 16
    #: Part size to request; ``None`` follows the ``partSize`` the service returns
    #: at InitiateLayerUpload, clamped to ``[min_part_size, max_part_size]``.
    part_size: int | None = None
    #: Lower clamp for the part size (ECR's minimum for a non-final part).
    min_part_size: int = ECR_MIN_PART_SIZE
    #: Upper clamp for the part size. The quota pages say 10 MiB although the API
    #: model allows 20 MiB: the stricter value is the default.
    max_part_size: int = 10 * MiB
    #: Parts of one blob read and hashed ahead of the one on the wire.
    read_ahead_parts: int = 1
    #: Bytes of layer data in flight at once (read, encoded or awaiting an answer).
    memory_budget: int = 112 * MiB
    #: Chunks at least this large are hashed in a worker thread so the event loop
    #: keeps serving other uploads.
    thread_hash_threshold: int = 256 * KiB
    #: Attempts of one part (same upload id) before the whole layer is requeued.
    part_attempts: int = 4
    #: Attempts of one layer (each a fresh upload id) before it is given up.
    layer_attempts: int = 5
    #: Retries allowed over the whole run, parts and layers together; when spent,
    #: the next retryable error fails its image instead.
    retry_budget: int = 1000
    #: First backoff delay. Retry n waits
    #: ``uniform(0, min(backoff_max, backoff_initial * backoff_base**(n - 1)))`` (full jitter).
    backoff_initial: float = 0.2
    #: Exponential base of the backoff.
    backoff_base: float = 2.0
    #: Ceiling of one backoff delay.
    backoff_max: float = 20.0
    #: Client-side pacing per operation, with token buckets at the destination's published
    #: quotas that halve when the service throttles anyway: ``"published"`` always,
    #: ``"off"`` never, ``"auto"`` when the endpoint is AWS's own (the published quotas
    #: mean nothing to a local or third-party endpoint).
    pacing: Pacing = "auto"
    #: TCP connect timeout of one request.
    connect_timeout: float = 10.0
    #: Read timeout of one request (a part upload over a slow link needs room).
    read_timeout: float = 120.0
    #: HTTP connections the client may open to the destination.
    max_connections: int = 64

    def __post_init__(self) -> None:
        positive = {
            "blob_concurrency": self.blob_concurrency,
            "min_part_size": self.min_part_size,
            "max_part_size": self.max_part_size,
            "memory_budget": self.memory_budget,
            "part_attempts": self.part_attempts,
            "layer_attempts": self.layer_attempts,
            "max_connections": self.max_connections,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.pacing not in get_args(Pacing):
            raise ValueError(f"pacing must be one of {get_args(Pacing)}, got {self.pacing!r}")
        if self.read_ahead_parts < 0:
            raise ValueError(f"read_ahead_parts must be >= 0, got {self.read_ahead_parts}")
        if self.retry_budget < 0:
            raise ValueError(f"retry_budget must be >= 0, got {self.retry_budget}")
        if self.min_part_size > self.max_part_size:
            raise ValueError("min_part_size must not exceed max_part_size")
        if self.max_part_size > ECR_MAX_PART_SIZE:
            raise ValueError(f"max_part_size must be at most {ECR_MAX_PART_SIZE} bytes")
        if self.part_size is not None and not (
            ECR_MIN_PART_SIZE <= self.part_size <= ECR_MAX_PART_SIZE
        ):
            raise ValueError(
                f"part_size must be within {ECR_MIN_PART_SIZE}..{ECR_MAX_PART_SIZE} bytes"
            )
        if self.backoff_initial < 0 or self.backoff_max < 0 or self.backoff_base < 1:
            raise ValueError("backoff_initial/backoff_max must be >= 0 and backoff_base >= 1")

    def replace(self, **changes: object) -> PushConfig:
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def effective_part_size(self, service_part_size: int | None) -> int:
        """The part size to use given what the service asked for at InitiateLayerUpload."""
        wanted = self.part_size if self.part_size is not None else service_part_size
        if wanted is None:
            wanted = self.max_part_size
        if self.part_size is not None:
            return wanted
        return max(self.min_part_size, min(self.max_part_size, wanted))


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": KiB,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": MiB,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": GiB,
}


def parse_size(text: str) -> int:
    """``'10MiB'`` -> 10485760, ``'5MB'`` -> 5000000, ``'4096'`` -> 4096; ValueError otherwise."""
    stripped = text.strip()
    digits = stripped.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ")
    unit = stripped[len(digits) :].strip().lower()
    if unit not in _SIZE_UNITS or not digits:
        raise ValueError(f"not a size: {text!r} (use e.g. 5MiB, 10MB or 4096)")
    try:
        number = float(digits)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use e.g. 5MiB, 10MB or 4096)") from None
    if number < 0:
        raise ValueError(f"not a size: {text!r} (must not be negative)")
    return int(number * _SIZE_UNITS[unit])
