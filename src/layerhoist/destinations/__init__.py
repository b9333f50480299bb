"""Destinations: the seam between the push pipeline and a registry's upload protocol.

The pipeline (:mod:`layerhoist.transfer.pipeline`) is written once against two protocols:

- :class:`Destination`: one repository for a run. It prepares itself (the repository exists,
  or is created), says which blobs it lacks, starts one :class:`BlobUpload` per blob, puts
  manifests (a tag only on the last), names its part rules (:class:`PartLimits`) and brings
  the :class:`~layerhoist.transfer.verdicts.ErrorTable` that classifies its own errors.
- :class:`BlobUpload`: one blob being uploaded. It is an object because upload state changes
  with every request (ECR's upload id and byte count; an OCI upload's ``Location``): parts go
  in order through :meth:`BlobUpload.send_part`, then :meth:`BlobUpload.commit` with the
  digest, where "already there" counts as success.

Each transport keeps its protocol, limits, quotas and error table in its own subpackage
(:mod:`layerhoist.destinations.ecr`, :mod:`layerhoist.destinations.oci_layout`);
:func:`part_limits` and :func:`open_destination` pick it by the reference's transport and
import it only then (the AWS SDK loads for ECR destinations only).
"""

from __future__ import annotations

from collections.abc import Iterable, Sized
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from layerhoist.errors import UsageError
from layerhoist.image import Descriptor, Manifest

if TYPE_CHECKING:
    from layerhoist.refs import DestinationRef
    from layerhoist.transfer.config import PushConfig
    from layerhoist.transfer.metrics import RequestMetrics
    from layerhoist.transfer.pacing import Pacer
    from layerhoist.transfer.parts import Part
    from layerhoist.transfer.verdicts import ErrorTable


@dataclass(frozen=True, kw_only=True)
class DestinationOptions:
    """How to reach the destination; ``None`` means the standard default of its transport."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    registry_id: str | None = None
    create_repository: bool = False


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

    def encode(self, first_byte: int, data: bytes) -> Sized:
        """Turn a part's bytes into its request payload; called in a worker thread."""

    async def send_part(self, part: Part) -> None:
        """Send one part; the previous part must have been accepted first."""

    async def commit(self, digest: str) -> None:
        """Finish the upload as ``digest``; the destination already holding it is success."""


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

    async def start_upload(self, descriptor: Descriptor) -> BlobUpload:
        """Begin uploading the blob ``descriptor`` describes."""

    async def put_manifest(self, manifest: Manifest, *, tag: str | None) -> None:
        """Store ``manifest`` byte for byte, tagged when ``tag`` is given; already there is fine."""


def part_limits(ref: DestinationRef) -> PartLimits:
    """The part rules of the transport ``ref`` names, known before anything is opened."""
    if ref.transport == "oci":
        from layerhoist.destinations.oci_layout.limits import PART_LIMITS as LAYOUT_LIMITS

        return LAYOUT_LIMITS
    if ref.transport == "docker":
        raise _not_supported_yet(ref)
    from layerhoist.destinations.ecr.limits import PART_LIMITS

    return PART_LIMITS


def open_destination(
    ref: DestinationRef, *, config: PushConfig, options: DestinationOptions
) -> AbstractAsyncContextManager[Destination]:
    """The destination ``ref`` names, as an async context manager holding its connections.

    ``config`` must already have passed ``part_limits(ref).check``. ``options`` concern
    ECR only; an OCI layout needs none.
    """
    destination: AbstractAsyncContextManager[Destination]
    if ref.transport == "oci":
        from layerhoist.destinations.oci_layout.destination import OciLayoutDestination

        assert ref.path is not None  # parse_destination sets it for every oci: reference
        destination = OciLayoutDestination(ref.path, config=config)
        return destination
    if ref.transport == "docker":
        raise _not_supported_yet(ref)
    # Imported here so that a command that never pushes does not load the AWS SDK.
    from layerhoist.destinations.ecr.destination import EcrDestination

    destination = EcrDestination(ref, config=config, options=options)
    return destination


def _not_supported_yet(ref: DestinationRef) -> UsageError:
    return UsageError(
        f"destination {ref}: docker:// (OCI registry) destinations are not supported yet; "
        "write an OCI layout (oci:DIR[:TAG]) or push to ECR (ecr:REPO, ecr-public:REPO)"
    )
