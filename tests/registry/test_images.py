"""Repositories, PutImage rules and the image read operations of the embedded registry."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from layerhoist.registry import EmbeddedRegistry

pytestmark = pytest.mark.anyio

PART = 1024
REPO = "images/app"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def sha256_digest(data: bytes) -> str:
    """The OCI digest of ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.fixture
async def small_registry(make_registry: Any) -> AsyncIterator[EmbeddedRegistry]:
    """A registry with KiB-sized part limits."""
    async with make_registry(min_part_size=PART, part_size=PART, max_part_size=PART) as reg:
        yield reg


@pytest.fixture
async def client(small_registry: EmbeddedRegistry, ecr_client: Any) -> AsyncIterator[Any]:
    """An ecr-public client with ``REPO`` created."""
    async with ecr_client(small_registry.endpoint_url) as ecr_public:
        await ecr_public.create_repository(repositoryName=REPO)
        yield ecr_public


@pytest.fixture
async def private(small_registry: EmbeddedRegistry, ecr_client: Any) -> AsyncIterator[Any]:
    """An ecr (private) client of the same registry."""
    async with ecr_client(small_registry.endpoint_url, "ecr") as ecr_private:
        yield ecr_private


def docker_manifest(config: bytes, layers: list[bytes]) -> bytes:
    """A Docker schema 2 manifest, formatted unusually so a re-serialisation would show."""
    document = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": DOCKER_CONFIG,
            "size": len(config),
            "digest": sha256_digest(config),
        },
        "layers": [
            {"mediaType": DOCKER_LAYER, "size": len(layer), "digest": sha256_digest(layer)}
            for layer in layers
        ],
    }
    return json.dumps(document, indent=3, sort_keys=True).encode()


def index(manifests: list[tuple[bytes, str]], media_type: str = OCI_INDEX) -> bytes:
    """An index (or Docker manifest list) of (manifest, media type) pairs."""
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {
                "mediaType": kind,
                "size": len(manifest),
                "digest": sha256_digest(manifest),
                "platform": {"architecture": f"arch{n}", "os": "linux"},
            }
            for n, (manifest, kind) in enumerate(manifests)
        ],
    }
    return json.dumps(document).encode()


async def put(client: Any, manifest: bytes, **params: Any) -> dict[str, Any]:
    """PutImage into ``REPO``."""
    answer: dict[str, Any] = await client.put_image(
        repositoryName=REPO, imageManifest=manifest.decode(), **params
    )
    return answer


async def test_push_docker_manifest_and_read_it_back_byte_for_byte(
    client: Any, private: Any, ecr: Any
) -> None:
    layers = [b"layer-one" * 300, b"layer-two"]
    config = b'{"architecture":"amd64","os":"linux"}'
    for blob in (config, *layers):
        await ecr.upload_layer(client, REPO, blob, part_size=PART)
    manifest = docker_manifest(config, layers)

    answer = await put(client, manifest, imageTag="v1", imageManifestMediaType=DOCKER_MANIFEST)

    digest = sha256_digest(manifest)
    assert answer["image"]["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    assert answer["image"]["imageManifest"] == manifest.decode()
    assert answer["image"]["imageManifestMediaType"] == DOCKER_MANIFEST
    got = await private.batch_get_image(repositoryName=REPO, imageIds=[{"imageTag": "v1"}])
    assert got["failures"] == []
    assert got["images"][0]["imageManifest"].encode() == manifest
    assert got["images"][0]["imageId"]["imageDigest"] == digest
    assert got["images"][0]["imageManifestMediaType"] == DOCKER_MANIFEST
    described = await client.describe_images(repositoryName=REPO)
    (detail,) = described["imageDetails"]
    assert detail["imageDigest"] == digest
    assert detail["imageTags"] == ["v1"]
    assert detail["imageSizeInBytes"] == len(config) + sum(map(len, layers))
    assert detail["artifactMediaType"] == DOCKER_CONFIG


async def test_media_type_is_read_from_the_manifest_when_not_given(client: Any, ecr: Any) -> None:
    pushed = await ecr.push_image(client, REPO, layers=[b"oci"], tag="oci", part_size=PART)
    described = await client.describe_images(
        repositoryName=REPO, imageIds=[{"imageDigest": pushed.digest}]
    )
    assert described["imageDetails"][0]["imageManifestMediaType"] == OCI_MANIFEST


async def test_missing_layer_or_config_is_layers_not_found(client: Any, ecr: Any) -> None:
    layer, config = b"present", b'{"config": true}'
    await ecr.upload_layer(client, REPO, layer, part_size=PART)
    with pytest.raises(client.exceptions.LayersNotFoundException, match="sha256:"):
        await put(client, docker_manifest(config, [layer]))
    await ecr.upload_layer(client, REPO, config, part_size=PART)
    with pytest.raises(client.exceptions.LayersNotFoundException):
        await put(client, docker_manifest(config, [layer, b"absent"]))
    await put(client, docker_manifest(config, [layer]))


async def test_layers_of_another_repository_do_not_count(client: Any, ecr: Any) -> None:
    await client.create_repository(repositoryName="elsewhere")
    layer, config = b"only elsewhere", b"{}"
    for blob in (layer, config):
        await ecr.upload_layer(client, "elsewhere", blob, part_size=PART)
    with pytest.raises(client.exceptions.LayersNotFoundException):
        await put(client, docker_manifest(config, [layer]))


@pytest.mark.parametrize(
    ("list_type", "child_type"), [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)]
)
async def test_index_needs_its_children_first(
    client: Any, private: Any, ecr: Any, list_type: str, child_type: str
) -> None:
    config = b"{}"
    await ecr.upload_layer(client, REPO, config, part_size=PART)
    children = []
    for n in range(2):
        layer = f"layer {n}".encode()
        await ecr.upload_layer(client, REPO, layer, part_size=PART)
        document = json.loads(docker_manifest(config, [layer]))
        document["mediaType"] = child_type
        children.append((json.dumps(document).encode(), child_type))
    top = index(children, list_type)

    with pytest.raises(client.exceptions.ReferencedImagesNotFoundException):
        await put(client, top, imageTag="multi")
    for manifest, _ in children:
        await put(client, manifest)
    answer = await put(client, top, imageTag="multi")
    assert answer["image"]["imageManifestMediaType"] == list_type

    got = await private.batch_get_image(repositoryName=REPO, imageIds=[{"imageTag": "multi"}])
    assert got["images"][0]["imageManifest"].encode() == top
    # A child referenced by the index cannot be deleted while the index is there.
    child = sha256_digest(children[0][0])
    deleted = await client.batch_delete_image(
        repositoryName=REPO, imageIds=[{"imageDigest": child}]
    )
    assert deleted["failures"][0]["failureCode"] == "ImageReferencedByManifestList"


