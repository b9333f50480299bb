"""What every destination implements: the :class:`Destination` and :class:`BlobUpload`
protocols, its :class:`PartLimits`, and the :class:`DestinationOptions` of how to reach it.

Kept apart from the package's factories so that a transport's modules import these without
importing the package that picks the transport.
"""

from __future__ import annotations

from collections.abc import Iterable, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from layerhoist.errors import UsageError
from layerhoist.image import Descriptor, Manifest
from layerhoist.units import MiB

if TYPE_CHECKING:
    from layerhoist.transfer.config import PushConfig
    from layerhoist.transfer.metrics import RequestMetrics
    from layerhoist.transfer.pacing import Pacer
    from layerhoist.transfer.parts import Part
    from layerhoist.transfer.verdicts import ErrorTable

#: How an ECR or ECR Public destination is written: its JSON layer API, or its ``/v2/``
#: (OCI distribution) endpoint.
EcrTransport = Literal["api", "oci"]
#: The transports ``--transport`` accepts.
ECR_TRANSPORTS: tuple[EcrTransport, ...] = ("api", "oci")


@dataclass(frozen=True, kw_only=True)
class DestinationOptions:
    """How to reach the destination; ``None`` means the standard default of its transport."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    registry_id: str | None = None
    create_repository: bool = False
    #: ``USER[:PASS]`` for an OCI registry (``--dest-creds``); ``None``: the auth file.
    credentials: str | None = field(default=None, repr=False)
    #: The auth file to read registry credentials from (``--authfile``); ``None``:
    #: ``REGISTRY_AUTH_FILE``, then ``~/.docker/config.json``.
    authfile: Path | None = None
    #: Check the registry's certificate; ``False`` also allows plain HTTP (``--dest-tls-verify``).
    tls_verify: bool = True
    #: Upload each blob to an OCI registry as PATCH chunks of this many bytes
    #: (``--chunk-size``); ``None``: one streamed PUT per blob.
    chunk_size: int | None = None
    #: ECR and ECR Public: through the layer API (``api``, the default) or their ``/v2/``
    #: endpoint (``oci``) (``--transport``); other destinations have one transport each.
    transport: EcrTransport = "api"

    def __post_init__(self) -> None:
        if self.transport not in ECR_TRANSPORTS:
            raise UsageError(
                f"--transport must be one of {', '.join(ECR_TRANSPORTS)}, not {self.transport!r}"
            )


@dataclass(frozen=True, kw_only=True)
class PartLimits:
    """A transport's rules for the parts of one blob upload, and what a part costs in memory.

    A part size asked for by the user must lie in ``[min_part_size, max_part_size]``; without
    one, the size the service offers (or ``preferred_max_part_size``) is clamped to
    ``[min_part_size, preferred_max_part_size]``, each bound overridable by the configuration.
    """

    #: The smallest part the service accepts, the final part excepted.
    min_part_size: int
    #: The largest part the service accepts.
    max_part_size: int
    #: The upper clamp when the user names no part size (a stricter documented value).
    preferred_max_part_size: int
    #: Bytes of request payload per byte of blob (``4/3`` when parts travel as base64).
    payload_expansion: float

    def check(self, config: PushConfig) -> None:
        """Raise :class:`~layerhoist.errors.UsageError` if ``config`` breaks these limits."""
        low = config.min_part_size or self.min_part_size
        high = config.max_part_size or self.preferred_max_part_size
        accepted = f"{self.min_part_size}..{self.max_part_size} bytes, the parts it accepts"
        if low > high:
            raise UsageError(f"min_part_size {low} exceeds max_part_size {high}")
        if high > self.max_part_size:
            raise UsageError(f"max_part_size {high} is beyond the destination's {accepted}")
        size = config.part_size
        if size is not None and not self.min_part_size <= size <= self.max_part_size:
            raise UsageError(f"part_size {size} is outside the destination's {accepted}")

    def part_size(self, config: PushConfig, *, offered: int | None) -> int:
        """The part size of one upload, given what the service ``offered`` (if anything)."""
        if config.part_size is not None:
            return config.part_size
        low = config.min_part_size or self.min_part_size
        high = config.max_part_size or self.preferred_max_part_size
        return max(low, min(high, offered if offered is not None else high))


class BlobUpload(Protocol):
    """One blob on its way into the destination: parts in order, then the commit."""

    #: Bytes per part (the last may be shorter); fixed when the upload starts.
    part_size: int

    @property
    def session(self) -> str | None:
        """What a later run resumes this upload by, as it stands after the last part sent
        (ECR: the upload id; an OCI registry: the upload URL); ``None``: it cannot be resumed."""

    def encode(self, first_byte: int, data: bytes) -> Sized:
        """Turn a part's bytes into its request payload; called in a worker thread."""

    async def send_part(self, part: Part) -> None:
        """Send one part; the previous part must have been accepted first."""

    async def commit(self, digest: str) -> None:
        """Finish the upload as ``digest``; the destination already holding it is success."""


