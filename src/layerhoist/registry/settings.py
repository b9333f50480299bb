"""The settings of one embedded registry, fixed for its lifetime (simulation knobs excepted).

Disputed service limits are settings with the stricter value as default where the
sources disagree (see ``shared/ecr-api-notes.md``). Memory bound of the server:
about ``max_body_size`` plus one decoded part per request being received at once;
layers themselves are streamed to disk part by part and never held whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from layerhoist.registry.simulation import SimulationSettings
from layerhoist.registry.validation import ACCOUNT_ID_RE

KiB = 1024
MiB = 1024 * KiB

#: ECR refuses a non-final part smaller than this at CompleteLayerUpload.
DEFAULT_MIN_PART_SIZE = 5 * MiB
#: The largest ``layerPartBlob`` of the API model (the quota pages say 10 MiB).
DEFAULT_MAX_PART_SIZE = 20 * MiB
#: The ``partSize`` InitiateLayerUpload answers with.
DEFAULT_PART_SIZE = 10 * MiB
#: Room for the JSON around a part's base64 text.
BODY_OVERHEAD = 64 * KiB
#: Base64 turns every 3 bytes into 4 characters.
BASE64_IN, BASE64_OUT = 3, 4


def base64_length(nbytes: int) -> int:
    """Characters of the padded base64 text of ``nbytes`` bytes."""
    return -(-nbytes // BASE64_IN) * BASE64_OUT


@dataclass(frozen=True, kw_only=True)
class RegistrySettings:
    """Where the registry keeps its data, where it listens and which service limits it applies."""

    #: Blobs, uploads in progress and the SQLite catalog live here and nowhere else.
    data_dir: Path
    host: str = "127.0.0.1"
    #: 0 picks a free port; read the real one from ``EmbeddedRegistry.endpoint_url``.
    port: int = 0
    #: Network and fault simulation; changeable while running through the admin endpoint.
    simulation: SimulationSettings = field(default_factory=SimulationSettings)
    #: Access key id -> secret; when set, every ECR API request must carry a valid SigV4
    #: signature from one of them. The OCI read side stays anonymous.
    credentials: Mapping[str, str] | None = None
    #: Smallest non-final part accepted at CompleteLayerUpload (LayerPartTooSmallException).
    min_part_size: int = DEFAULT_MIN_PART_SIZE
    #: Largest part UploadLayerPart accepts (InvalidLayerPartException above it).
    max_part_size: int = DEFAULT_MAX_PART_SIZE
    #: ``partSize`` returned by InitiateLayerUpload.
    part_size: int = DEFAULT_PART_SIZE
    #: Largest request body read; larger ones are refused before they are read.
    #: ``None`` derives it from ``max_part_size`` (its base64 text plus JSON room).
    max_body_size: int | None = None
    #: The 12-digit registry id reported in responses and ARNs.
    account_id: str = "123456789012"
    region: str = "us-east-1"
    #: Seconds in-flight requests get to finish when the registry stops.
    shutdown_timeout: float = 5.0
    #: Largest accepted difference between a signature's date and the server's clock.
    signature_max_skew: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.min_part_size <= self.part_size <= self.max_part_size:
            raise ValueError("need 0 < min_part_size <= part_size <= max_part_size")
        if self.max_body_size is not None and self.max_body_size <= 0:
            raise ValueError("max_body_size must be positive")
        if ACCOUNT_ID_RE.fullmatch(self.account_id) is None:
            raise ValueError("account_id must be 12 digits")
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port out of range: {self.port}")
        if self.shutdown_timeout < 0:
            raise ValueError("shutdown_timeout must be >= 0")

    @property
    def body_limit(self) -> int:
        """The effective largest request body, in bytes."""
        if self.max_body_size is not None:
            return self.max_body_size
        return base64_length(self.max_part_size) + BODY_OVERHEAD

    def replace(self, **changes: object) -> RegistrySettings:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
