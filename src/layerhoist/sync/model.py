"""What a sync file says, once validated: the types the plan and the run work from.

:func:`layerhoist.sync.config.load_config` turns the YAML into these; nothing downstream reads
the YAML or the environment again. Every value is resolved here (a mapping's destination, its
transport, its platforms), so that a mapping is self-contained.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import SpecifierSet

from layerhoist.destinations.base import EcrTransport
from layerhoist.image import Platform
from layerhoist.oci.credentials import Credentials
from layerhoist.refs import DestinationRef, SourceRef


@dataclass(frozen=True, kw_only=True)
class TagRules:
    """Which tags of a source a mapping takes (``tags:`` in the file).

    A tag is taken when it matches one of ``include`` (all tags when empty), none of
    ``exclude``, parses as a version inside ``semver`` (when set); then only the ``latest``
    newest by version are kept (when set). An include pattern matches the whole tag; an exclude
    pattern anywhere in it (:mod:`layerhoist.sync.filters`).
    """

    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()
    semver: SpecifierSet | None = None
    latest: int | None = None


@dataclass(frozen=True, kw_only=True)
class RegistrySettings:
    """How one source registry host is reached (``registries:`` in the file)."""

    #: Check the registry's certificate; ``False`` also allows plain HTTP.
    tls_verify: bool = True
    #: Read from the environment variables the file names; ``None``: the auth file, else
    #: anonymous.
    credentials: Credentials | None = field(default=None, repr=False)
    #: Blobs transferred at once from this host; ``None``: the run's setting.
    concurrency: int | None = None
    #: Requests per second to this host at most; ``None``: unpaced.
    requests_per_second: float | None = None


@dataclass(frozen=True, kw_only=True)
class Destination:
    """How the destinations are reached (``defaults:`` or the command line), as ``copy`` has it."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    registry_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class SyncMapping:
    """One entry of ``mappings:``: a source repository and where its tags go."""

    #: Position in ``mappings:`` (from 0) and the file's line, for messages and the shards.
    index: int
    line: int
    #: ``from:`` as written (``docker.io/library/alpine``, ``oci:/data/layout``).
    origin: str
    #: The source, its tag or digest not used: each chosen tag replaces it.
    source: SourceRef
    #: The destination repository, without a tag: each image keeps its own tag.
    destination: DestinationRef
    #: ``None``: every tag of the source.
    tags: TagRules | None
    transport: EcrTransport = "api"
    create_repositories: bool = False
    #: ``()``: every platform of an index.
    platforms: tuple[Platform, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SyncConfig:
    """A whole validated sync file."""

    path: Path
    mappings: tuple[SyncMapping, ...]
    #: Settings per source registry host, as references name it (``docker.io``).
    registries: Mapping[str, RegistrySettings] = field(default_factory=dict)
    destination: Destination = field(default_factory=Destination)

    def registry(self, host: str | None) -> RegistrySettings:
        """The settings of source registry ``host`` (defaults when the file names none)."""
        if host is None:
            return RegistrySettings()
        return self.registries.get(host, RegistrySettings())
