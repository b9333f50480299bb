"""Chaos on both sides of a mirror: registry -> registry through faults and dropped connections.

The source is an embedded registry seeded through its ``/v2/`` side by skopeo; the destination
is a second embedded registry reached through the ECR Public JSON API. Both inject HTTP 500s
and dropped connections (on the source, in the middle of blob reads too, which the copy resumes
with ``Range``); the destination also corrupts uploaded parts. Every image must land intact:
once both registries are calm, skopeo reads each one back and its digest equals the source's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

import layerhoist
from layerhoist.destinations import DestinationOptions
from layerhoist.oci.client import ClientSettings
from layerhoist.registry import EmbeddedRegistry
from layerhoist.sources.registry import RegistrySourceOptions
from layerhoist.testing.synthetic import REF_NAME_ANNOTATION, write_oci_layout

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.usefixtures("aws_credentials")]

IMAGES = 20
LAYERS_PER_IMAGE = 2
#: Large enough that a dropped blob read is likely to break in the middle of the bytes.
LAYER_SIZE = 256 * 1024
SOURCE_REPOSITORY = "upstream/app"
DESTINATION_REPOSITORY = "mirror/app"
#: The faults of each side; seeded, so a failure can be replayed.
SOURCE_CHAOS = {"fault_rate": 0.1, "drop_rate": 0.15, "seed": 4321}
DESTINATION_CHAOS = {"fault_rate": 0.1, "drop_rate": 0.05, "corrupt_rate": 0.05, "seed": 8765}
CALM = {"fault_rate": 0.0, "drop_rate": 0.0, "corrupt_rate": 0.0}
#: Generous retries with short waits: the test is about landing intact, not about pacing.
RETRIES = layerhoist.PushConfig(
    backoff_initial=0.001,
    backoff_max=0.01,
    layer_attempts=20,
    part_attempts=10,
    retry_budget=10_000,
)


def host(registry: EmbeddedRegistry) -> str:
    """``127.0.0.1:PORT`` of a registry, as docker:// references name it."""
    return registry.endpoint_url.removeprefix("http://")


async def skopeo_digest(skopeo: str, reference: str) -> str:
    """The digest of the manifest skopeo reads (the registries run on this event loop)."""
    command = [skopeo, "inspect", "--raw", "--tls-verify=false", reference]
    raw = (await anyio.run_process(command)).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()


async def test_mirror_through_chaos_on_both_sides(
    tmp_path: Path, make_registry: Any, skopeo: str
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(
        layout, images=IMAGES, layers_per_image=LAYERS_PER_IMAGE, layer_size=LAYER_SIZE, seed=77
    )
    index = json.loads((layout / "index.json").read_bytes())
    expected = {m["annotations"][REF_NAME_ANNOTATION]: m["digest"] for m in index["manifests"]}
    async with (
        make_registry(data_dir=tmp_path / "source") as source,
        make_registry(data_dir=tmp_path / "destination") as destination,
    ):
        for tag in expected:
            await anyio.run_process(
                [
                    *(skopeo, "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"),
                    *(f"oci:{layout}:{tag}", f"docker://{host(source)}/{SOURCE_REPOSITORY}:{tag}"),
                ]
            )
        source.simulator.update(SOURCE_CHAOS)
        destination.simulator.update(DESTINATION_CHAOS)
        result = await layerhoist.copy(
            f"docker://{host(source)}/{SOURCE_REPOSITORY}",
            f"ecr-public:{DESTINATION_REPOSITORY}",
            config=RETRIES,
            options=DestinationOptions(
                endpoint_url=destination.endpoint_url, create_repository=True
            ),
            source_options=RegistrySourceOptions(
                all_tags=True, client=ClientSettings(tls_verify=False)
            ),
        )
        assert result.ok, [image.error for image in result.images if image.error]
        assert len(result.images) == IMAGES
        # The faults were felt: the copy retried rather than being lucky.
        assert result.retries, result.summary()
        # Blob reads dropped in the middle went on from the last byte received.
        assert result.source_resumes > 0, result.summary()
        # The chaos was aimed at the copy: the reader that checks its result gets calm
        # registries (faults reach /v2/ reads too).
        source.simulator.update(CALM)
        destination.simulator.update(CALM)
        for tag, digest in expected.items():
            reference = f"docker://{host(destination)}/{DESTINATION_REPOSITORY}:{tag}"
            assert await skopeo_digest(skopeo, reference) == digest
