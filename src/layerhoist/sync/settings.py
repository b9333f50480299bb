"""How a sync runs (the command line's part), and what each mapping's destination is opened with.

The sync file says what to copy where (:class:`~layerhoist.sync.model.SyncConfig`); these
settings say how: the transfer settings of ``copy``, the destination options that override the
file's ``defaults:``, how much runs at once, and whether the destination is asked even when the
state file already knows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from layerhoist.destinations.base import DestinationOptions
from layerhoist.refs import DestinationRef
from layerhoist.sync.model import Destination, SyncConfig, SyncMapping
from layerhoist.transfer.config import PushConfig

#: Mappings copied at once: each holds one source and one destination open and runs one
#: pipeline, whose own ``blob_concurrency`` bounds its blobs.
DEFAULT_MAPPINGS_AT_ONCE = 4
#: Source manifest HEADs in flight at once per mapping while planning.
DEFAULT_HEADS_AT_ONCE = 16


@dataclass(frozen=True, kw_only=True)
class SyncSettings:
    """How ``layerhoist sync`` runs; each default is the command's."""

    #: The transfer settings of every copy (``copy``'s options).
    config: PushConfig = field(default_factory=PushConfig)
    #: Destination options from the command line: each one set overrides ``defaults:``.
    destination: Destination = field(default_factory=Destination)
    #: The registry auth file (``--authfile``); ``None``: ``REGISTRY_AUTH_FILE``, then Docker's.
    auth_file: Path | None = None
    #: ``docker://`` destinations and ``--transport oci``: PATCH chunks of this many bytes
    #: (``--chunk-size``); ``None``: one streamed PUT per blob.
    chunk_size: int | None = None
    #: Ask the destination about every tag, even those the state file confirms (``--verify``).
    verify: bool = False
    mappings_at_once: int = DEFAULT_MAPPINGS_AT_ONCE
    heads_at_once: int = DEFAULT_HEADS_AT_ONCE

    def __post_init__(self) -> None:
        if self.mappings_at_once < 1 or self.heads_at_once < 1:
            raise ValueError("mappings_at_once and heads_at_once must be at least 1")


def destination_settings(sync: SyncConfig, settings: SyncSettings) -> Destination:
    """The file's ``defaults:`` destination with the command line's options over it."""
    overrides = {
        name: value
        for name, value in dataclasses.asdict(settings.destination).items()
        if value is not None
    }
    return dataclasses.replace(sync.destination, **overrides)


def destination_options(
    sync: SyncConfig, mapping: SyncMapping, settings: SyncSettings
) -> DestinationOptions:
    """What ``mapping``'s destination is opened with.

    A ``docker://`` destination whose host has ``registries:`` settings takes its TLS setting
    and credentials from them (else the auth file).
    """
    where = destination_settings(sync, settings)
    registry = sync.registry(mapping.destination.host)
    credentials = registry.credentials
    return DestinationOptions(
        endpoint_url=where.endpoint_url,
        region=where.region,
        profile=where.profile,
        registry_id=where.registry_id,
        create_repository=mapping.create_repositories,
        credentials=(
            f"{credentials.username}:{credentials.password}" if credentials is not None else None
        ),
        authfile=settings.auth_file,
        tls_verify=registry.tls_verify,
        chunk_size=settings.chunk_size,
        transport=mapping.transport,
    )


def state_key(ref: DestinationRef, options: DestinationOptions) -> str:
    """How the state file names a destination repository: the reference and whatever else
    decides which repository it is (endpoint, region, registry id), so that two endpoints or
    accounts sharing a state file never share a row."""
    parts = [str(dataclasses.replace(ref, tag=None))]
    if ref.transport in ("ecr", "ecr-public"):
        for name, value in (
            ("endpoint", options.endpoint_url),
            ("region", options.region),
            ("registry", options.registry_id),
        ):
            if value is not None:
                parts.append(f"{name}={value}")
    return " ".join(parts)
