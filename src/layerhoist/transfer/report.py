"""What a push did: per-image and per-blob outcomes, bytes, timings and retries.

The pipeline fills a :class:`PushResult`; the CLI prints its one-line summary or its
JSON form. Nothing here holds a secret: only references, digests, codes and figures.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from layerhoist.transfer.retry import RetryEvent
from layerhoist.units import format_bytes

BlobStatus = Literal["uploaded", "present", "failed", "pending"]
ImageStatus = Literal["pushed", "failed"]


@dataclass(kw_only=True)
class BlobOutcome:
    """What happened to one blob of the run."""

    digest: str
    size: int
    status: BlobStatus = "pending"
    #: Upload attempts made (0 when the destination already had the blob).
    attempts: int = 0
    #: Layer bytes sent, retries included.
    bytes_sent: int = 0
    #: Layer bytes not sent again: a resumed upload's destination held them from a killed run.
    bytes_resumed: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass(kw_only=True)
class ImageOutcome:
    """What happened to one image (a manifest or an index and its children)."""

    destination: str
    source: str
    digest: str
    status: ImageStatus = "failed"
    blobs: list[str] = field(default_factory=list)
    error: str | None = None
    #: The source's index digest when ``--platform`` wrote a new index (``digest``) of a
    #: subset of its children; ``None`` when the manifest was copied as it is.
    source_digest: str | None = None


@dataclass(kw_only=True)
class PushResult:
    """The outcome of a whole run."""

    source: str
    destination: str
    images: list[ImageOutcome] = field(default_factory=list)
    blobs: list[BlobOutcome] = field(default_factory=list)
    retries: list[RetryEvent] = field(default_factory=list)
    seconds: float = 0.0
    #: Per operation: requests, errors, seconds and latency percentiles.
    requests: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    #: The most layer bytes held in memory at once (the memory budget's peak).
    memory_peak: int = 0
    #: Source blob streams continued with ``Range`` where they broke (a registry source).
    source_resumes: int = 0
    #: Source blob streams sent again from byte 0 by a registry that ignored ``Range``.
    source_restarts: int = 0
    #: Docker Hub pulls left as the source last announced (``None``: not announced).
    pull_limit_remaining: int | None = None
    #: Why the source stopped starting manifest pulls (its pull limit), when it did: the
    #: images after that point were not copied.
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        """True when every image landed and the source was not stopped early."""
        return self.stopped is None and all(image.status == "pushed" for image in self.images)

    @property
    def bytes_uploaded(self) -> int:
        """Layer bytes sent over the wire, retries included."""
        return sum(blob.bytes_sent for blob in self.blobs)

    @property
    def bytes_resumed(self) -> int:
        """Layer bytes not sent again because resumed uploads' destinations held them."""
        return sum(blob.bytes_resumed for blob in self.blobs)

    def retry_causes(self) -> dict[str, int]:
        """How many retries each cause (service error code or network error) led to."""
        return dict(Counter(event.cause for event in self.retries))

    @property
    def longest_retry_seconds(self) -> float:
        """The longest a request or layer kept failing before it got through (or gave up)."""
        return max((event.elapsed for event in self.retries), default=0.0)

    def summary(self) -> str:
        """One line for a human: images, blobs, bytes, rate and retries."""
        pushed = sum(image.status == "pushed" for image in self.images)
        uploaded = sum(blob.status == "uploaded" for blob in self.blobs)
        present = sum(blob.status == "present" for blob in self.blobs)
        rate = self.bytes_uploaded / self.seconds if self.seconds > 0 else 0.0
        causes = ", ".join(f"{cause} {n}" for cause, n in sorted(self.retry_causes().items()))
        retries = f"{len(self.retries)} retries" + (f" ({causes})" if causes else "")
        if self.longest_retry_seconds >= 1:
            retries += f", failing for up to {self.longest_retry_seconds:.0f}s"
        resumed = (
            f" ({format_bytes(self.bytes_resumed)} more resumed)" if self.bytes_resumed else ""
        )
        line = (
            f"{pushed}/{len(self.images)} images pushed, {uploaded} blobs uploaded, "
            f"{present} already present, {format_bytes(self.bytes_uploaded)}{resumed} in "
            f"{self.seconds:.1f}s ({format_bytes(rate)}/s), {retries}"
        )
        return "".join([line, *self._source_notes()])

    def _source_notes(self) -> list[str]:
        """Clauses of the summary about the source, each present only when it says something."""
        notes = []
        if self.source_resumes or self.source_restarts:
            notes.append(
                f", source streams resumed {self.source_resumes}, restarted {self.source_restarts}"
            )
        if self.pull_limit_remaining is not None:
            notes.append(f", {self.pull_limit_remaining} Docker Hub pulls left")
        for image in self.images:
            if image.source_digest is not None:
                notes.append(
                    f"; {image.destination}: new index {image.digest} "
                    f"(differs from the source's {image.source_digest}: --platform)"
                )
        return notes

    def to_json(self) -> dict[str, Any]:
        """A machine-readable report (the CLI's ``--json``)."""
        return {
            "ok": self.ok,
            "source": self.source,
            "destination": self.destination,
            "seconds": round(self.seconds, 3),
            "bytes_uploaded": self.bytes_uploaded,
            "bytes_resumed": self.bytes_resumed,
            "memory_peak": self.memory_peak,
            "requests": self.requests,
            "source_streams": {
                "resumed": self.source_resumes,
                "restarted": self.source_restarts,
            },
            "pull_limit_remaining": self.pull_limit_remaining,
            "stopped": self.stopped,
            "images": [dataclasses.asdict(image) for image in self.images],
            "blobs": [dataclasses.asdict(blob) for blob in self.blobs],
            "retries": {
                "total": len(self.retries),
                "by_cause": self.retry_causes(),
                "longest_seconds": round(self.longest_retry_seconds, 3),
                "events": [dataclasses.asdict(event) for event in self.retries],
            },
        }
