"""Counters of what the registry received and answered, for tests, demos and benchmarks."""

from __future__ import annotations

from collections import Counter


class RegistryStats:
    """Request, error and byte counters; :meth:`snapshot` is the admin endpoint's document."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.parts_received = 0
        #: Decoded layer bytes accepted by UploadLayerPart.
        self.part_bytes_received = 0
        self.parts_corrupted = 0
        self.layers_completed = 0
        self.images_put = 0
        #: Tokens the ``/v2/`` token realm handed out.
        self.tokens_issued = 0
        #: Requests refused because their token, issued here, was no longer honoured.
        self.tokens_refused = 0

    def snapshot(self, *, blobs_stored: int, images_stored: int, uploads: int) -> dict[str, object]:
        """The counters as JSON-ready values, with the given store totals."""
        return {
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "faults": dict(self.faults),
            "parts_received": self.parts_received,
            "part_bytes_received": self.part_bytes_received,
            "parts_corrupted": self.parts_corrupted,
            "layers_completed": self.layers_completed,
            "images_put": self.images_put,
            "tokens_issued": self.tokens_issued,
            "tokens_refused": self.tokens_refused,
            "blobs_stored": blobs_stored,
            "images_stored": images_stored,
            "uploads_in_progress": uploads,
        }
