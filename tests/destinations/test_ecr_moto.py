"""Pushing into the ECR private API of a third-party implementation: moto_server."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import aioboto3
import pytest

from layerhoist.api import push
from layerhoist.destinations import DestinationOptions
from layerhoist.testing.synthetic import write_oci_layout

# The push and the read-back client find dummy credentials in the environment.
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("aws_credentials")]

ACCOUNT = "123456789012"
REGION = "us-east-1"


async def test_push_into_moto_ecr_private(tmp_path: Path, moto_endpoint: str) -> None:
    layout = tmp_path / "layout"
    tags = write_oci_layout(
        layout, images=2, layers_per_image=2, layer_size=6 * 1024 * 1024, seed=21, shared_layers=1
    )
    destination = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mirror/app"
    opts = DestinationOptions(endpoint_url=moto_endpoint, create_repository=True)
    result = await push(f"oci:{layout}", destination, options=opts)
    assert result.ok, [i.error for i in result.images]
    assert [i.destination for i in result.images] == [f"{destination}:{t}" for t in tags]

    index = json.loads((layout / "index.json").read_text())
    expected = {
        m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
        for m in index["manifests"]
    }
    async with aioboto3.Session().client(
        "ecr", endpoint_url=moto_endpoint, region_name=REGION
    ) as client:
        got = await client.batch_get_image(
            repositoryName="mirror/app", imageIds=[{"imageTag": t} for t in tags]
        )
    assert not got["failures"]
    for image in got["images"]:
        manifest = image["imageManifest"].encode()
        assert (
            "sha256:" + hashlib.sha256(manifest).hexdigest()
            == expected[image["imageId"]["imageTag"]]
        )

    again = await push(f"oci:{layout}", destination, options=opts)
    assert again.ok
    assert again.bytes_uploaded == 0