async def test_same_image_and_tag_twice_is_image_already_exists(client: Any, ecr: Any) -> None:
    pushed = await ecr.push_image(client, REPO, layers=[b"again"], tag="v1", part_size=PART)
    with pytest.raises(client.exceptions.ImageAlreadyExistsException):
        await put(client, pushed.manifest, imageTag="v1")
    with pytest.raises(client.exceptions.ImageAlreadyExistsException):
        await put(client, pushed.manifest)
    # A new tag on the same image is fine.
    await put(client, pushed.manifest, imageTag="v2")
    described = await client.describe_images(repositoryName=REPO)
    assert described["imageDetails"][0]["imageTags"] == ["v1", "v2"]


async def test_mutable_tag_moves(client: Any, ecr: Any) -> None:
    first = await ecr.push_image(client, REPO, layers=[b"first"], tag="latest", part_size=PART)
    second = await ecr.push_image(client, REPO, layers=[b"second"], tag="latest", part_size=PART)
    tags = await client.describe_image_tags(repositoryName=REPO)
    assert [(t["imageTag"], t["imageDetail"]["imageDigest"]) for t in tags["imageTagDetails"]] == [
        ("latest", second.digest)
    ]
    described = await client.describe_images(
        repositoryName=REPO, imageIds=[{"imageDigest": first.digest}]
    )
    assert "imageTags" not in described["imageDetails"][0]


async def test_immutable_repository_refuses_to_move_a_tag(private: Any, ecr: Any) -> None:
    await private.create_repository(repositoryName="frozen", imageTagMutability="IMMUTABLE")
    first = await ecr.push_image(private, "frozen", layers=[b"one"], tag="v1", part_size=PART)
    second = await ecr.push_image(private, "frozen", layers=[b"two"], tag=None, part_size=PART)
    with pytest.raises(private.exceptions.ImageTagAlreadyExistsException):
        await private.put_image(
            repositoryName="frozen", imageManifest=second.manifest.decode(), imageTag="v1"
        )
    listed = await private.list_images(repositoryName="frozen", filter={"tagStatus": "TAGGED"})
    assert listed["imageIds"] == [{"imageDigest": first.digest, "imageTag": "v1"}]
    untagged = await private.list_images(repositoryName="frozen", filter={"tagStatus": "UNTAGGED"})
    assert untagged["imageIds"] == [{"imageDigest": second.digest}]


async def test_digest_that_does_not_match_the_manifest(client: Any, ecr: Any) -> None:
    pushed = await ecr.push_image(client, REPO, layers=[b"d"], tag=None, part_size=PART)
    with pytest.raises(client.exceptions.ImageDigestDoesNotMatchException):
        await put(client, pushed.manifest, imageTag="x", imageDigest=sha256_digest(b"other"))
    await put(client, pushed.manifest, imageTag="x", imageDigest=pushed.digest)


