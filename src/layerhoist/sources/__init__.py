"""Sources: where images come from, each blob handed out as an async stream of chunks.

Three transports, as skopeo names them:

* ``oci:DIR[:TAG]`` — an OCI image layout directory (``oci-layout``, ``index.json``,
  ``blobs/sha256/…``). Tags are the ``org.opencontainers.image.ref.name`` annotations of
  ``index.json``; an entry may be a manifest or a multi-arch index.
* ``docker-archive:FILE[:TAG]`` — ``docker save`` output, read in place (never unpacked). Docker
  25+ and containerd write an OCI layout inside the tar, which is preferred when present; older
  Docker and skopeo write the legacy form (``manifest.json`` with ``Config``/``RepoTags``/
  ``Layers``), for which a Docker schema 2 manifest of the uncompressed layers is synthesized.
* ``docker://[HOST/]REPO[:TAG|@DIGEST]`` — a registry, over the OCI distribution API
  (:mod:`layerhoist.sources.registry`, built on :mod:`layerhoist.oci`).

Without a tag, every tagged image is loaded; a source with a single untagged image yields it with
tag ``None`` (the destination's tag then applies).

``load()`` checks everything that can be checked without reading layer bytes: the layout files,
every manifest (size and digest), and that every blob exists with the size its descriptor
promises. Layer bytes are hashed later, as the pipeline streams them. Each failure is one line
naming the path, tag or digest at fault.

File I/O runs in anyio worker threads. Blobs are read with ``os.pread``, so any number of streams
can share one archive descriptor, and no more than one chunk of a blob is held at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from layerhoist.image import Descriptor, Image
from layerhoist.refs import SourceRef
from layerhoist.sources.docker_archive import DockerArchiveSource
from layerhoist.sources.oci_layout import OciLayoutSource

if TYPE_CHECKING:
    from layerhoist.sources.registry import RegistrySourceOptions

__all__ = [
    "DockerArchiveSource",
    "OciLayoutSource",
    "Source",
    "open_source",
]


class Source(Protocol):
    """Where images come from; the pipeline asks it for images and for blob bytes."""

    #: The source as the user wrote it, for messages and reports.
    description: str

    async def load(self) -> list[Image]:
        """Read and validate the images to push: one for a tag, every tagged image without."""
        ...

    def blob_chunks(
        self, descriptor: Descriptor, *, offset: int = 0, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """Stream a blob from ``offset``: chunks of ``chunk_size`` bytes, the last one shorter."""
        ...

    async def aclose(self) -> None:
        """Release what the source holds open."""
        ...


def open_source(ref: SourceRef, *, registry: RegistrySourceOptions | None = None) -> Source:
    """The source for ``ref``. Nothing is read until :meth:`Source.load`.

    ``registry`` says how a ``docker://`` source is reached (credentials, TLS, all tags); the
    file transports ignore it.
    """
    if ref.transport == "docker":
        # Imported here: a push from local files never loads the registry client.
        from layerhoist.sources.registry import RegistrySource

        return RegistrySource(ref, registry)
    if ref.transport == "oci":
        return OciLayoutSource(ref)
    return DockerArchiveSource(ref)