@dataclass(frozen=True)
class ResumedUpload:
    """An upload an earlier run journaled, taken up again by :meth:`Destination.resume_upload`."""

    upload: BlobUpload
    #: Bytes the session holds, as the destination reports them; ``None`` when it cannot tell
    #: before a part is sent (ECR's layer API has no status call): the journal's offset is
    #: tried, and the first part's answer confirms it or raises :class:`ResumeRefused`.
    acknowledged: int | None


class ResumeRefused(Exception):
    """The first part sent on a resumed upload was refused: the session does not continue
    where it was tried.

    ``held`` is the bytes the session does hold, for the pipeline to resume from there;
    ``None`` when there is nothing to resume (the session expired or is unknown, or holds an
    offset the transport cannot continue from): the blob starts afresh.
    """

    def __init__(self, message: str, *, held: int | None) -> None:
        super().__init__(message)
        self.held = held


class Destination(Protocol):
    """One repository of one registry, as the pipeline sees it."""

    #: The destination as the user wrote it (without a tag), for reports.
    description: str
    #: Requests made, errors and latency percentiles per operation.
    metrics: RequestMetrics
    #: Part sizes this transport accepts and the memory a part's payload costs.
    limits: PartLimits
    #: Classifies the errors this transport raises.
    errors: ErrorTable
    #: Client-side pacing of its requests, where the transport has published quotas.
    pacer: Pacer | None

    def target_name(self, tag: str | None) -> str:
        """How the image tagged ``tag`` (``None``: by digest) is named in reports."""

    async def prepare(self, *, create: bool) -> None:
        """Check the repository exists; create it when ``create`` is set."""

    async def missing_blobs(self, digests: Iterable[str]) -> set[str]:
        """The ``digests`` the repository does not hold yet."""

    async def start_upload(self, descriptor: Descriptor, *, resumable: bool = False) -> BlobUpload:
        """Begin uploading the blob ``descriptor`` describes.

        ``resumable`` asks for an upload a later run can resume (one with a
        :attr:`~BlobUpload.session`), where the transport has one that costs more requests.
        """

    async def resume_upload(
        self, descriptor: Descriptor, *, session: str, part_size: int
    ) -> ResumedUpload | None:
        """Take up the upload ``session`` an earlier run journaled, in parts of ``part_size``.

        ``None`` when it cannot be resumed: the session expired or is unknown, is not one of
        this destination's, or the transport cannot resume at all. The blob then starts afresh.
        """

    async def put_manifest(self, manifest: Manifest, *, tag: str | None) -> None:
        """Store ``manifest`` byte for byte, tagged when ``tag`` is given; already there is fine."""


#: Parts that travel as they were read, with no minimum size: an OCI layout's files and an OCI
#: registry's requests take a write or a chunk of any length. A part is held whole until it is
#: written or on the wire, so past the maximum a larger part gains nothing and only takes
#: memory from the other blobs in flight; the default is large enough that the thread hop or
#: the hand-over to the connection costs nothing next to hashing, and small enough that the
#: default memory budget keeps every blob worker busy.
RAW_PART_LIMITS = PartLimits(
    min_part_size=1,
    max_part_size=64 * MiB,
    preferred_max_part_size=8 * MiB,
    payload_expansion=0.0,
)

#: Bytes handed to an HTTP connection per write when a part is sent: a part written whole
#: would sit in the transport's buffer (and, chunk-encoded, in a copy of it) after the
#: pipeline has released its memory; slices keep what the connection holds to one of them.
WIRE_SLICE = 1 * MiB