@pytest.mark.parametrize(
    ("manifest", "params"),
    [
        (b"not json", {}),
        (b"[1, 2]", {}),
        (b'{"schemaVersion": 2, "mediaType": "application/x-unknown"}', {}),
        (b'{"schemaVersion": 2, "config": {"digest": "sha256:zz", "size": 1}, "layers": []}', {}),
        (b'{"schemaVersion": 2, "mediaType": "' + OCI_INDEX.encode() + b'"}', {}),
        (
            b'{"schemaVersion": 2, "mediaType": "' + OCI_INDEX.encode() + b'", "manifests": []}',
            {"imageManifestMediaType": OCI_MANIFEST},
        ),
        (b'{"schemaVersion": 2, "manifests": []}', {"imageTag": "bad tag!"}),
    ],
)
async def test_malformed_manifests_are_invalid_parameters(
    client: Any, manifest: bytes, params: dict[str, str]
) -> None:
    with pytest.raises(client.exceptions.InvalidParameterException):
        await put(client, manifest, **params)


async def test_image_lookups_that_find_nothing(client: Any, private: Any) -> None:
    with pytest.raises(client.exceptions.ImageNotFoundException):
        await client.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "nope"}])
    got = await private.batch_get_image(
        repositoryName=REPO,
        imageIds=[{"imageTag": "nope"}, {"imageDigest": "sha256:bad"}, {}],
    )
    assert [f["failureCode"] for f in got["failures"]] == [
        "ImageNotFound",
        "InvalidImageDigest",
        "MissingDigestAndTag",
    ]


async def test_delete_by_tag_then_by_digest(client: Any, ecr: Any) -> None:
    pushed = await ecr.push_image(client, REPO, layers=[b"del"], tag="a", part_size=PART)
    await put(client, pushed.manifest, imageTag="b")
    deleted = await client.batch_delete_image(repositoryName=REPO, imageIds=[{"imageTag": "a"}])
    assert deleted["imageIds"] == [{"imageDigest": pushed.digest, "imageTag": "a"}]
    assert (await client.describe_images(repositoryName=REPO))["imageDetails"][0]["imageTags"] == [
        "b"
    ]
    deleted = await client.batch_delete_image(
        repositoryName=REPO, imageIds=[{"imageDigest": pushed.digest}]
    )
    assert deleted["imageIds"] == [{"imageDigest": pushed.digest, "imageTag": "b"}]
    assert (await client.describe_images(repositoryName=REPO))["imageDetails"] == []


async def test_repository_lifecycle(client: Any, private: Any, ecr: Any) -> None:
    with pytest.raises(client.exceptions.RepositoryAlreadyExistsException):
        await client.create_repository(repositoryName=REPO)
    described = await private.describe_repositories(repositoryNames=[REPO])
    repository = described["repositories"][0]
    assert repository["repositoryName"] == REPO
    assert repository["repositoryUri"].endswith(f"/{REPO}")
    with pytest.raises(client.exceptions.RepositoryNotFoundException):
        await client.describe_repositories(repositoryNames=["not/there"])

    await ecr.push_image(client, REPO, layers=[b"keep"], tag="v1", part_size=PART)
    with pytest.raises(client.exceptions.RepositoryNotEmptyException):
        await client.delete_repository(repositoryName=REPO)
    await client.delete_repository(repositoryName=REPO, force=True)
    with pytest.raises(client.exceptions.RepositoryNotFoundException):
        await client.describe_images(repositoryName=REPO)


async def test_describe_repositories_pages(client: Any) -> None:
    for n in range(5):
        await client.create_repository(repositoryName=f"page/r{n}")
    paginator = client.get_paginator("describe_repositories")
    names: list[str] = []
    pages = 0
    async for page in paginator.paginate(PaginationConfig={"PageSize": 2}):
        pages += 1
        names.extend(r["repositoryName"] for r in page["repositories"])
    assert names == [REPO] + [f"page/r{n}" for n in range(5)]
    assert pages == 3
    with pytest.raises(client.exceptions.InvalidParameterException):
        await client.describe_repositories(nextToken="garbage!")


async def test_authorization_tokens(client: Any, private: Any, small_registry: Any) -> None:
    public = await client.get_authorization_token()
    user, _, password = base64.b64decode(
        public["authorizationData"]["authorizationToken"]
    ).partition(b":")
    assert user == b"AWS"
    assert password
    answer = await private.get_authorization_token()
    (data,) = answer["authorizationData"]
    assert data["proxyEndpoint"] == small_registry.endpoint_url
    # Tokens last 12 hours, as the service's do.
    assert data["expiresAt"] - datetime.now(UTC) > timedelta(hours=11)
