"""Where the bench pushes: the embedded registry in a child process, or a real repository.

A target names the scratch repository of each run, gives the client processes their
environment (credentials), and reads what the registry's side of a run cost where that is
visible: the embedded registry's counters and CPU time, or the counters of an endpoint given
with ``--endpoint-url`` that serves them. A real repository's scratch repositories are deleted
at the end unless ``--keep``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import aioboto3
import aiohttp
from botocore.exceptions import ClientError

from layerhoist.bench.measure import peak_rss, process_cpu
from layerhoist.bench.options import SCRATCH_PREFIX, BenchSettings, NetworkProfile
from layerhoist.destinations.ecr.errors import error_code
from layerhoist.destinations.ecr.limits import api_region
from layerhoist.refs import DestinationRef
from layerhoist.registry.admin import STATS_PATH
from layerhoist.registry.launcher import RegistryProcess, client_env

#: Characters of the random id that keeps one run's scratch repositories apart from another's.
RUN_ID_LENGTH = 8
#: Credentials handed to clients of the embedded registry, which accepts any key: real ones
#: must never be sent to it.
#: What deleting a scratch repository that is already gone answers: nothing left to do.
NOT_FOUND = "RepositoryNotFoundException"
#: A registry's counters (its admin statistics), its CPU seconds and its event loop's, each
#: ``None`` where not visible.
Counters = tuple[dict[str, Any] | None, float | None, float | None]


class Target(Protocol):
    """What the sweep pushes to."""

    @property
    def description(self) -> str:
        """What the pushes go to, for people."""
        ...

    @property
    def endpoint_url(self) -> str | None:
        """The API endpoint clients use (``None``: the service's own)."""
        ...

    @property
    def env(self) -> Mapping[str, str]:
        """The environment of client processes (their credentials)."""
        ...

    def destination(self, name: str) -> str:
        """The destination reference of scratch repository ``name``."""
        ...

    async def counters(self) -> Counters:
        """The registry's counters and CPU seconds (process, event loop), where visible."""
        ...


async def _admin_stats(session: aiohttp.ClientSession, endpoint: str) -> dict[str, Any] | None:
    try:
        async with session.get(endpoint.rstrip("/") + STATS_PATH) as response:
            if response.status != 200:
                return None
            stats: dict[str, Any] = await response.json()
            return stats
    except (aiohttp.ClientError, ValueError):
        return None


class EmbeddedTarget:
    """The embedded registry in a child process, simulating a network profile."""

    def __init__(
        self,
        registry: RegistryProcess,
        session: aiohttp.ClientSession,
        profile: NetworkProfile,
        args: Sequence[str],
    ) -> None:
        self._registry = registry
        self._session = session
        self.endpoint_url: str | None = registry.endpoint_url
        self.description = f"embedded registry, {profile.name} profile ({' '.join(args)})"
        self.env = client_env()

    def destination(self, name: str) -> str:
        """See :class:`Target`."""
        return f"ecr-public:{SCRATCH_PREFIX}/{name}"

    async def counters(self) -> Counters:
        """See :class:`Target`."""
        pid = self._registry.pid
        stats = await _admin_stats(self._session, self._registry.endpoint_url)
        # The registry's event loop runs in its main thread, whose id is the process id.
        process, loop = process_cpu(pid), process_cpu(pid, thread=pid)
        return (
            stats,
            None if process is None else process.total,
            None if loop is None else loop.total,
        )

    def peak_rss(self) -> int | None:
        """The registry's peak RSS so far."""
        return peak_rss(self._registry.pid)


class RemoteTarget:
    """A real repository (or the endpoint of ``--endpoint-url``) and its scratch repositories."""

    def __init__(
        self, settings: BenchSettings, ref: DestinationRef, session: aiohttp.ClientSession
    ) -> None:
        self._settings = settings
        self._ref = ref
        self._session = session
        self._prefix = f"{ref.repository}/{SCRATCH_PREFIX}-{uuid.uuid4().hex[:RUN_ID_LENGTH]}"
        self.endpoint_url = settings.endpoint_url
        self.description = f"{ref} (scratch repositories {self._prefix}/...)"
        self.env = dict(os.environ)
        #: Every scratch repository named so far.
        self.created: list[str] = []

    def destination(self, name: str) -> str:
        """See :class:`Target`."""
        repository = f"{self._prefix}/{name}"
        self.created.append(repository)
        return str(dataclasses.replace(self._ref, repository=repository, tag=None))

    async def counters(self) -> Counters:
        """See :class:`Target`."""
        if self.endpoint_url is None:
            return None, None, None
        return await _admin_stats(self._session, self.endpoint_url), None, None

    async def delete_scratch(self) -> list[str]:
        """Delete every scratch repository made, with its images; return the ones that failed."""
        ref = self._ref
        registry_id = self._settings.registry_id or ref.registry_id
        extra = {"registryId": registry_id} if registry_id else {}
        failed = []
        session = aioboto3.Session(profile_name=self._settings.aws_profile)
        async with session.client(
            ref.service,
            region_name=api_region(ref, self._settings.region),
            endpoint_url=self.endpoint_url,
        ) as client:
            for repository in self.created:
                try:
                    await client.delete_repository(repositoryName=repository, force=True, **extra)
                except Exception as exc:
                    gone = isinstance(exc, ClientError) and error_code(exc) == NOT_FOUND
                    if not gone:
                        failed.append(f"{repository}: {exc}")
        return failed


def push_command(layout: Path, endpoint: str, repository: str, *extra: str) -> list[str]:
    """The command line of ``layerhoist push`` of a whole layout into an embedded registry.

    Quiet, creating the repository, in this interpreter; ``extra`` options are appended.
    """
    return [
        sys.executable,
        "-m",
        "layerhoist",
        "push",
        f"oci:{layout}",
        f"ecr-public:{repository}",
        "--endpoint-url",
        endpoint,
        "--create-repo",
        "--quiet",
        *extra,
    ]
