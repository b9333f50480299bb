"""Destinations: the seam between the push pipeline and a registry's upload protocol.

The pipeline (:mod:`layerhoist.transfer.pipeline`) is written once against two protocols:

- :class:`Destination`: one repository for a run. It prepares itself (the repository exists,
  or is created), says which blobs it lacks, starts one :class:`BlobUpload` per blob, puts
  manifests (a tag only on the last), names its part rules (:class:`PartLimits`) and brings
  the :class:`~layerhoist.transfer.verdicts.ErrorTable` that classifies its own errors.
- :class:`BlobUpload`: one blob being uploaded. It is an object because upload state changes
  with every request (ECR's upload id and byte count; an OCI upload's ``Location``): parts go
  in order through :meth:`BlobUpload.send_part`, then :meth:`BlobUpload.commit` with the
  digest, where "already there" counts as success. Its ``session`` (ECR's upload id, an OCI
  upload's URL) is what a later run takes it up again by, with
  :meth:`Destination.resume_upload`, when the pipeline journaled it.

Each transport keeps its protocol, limits, quotas and error table in its own subpackage
(:mod:`layerhoist.destinations.ecr`, :mod:`layerhoist.destinations.oci_layout`,
:mod:`layerhoist.destinations.registry` for any OCI registry); ECR and ECR Public have two,
their layer API and their ``/v2/`` endpoint (``DestinationOptions.transport``);
:func:`part_limits` and :func:`open_destination` pick it by the reference's transport and
import it only then (the AWS SDK loads for ECR destinations only).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from layerhoist.destinations.base import BlobUpload as BlobUpload
from layerhoist.destinations.base import Destination as Destination
from layerhoist.destinations.base import DestinationOptions as DestinationOptions
from layerhoist.destinations.base import PartLimits as PartLimits
from layerhoist.errors import UsageError

if TYPE_CHECKING:
    from layerhoist.destinations.registry.limits import RegistryUploadSettings
    from layerhoist.destinations.registry.mounts import KnownBlobs
    from layerhoist.refs import DestinationRef
    from layerhoist.transfer.config import PushConfig
    from layerhoist.transfer.pacing import Pacer

__all__ = [
    "BlobUpload",
    "Destination",
    "DestinationOptions",
    "PartLimits",
    "open_destination",
    "part_limits",
]


def part_limits(ref: DestinationRef, options: DestinationOptions | None = None) -> PartLimits:
    """The part rules of the transport ``ref`` (and ``options.transport``) names, known before
    anything is opened."""
    if ref.transport == "oci":
        from layerhoist.destinations.oci_layout.limits import PART_LIMITS as LAYOUT_LIMITS

        return LAYOUT_LIMITS
    if ref.transport == "docker" or (options is not None and options.transport == "oci"):
        from layerhoist.destinations.registry.limits import PART_LIMITS as REGISTRY_LIMITS

        return REGISTRY_LIMITS
    from layerhoist.destinations.ecr.limits import PART_LIMITS

    return PART_LIMITS


def open_destination(
    ref: DestinationRef,
    *,
    config: PushConfig,
    options: DestinationOptions,
    registry: RegistryUploadSettings | None = None,
    known_blobs: KnownBlobs | None = None,
    pacer: Pacer | None = None,
) -> AbstractAsyncContextManager[Destination]:
    """The destination ``ref`` names, as an async context manager holding its connections.

    ``config`` must already have passed ``part_limits(ref).check``. ``options`` concern ECR
    and OCI registries; an OCI layout needs none. For a ``docker://`` destination,
    ``registry`` picks the upload strategy (default: ``options.chunk_size``'s) and
    ``known_blobs`` which repositories of a registry are known to hold a blob, for mounts
    (default: one record per process). An ECR destination paces its requests with ``pacer``
    (default: one of its own, as ``config.pacing`` says), so that destinations of one service
    and region can share theirs and hold its quotas together.
    """
    destination: AbstractAsyncContextManager[Destination]
    if ref.transport == "oci":
        from layerhoist.destinations.oci_layout.destination import OciLayoutDestination

        assert ref.path is not None  # parse_destination sets it for every oci: reference
        destination = OciLayoutDestination(ref.path, config=config)
        return destination
    if ref.transport == "docker":
        from layerhoist.destinations.registry.destination import RegistryDestination

        if registry is None:
            from layerhoist.destinations.registry.limits import RegistryUploadSettings

            try:
                registry = RegistryUploadSettings(chunk_size=options.chunk_size)
            except ValueError as exc:
                raise UsageError(f"--chunk-size: {exc}") from exc
        destination = RegistryDestination(
            ref, config=config, options=options, settings=registry, known_blobs=known_blobs
        )
        return destination
    # Imported here so that a command that never pushes does not load the AWS SDK.
    if options.transport == "oci":
        from layerhoist.destinations.ecr.oci import EcrOciDestination

        destination = EcrOciDestination(ref, config=config, options=options, pacer=pacer)
        return destination
    from layerhoist.destinations.ecr.destination import EcrDestination

    destination = EcrDestination(ref, config=config, options=options, pacer=pacer)
    return destination
