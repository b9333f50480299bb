"""Synthetic images for ``layerhoist bench``: layers generated from a seed, streamed, never stored.

A :class:`SyntheticPlan` says what to push: ``images`` images of ``layers`` layers each, layer
*j* of every image ``sizes[j % len(sizes)]`` bytes of incompressible pseudo-random data
(:func:`layerhoist.testing.synthetic.synthetic_chunks`) from its own seed. :func:`make_plan`
computes every layer's digest once, streaming (a manifest must name its layers' digests before
any of them is sent); the plan is small JSON, so the bench computes it once and hands it to every
measured client process.

:class:`SyntheticSource` serves a plan through the :class:`~layerhoist.sources.Source` protocol:
each layer is generated again as it is read, one chunk at a time in a worker thread, and never
exists whole in memory or on disk. The CPU spent generating (which a real source would spend on
reading files instead) is counted in :attr:`SyntheticSource.generation_cpu_seconds`, so that the
bench can leave it out of the client's cost.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from layerhoist.errors import BlobMissingError
from layerhoist.image import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    SCHEMA_VERSION,
    SHA256_PREFIX,
    Descriptor,
    Image,
    parse_manifest,
)
from layerhoist.testing.synthetic import GENERATION_BLOCK, derive_seed, synthetic_chunks
from layerhoist.transfer.rechunk import Rechunker

#: Every timestamp in the generated configs, so the bytes never depend on the clock.
CREATED = "2024-01-01T00:00:00Z"
#: Tags of the images of a plan: ``bench-1``, ``bench-2``, …
TAG_PREFIX = "bench-"
ARCHITECTURE = "amd64"


@dataclass(frozen=True)
class SyntheticLayer:
    """One layer of a plan: ``size`` bytes of the stream of ``seed``, hashing to ``digest``."""

    seed: int
    size: int
    digest: str


@dataclass(frozen=True)
class SyntheticImage:
    """One image of a plan: its tag and its layers, in order."""

    tag: str
    layers: tuple[SyntheticLayer, ...]


@dataclass(frozen=True)
class SyntheticPlan:
    """The images a benchmark pushes, with every layer's digest already known."""

    seed: int
    images: tuple[SyntheticImage, ...]

    @property
    def layer_bytes(self) -> int:
        """Bytes of every layer of every image (configs and manifests not counted)."""
        return sum(layer.size for image in self.images for layer in image.layers)

    @property
    def layer_count(self) -> int:
        """Layers in the plan."""
        return sum(len(image.layers) for image in self.images)

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-ready values (:meth:`from_json` reads them back)."""
        return {
            "seed": self.seed,
            "images": [
                {
                    "tag": image.tag,
                    "layers": [
                        {"seed": layer.seed, "size": layer.size, "digest": layer.digest}
                        for layer in image.layers
                    ],
                }
                for image in self.images
            ],
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> SyntheticPlan:
        """The plan :meth:`to_json` wrote."""
        return cls(
            seed=int(document["seed"]),
            images=tuple(
                SyntheticImage(
                    tag=str(image["tag"]),
                    layers=tuple(
                        SyntheticLayer(
                            seed=int(layer["seed"]),
                            size=int(layer["size"]),
                            digest=str(layer["digest"]),
                        )
                        for layer in image["layers"]
                    ),
                )
                for image in document["images"]
            ),
        )


def _layer_digest(seed: int, size: int) -> str:
    sha = hashlib.sha256()
    for block in synthetic_chunks(seed, size, chunk_size=GENERATION_BLOCK):
        sha.update(block)
    return SHA256_PREFIX + sha.hexdigest()


async def make_plan(
    *, seed: int, images: int, layers: int, sizes: Sequence[int], workers: int
) -> SyntheticPlan:
    """Lay out ``images`` x ``layers`` layers (sizes cycling through ``sizes``) and hash them.

    The layers are generated and hashed in up to ``workers`` threads at once, one block of
    memory each.
    """
    if images <= 0 or layers <= 0 or not sizes or min(sizes) <= 0:
        raise ValueError("images, layers and every size must be positive")
    shapes = [
        [
            (derive_seed(seed, "bench", image, "layer", position), sizes[position % len(sizes)])
            for position in range(layers)
        ]
        for image in range(1, images + 1)
    ]
    digests: dict[tuple[int, int], str] = {}
    limiter = anyio.CapacityLimiter(workers)

    async def hash_layer(layer_seed: int, size: int) -> None:
        digests[layer_seed, size] = await anyio.to_thread.run_sync(
            _layer_digest, layer_seed, size, limiter=limiter
        )

    async with anyio.create_task_group() as tg:
        for shape in shapes:
            for layer_seed, size in shape:
                tg.start_soon(hash_layer, layer_seed, size)
    return SyntheticPlan(
        seed=seed,
        images=tuple(
            SyntheticImage(
                tag=f"{TAG_PREFIX}{number}",
                layers=tuple(SyntheticLayer(s, size, digests[s, size]) for s, size in shape),
            )
            for number, shape in enumerate(shapes, start=1)
        ),
    )


def _encode(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _layer_chunks(layer: SyntheticLayer, *, offset: int, chunk_size: int) -> Iterator[bytes]:
    """Bytes ``offset..`` of ``layer`` in chunks of ``chunk_size`` (the last one shorter).

    The stream has no random access: bytes before ``offset`` are generated and dropped.
    A chunk that is a whole number of blocks costs one copy (the join). No chunk stays
    referenced by the suspended generator: its consumer alone decides when it is freed.
    """
    rechunker = Rechunker(chunk_size)
    position = 0
    for block in synthetic_chunks(layer.seed, layer.size, chunk_size=GENERATION_BLOCK):
        start = position
        position += len(block)
        if position <= offset:
            continue
        rechunker.add(block[offset - start :] if start < offset else block)
        del block
        while (piece := rechunker.take()) is not None:
            handed = [piece]
            del piece
            yield handed.pop()
    if rechunker.held:
        handed = [rechunker.take_rest()]
        yield handed.pop()


def _timed_next(chunks: Iterator[bytes]) -> tuple[bytes | None, float]:
    """The next chunk (``None`` at the end) and the CPU seconds this thread spent making it."""
    started = time.thread_time()
    chunk = next(chunks, None)
    return chunk, time.thread_time() - started


class SyntheticSource:
    """A :class:`~layerhoist.sources.Source` generating the images of a plan as they are read."""

    def __init__(self, plan: SyntheticPlan) -> None:
        self.plan = plan
        shape = {layer.size for image in plan.images for layer in image.layers}
        self.description = (
            f"synthetic:seed={plan.seed},images={len(plan.images)},"
            f"layers={plan.layer_count},sizes={'/'.join(str(s) for s in sorted(shape))}"
        )
        #: CPU seconds spent generating layer bytes (worker threads included).
        self.generation_cpu_seconds = 0.0
        self._layers = {layer.digest: layer for image in plan.images for layer in image.layers}
        self._documents: dict[str, bytes] = {}

    async def load(self) -> list[Image]:
        """The images of the plan, tagged ``bench-1`` … ``bench-N``."""
        loaded = []
        for image in self.plan.images:
            config = _encode(
                {
                    "created": CREATED,
                    "architecture": ARCHITECTURE,
                    "os": "linux",
                    "config": {"Labels": {"org.layerhoist.bench": f"seed={self.plan.seed}"}},
                    "rootfs": {
                        "type": "layers",
                        "diff_ids": [layer.digest for layer in image.layers],
                    },
                }
            )
            config_digest = SHA256_PREFIX + hashlib.sha256(config).hexdigest()
            self._documents[config_digest] = config
            raw = _encode(
                {
                    "schemaVersion": SCHEMA_VERSION,
                    "mediaType": OCI_MANIFEST,
                    "config": {
                        "mediaType": OCI_CONFIG,
                        "digest": config_digest,
                        "size": len(config),
                    },
                    "layers": [
                        {"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size}
                        for layer in image.layers
                    ],
                }
            )
            loaded.append(Image(tag=image.tag, manifest=parse_manifest(raw)))
        return loaded

    async def blob_chunks(
        self, descriptor: Descriptor, *, offset: int = 0, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """Stream a config or a generated layer from ``offset`` in chunks of ``chunk_size``."""
        document = self._documents.get(descriptor.digest)
        if document is not None:
            for start in range(offset, len(document), chunk_size):
                yield document[start : start + chunk_size]
            return
        layer = self._layers.get(descriptor.digest)
        if layer is None:
            raise BlobMissingError(f"{self.description} has no blob {descriptor.digest}")
        chunks = _layer_chunks(layer, offset=offset, chunk_size=chunk_size)
        while True:
            chunk, spent = await anyio.to_thread.run_sync(_timed_next, chunks)
            self.generation_cpu_seconds += spent
            if chunk is None:
                return
            # Handed over, not kept in this frame while it is suspended (see _layer_chunks).
            handed = [chunk]
            del chunk
            yield handed.pop()

    async def aclose(self) -> None:
        """Nothing to release: the source holds no files or connections."""
