"""The baseline: a plain sequential boto3 loop, the way the AWS docs' examples push.

One image at a time, one blob at a time, parts in order, the whole part read then
sent; BatchCheckLayerAvailability per image to skip what is there. This is what
layerhoist is measured against (``bench_push.py`` runs both side by side).

    python benchmarks/baseline_boto3.py --endpoint-url URL --layout DIR --repository NAME
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

PART_SIZE = 10 * 1024 * 1024


def _blob_path(layout: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hexdigest


def _manifests(layout: Path) -> list[tuple[str, bytes, str]]:
    """(tag, manifest bytes, media type) of every tagged single-arch image."""
    index = json.loads((layout / "index.json").read_text())
    found = []
    for entry in index["manifests"]:
        tag = entry.get("annotations", {}).get("org.opencontainers.image.ref.name")
        raw = _blob_path(layout, entry["digest"]).read_bytes()
        found.append((tag, raw, entry["mediaType"]))
    return found


def push_layout(client: Any, layout: Path, repository: str) -> int:
    """Push every tagged image of ``layout``; returns the layer bytes sent."""
    sent = 0
    for tag, raw, media_type in _manifests(layout):
        manifest = json.loads(raw)
        blobs = [manifest["config"], *manifest["layers"]]
        digests = [b["digest"] for b in blobs]
        response = client.batch_check_layer_availability(
            repositoryName=repository, layerDigests=digests
        )
        available = {
            layer["layerDigest"]
            for layer in response["layers"]
            if layer["layerAvailability"] == "AVAILABLE"
        }
        for blob in blobs:
            if blob["digest"] in available:
                continue
            upload = client.initiate_layer_upload(repositoryName=repository)
            part_size = upload.get("partSize") or PART_SIZE
            offset = 0
            with _blob_path(layout, blob["digest"]).open("rb") as f:
                while True:
                    data = f.read(part_size)
                    if not data and offset:
                        break
                    client.upload_layer_part(
                        repositoryName=repository,
                        uploadId=upload["uploadId"],
                        partFirstByte=offset,
                        partLastByte=offset + len(data) - 1,
                        layerPartBlob=data,
                    )
                    offset += len(data)
                    sent += len(data)
                    if len(data) < part_size:
                        break
            client.complete_layer_upload(
                repositoryName=repository,
                uploadId=upload["uploadId"],
                layerDigests=[blob["digest"]],
            )
        client.put_image(
            repositoryName=repository,
            imageManifest=raw.decode(),
            imageManifestMediaType=media_type,
            imageDigest="sha256:" + hashlib.sha256(raw).hexdigest(),
            imageTag=tag,
        )
    return sent


def main() -> None:
    """Run the baseline once and print a JSON line with its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--layout", type=Path, required=True)
    parser.add_argument("--repository", required=True)
    args = parser.parse_args()
    client = boto3.client(
        "ecr-public",
        endpoint_url=args.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )
    with contextlib.suppress(client.exceptions.RepositoryAlreadyExistsException):
        client.create_repository(repositoryName=args.repository)
    started = time.monotonic()
    sent = push_layout(client, args.layout, args.repository)
    print(json.dumps({"seconds": time.monotonic() - started, "bytes": sent}))


if __name__ == "__main__":
    main()
