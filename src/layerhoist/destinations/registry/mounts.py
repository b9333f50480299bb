"""Which repositories of a registry hold a blob this process pushed or found there.

One :class:`KnownBlobs` is shared by every destination a process opens (:data:`PROCESS_BLOBS`,
unless the opener passes its own), so a second repository of the same registry mounts what a
first one received instead of uploading it again. Only facts seen by this process go in: a
blob committed (or mounted) into a repository, or found there by a HEAD.
"""

from __future__ import annotations


class KnownBlobs:
    """Registry host -> blob digest -> the repositories known to hold it (insertion order)."""

    def __init__(self) -> None:
        self._hosts: dict[str, dict[str, dict[str, None]]] = {}

    def add(self, host: str, repository: str, digest: str) -> None:
        """Record that ``repository`` of ``host`` holds ``digest``."""
        self._hosts.setdefault(host, {}).setdefault(digest, {})[repository] = None

    def holders(self, host: str, digest: str, *, besides: str) -> list[str]:
        """The repositories of ``host`` known to hold ``digest``, ``besides`` excluded."""
        repositories = self._hosts.get(host, {}).get(digest, {})
        return [repository for repository in repositories if repository != besides]


#: The default, one per process.
PROCESS_BLOBS = KnownBlobs()
