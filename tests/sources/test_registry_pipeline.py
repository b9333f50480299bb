"""A registry as the source of the one push pipeline: docker-registry → embedded ECR Public.

The source connection is cut in the middle of a layer; the layer resumes with ``Range`` and
the image lands with the source's manifest digest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import pytest

from layerhoist.api import prepare_push
from layerhoist.destinations import DestinationOptions
from layerhoist.oci import ClientSettings
from layerhoist.refs import parse_destination, parse_source
from layerhoist.registry import EmbeddedRegistry
from layerhoist.sources.registry import RegistrySource, RegistrySourceOptions
from layerhoist.testing.distribution import Distribution
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.transfer.config import PushConfig
from layerhoist.units import MiB
from registry_proxy import ProxyOptions, RegistryProxy

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("aws_credentials")]

#: More than one 5 MiB part, so the pipeline's parts are cut from the stream.
LAYER_SIZE = 6 * MiB
CUT_AFTER = 3 * MiB
FAST = PushConfig(backoff_initial=0.001, backoff_max=0.01)


async def test_registry_to_ecr_public_resumes_a_cut_layer(
    distribution: Distribution,
    registry: EmbeddedRegistry,
    skopeo: str,
    tmp_path: Path,
) -> None:
    layout = tmp_path / "layout"
    write_oci_layout(layout, images=1, layers_per_image=1, layer_size=LAYER_SIZE)
    digest = distribution.seed(layout, "v1", "mirror/app:v1")
    async with RegistryProxy(
        distribution.host, ProxyOptions(cut_blobs=1, cut_after=CUT_AFTER)
    ) as proxy:
        source = RegistrySource(
            parse_source(f"docker://{proxy.host}/mirror/app:v1"),
            RegistrySourceOptions(client=ClientSettings(tls_verify=False), config=FAST),
        )
        try:
            async with prepare_push(
                source,
                parse_destination("ecr-public:mirror/app"),
                config=FAST,
                options=DestinationOptions(
                    endpoint_url=registry.endpoint_url, create_repository=True
                ),
            ) as prepared:
                result = await prepared.run()
        finally:
            await source.aclose()
    assert result.ok, result
    assert source.stats.resumed == 1
    assert proxy.ranges()[0] == f"bytes={CUT_AFTER}-"
    host = registry.endpoint_url.removeprefix("http://")
    raw = (
        await anyio.run_process(
            [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{host}/mirror/app:v1"]
        )
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
