"""The one configuration object of a push, with documented defaults.

Memory bound (the formula the benchmarks check, :func:`memory_bound`)::

    peak bytes held for layer data <= memory_budget
    memory_budget >= blob_concurrency * (read_ahead_parts + 2) * part_cost
    part_cost = part_size * (1 + payload_expansion)   # the raw part plus its request payload

(per blob: the part on the wire, ``read_ahead_parts`` encoded and waiting, and one
being read). ``payload_expansion`` is the destination's (4/3 for ECR's base64 bodies; 0 for
an OCI layout, whose payload is the part's own bytes, so a part costs its size once).
A smaller budget is safe, it only leaves some blobs waiting for memory.

Every part read from a source is charged against ``memory_budget`` until its
upload request has been answered, so peak memory depends on these settings,
never on layer size or on how many images are pushed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, get_args

from layerhoist.units import KiB, MiB

Pacing = Literal["auto", "published", "off"]


@dataclass(frozen=True, kw_only=True)
class PushConfig:
    """Settings of a push; every field has a default that suits a 2-core machine.

    Sizes are in bytes, durations in seconds.
    """

    #: Blobs uploading at once across all images of a run (the unit of concurrency:
    #: the parts of one ECR layer must be sent one after another).
    blob_concurrency: int = 16
    #: Part size to request; ``None`` follows the part size the service offers when an
    #: upload starts, clamped to ``[min_part_size, max_part_size]``. The destination
    #: checks it against its own limits (ECR: 5 to 20 MiB).
    part_size: int | None = None
    #: Lower clamp for the part size; ``None``: the destination's minimum (ECR: 5 MiB).
    min_part_size: int | None = None
    #: Upper clamp for the part size; ``None``: the destination's preferred maximum
    #: (ECR: 10 MiB, the quota pages' value, although the API model allows 20 MiB).
    max_part_size: int | None = None
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
    #: How long a failing request, or a failing layer, keeps being retried after its first
    #: failure even when its attempts are used up: enough to ride out a registry restart
    #: or a short network cut in an unattended job. Not applied until the destination has
    #: answered once, so a wrong endpoint still fails fast.
    retry_for: float = 120.0
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
    #: With an upload journal (``--state``), blobs at least this large are uploaded so that a
    #: killed run's successor resumes them, and journaled part by part; smaller ones are sent
    #: again whole, which costs less than what resuming them would save. The layer API resumes
    #: any upload at no extra request; an OCI registry cannot resume a streamed PUT, so these
    #: blobs go to it as PATCH chunks of the part size instead, one request per part.
    resume_min_size: int = 32 * MiB
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
            "memory_budget": self.memory_budget,
            "part_attempts": self.part_attempts,
            "layer_attempts": self.layer_attempts,
            "max_connections": self.max_connections,
            "resume_min_size": self.resume_min_size,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.pacing not in get_args(Pacing):
            raise ValueError(f"pacing must be one of {get_args(Pacing)}, got {self.pacing!r}")
        if self.read_ahead_parts < 0:
            raise ValueError(f"read_ahead_parts must be >= 0, got {self.read_ahead_parts}")
        if self.retry_for < 0:
            raise ValueError(f"retry_for must be >= 0, got {self.retry_for}")
        if self.retry_budget < 0:
            raise ValueError(f"retry_budget must be >= 0, got {self.retry_budget}")
        sizes = {
            "part_size": self.part_size,
            "min_part_size": self.min_part_size,
            "max_part_size": self.max_part_size,
        }
        for name, size in sizes.items():
            if size is not None and size <= 0:
                raise ValueError(f"{name} must be positive, got {size}")
        if self.min_part_size and self.max_part_size and self.min_part_size > self.max_part_size:
            raise ValueError("min_part_size must not exceed max_part_size")
        if self.backoff_initial < 0 or self.backoff_max < 0 or self.backoff_base < 1:
            raise ValueError("backoff_initial/backoff_max must be >= 0 and backoff_base >= 1")

    def replace(self, **changes: object) -> PushConfig:
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def memory_bound(config: PushConfig, *, part_size: int, payload_expansion: float) -> int:
    """The budget that keeps every blob worker busy: the module docstring's formula."""
    return (
        config.blob_concurrency
        * (config.read_ahead_parts + 2)
        * part_cost(part_size, payload_expansion=payload_expansion)
    )


def part_cost(part_size: int, *, payload_expansion: float) -> int:
    """Bytes one part holds at its peak: the raw read and its payload, while encoding."""
    return int(part_size * (1 + payload_expansion))
