"""The layer-upload rules of the embedded registry, driven through a real aioboto3 client."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from layerhoist.registry import EmbeddedRegistry

pytestmark = pytest.mark.anyio

KIB = 1024
MIB = 1024 * KIB
#: Small parts keep these tests fast; the rules are the service's, scaled down.
PART = 4 * KIB
REPO = "team/app"


def sha256_digest(data: bytes) -> str:
    """The OCI digest of ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.fixture
async def small_registry(make_registry: Any) -> AsyncIterator[EmbeddedRegistry]:
    """A registry whose part limits are scaled down to KiB."""
    async with make_registry(min_part_size=PART, part_size=PART, max_part_size=4 * PART) as reg:
        yield reg


@pytest.fixture
async def client(small_registry: EmbeddedRegistry, ecr_client: Any) -> AsyncIterator[Any]:
    """An ecr-public client of ``small_registry`` with ``REPO`` created."""
    async with ecr_client(small_registry.endpoint_url) as ecr_public:
        await ecr_public.create_repository(repositoryName=REPO)
        yield ecr_public


async def part(client: Any, upload_id: str, first: int, data: bytes) -> dict[str, Any]:
    """Send one part starting at byte ``first``."""
    answer: dict[str, Any] = await client.upload_layer_part(
        repositoryName=REPO,
        uploadId=upload_id,
        partFirstByte=first,
        partLastByte=first + len(data) - 1,
        layerPartBlob=data,
    )
    return answer


async def test_upload_in_parts_stores_the_blob_by_digest(
    client: Any, small_registry: EmbeddedRegistry, ecr: Any
) -> None:
    data = os.urandom(3 * PART + 123)
    initiated = await client.initiate_layer_upload(repositoryName=REPO)
    assert initiated["partSize"] == PART
    uuid.UUID(initiated["uploadId"])

    digest = await ecr.upload_layer(client, REPO, data, part_size=PART)

    checked = await client.batch_check_layer_availability(
        repositoryName=REPO, layerDigests=[digest]
    )
    assert checked["layers"] == [
        {
            "layerDigest": digest,
            "layerAvailability": "AVAILABLE",
            "layerSize": len(data),
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
        }
    ]
    assert checked["failures"] == []
    blob = small_registry.settings.data_dir / "blobs" / "sha256" / digest.split(":")[1]
    assert blob.read_bytes() == data
    stats = small_registry.stats()
    assert stats["part_bytes_received"] == len(data)
    assert stats["parts_received"] == 4


async def test_part_answer_carries_the_last_byte_received(client: Any) -> None:
    upload = await client.initiate_layer_upload(repositoryName=REPO)
    answer = await part(client, upload["uploadId"], 0, b"a" * PART)
    assert answer["lastByteReceived"] == PART - 1
    assert answer["uploadId"] == upload["uploadId"]
    assert answer["repositoryName"] == REPO
    assert answer["registryId"] == "123456789012"


async def test_non_consecutive_part_is_refused_with_the_resume_offset(client: Any) -> None:
    upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    await part(client, upload_id, 0, b"a" * PART)

    with pytest.raises(client.exceptions.InvalidLayerPartException) as gap:
        await part(client, upload_id, PART + 1, b"b" * PART)
    assert gap.value.response["lastValidByteReceived"] == PART - 1
    assert gap.value.response["uploadId"] == upload_id
    assert gap.value.response["repositoryName"] == REPO
    assert gap.value.response["registryId"] == "123456789012"

    # Re-sending the part already received is refused the same way, and nothing changes.
    with pytest.raises(client.exceptions.InvalidLayerPartException) as repeat:
        await part(client, upload_id, 0, b"a" * PART)
    assert repeat.value.response["lastValidByteReceived"] == PART - 1

    await part(client, upload_id, PART, b"c")
    done = await client.complete_layer_upload(
        repositoryName=REPO,
        uploadId=upload_id,
        layerDigests=[sha256_digest(b"a" * PART + b"c")],
    )
    assert done["layerDigest"] == sha256_digest(b"a" * PART + b"c")


async def test_first_part_must_start_at_zero(client: Any) -> None:
    upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    with pytest.raises(client.exceptions.InvalidLayerPartException) as refused:
        await part(client, upload_id, 1, b"x")
    assert refused.value.response["lastValidByteReceived"] == -1


async def test_part_range_must_match_its_length(client: Any) -> None:
    upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    with pytest.raises(client.exceptions.InvalidLayerPartException):
        await client.upload_layer_part(
            repositoryName=REPO,
            uploadId=upload_id,
            partFirstByte=0,
            partLastByte=10,
            layerPartBlob=b"short",
        )


async def test_part_above_the_maximum_is_refused(client: Any) -> None:
    upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    with pytest.raises(client.exceptions.InvalidLayerPartException):
        await part(client, upload_id, 0, b"x" * (4 * PART + 1))
    await part(client, upload_id, 0, b"x" * (4 * PART))


async def test_wrong_digest_fails_as_invalid_layer_and_ends_the_upload(client: Any) -> None:
    upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    await part(client, upload_id, 0, b"payload")
    with pytest.raises(client.exceptions.InvalidLayerException):
        await client.complete_layer_upload(
            repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256_digest(b"other")]
        )
    with pytest.raises(client.exceptions.UploadNotFoundException):
        await part(client, upload_id, 7, b"more")
    checked = await client.batch_check_layer_availability(
        repositoryName=REPO, layerDigests=[sha256_digest(b"payload")]
    )
    assert checked["layers"][0]["layerAvailability"] == "UNAVAILABLE"
    assert checked["failures"][0]["failureCode"] == "MissingLayerDigest"


async def test_completing_without_parts_is_an_empty_upload(client: Any) -> None:
    upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    with pytest.raises(client.exceptions.EmptyUploadException):
        await client.complete_layer_upload(
            repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256_digest(b"")]
        )


async def test_small_non_final_part_fails_at_completion(client: Any) -> None:
    upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    data = b"s" * (PART - 1) + b"t" * PART
    await part(client, upload_id, 0, data[: PART - 1])
    await part(client, upload_id, PART - 1, data[PART - 1 :])
    with pytest.raises(client.exceptions.LayerPartTooSmallException):
        await client.complete_layer_upload(
            repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256_digest(data)]
        )


async def test_layer_already_in_the_repository(client: Any, ecr: Any) -> None:
    data = os.urandom(PART + 1)
    await ecr.upload_layer(client, REPO, data, part_size=PART)
    with pytest.raises(client.exceptions.LayerAlreadyExistsException):
        await ecr.upload_layer(client, REPO, data, part_size=PART)


async def test_same_layer_in_another_repository_is_uploaded_there(client: Any, ecr: Any) -> None:
    data = os.urandom(PART + 1)
    await client.create_repository(repositoryName="other")
    await ecr.upload_layer(client, REPO, data, part_size=PART)
    digest = sha256_digest(data)
    before = await client.batch_check_layer_availability(
        repositoryName="other", layerDigests=[digest]
    )
    assert before["layers"][0]["layerAvailability"] == "UNAVAILABLE"
    await ecr.upload_layer(client, "other", data, part_size=PART)
    after = await client.batch_check_layer_availability(
        repositoryName="other", layerDigests=[digest]
    )
    assert after["layers"][0]["layerAvailability"] == "AVAILABLE"


async def test_unknown_upload_id(client: Any) -> None:
    with pytest.raises(client.exceptions.UploadNotFoundException):
        await part(client, str(uuid.uuid4()), 0, b"x")
    with pytest.raises(client.exceptions.UploadNotFoundException):
        await client.complete_layer_upload(
            repositoryName=REPO, uploadId=str(uuid.uuid4()), layerDigests=[sha256_digest(b"x")]
        )


async def test_upload_id_of_another_repository(client: Any) -> None:
    await client.create_repository(repositoryName="other")
    upload_id = (await client.initiate_layer_upload(repositoryName="other"))["uploadId"]
    with pytest.raises(client.exceptions.UploadNotFoundException):
        await part(client, upload_id, 0, b"x")


async def test_missing_repository(client: Any) -> None:
    with pytest.raises(client.exceptions.RepositoryNotFoundException):
        await client.initiate_layer_upload(repositoryName="absent")
    with pytest.raises(client.exceptions.RepositoryNotFoundException):
        await client.batch_check_layer_availability(
            repositoryName="absent", layerDigests=[sha256_digest(b"x")]
        )


async def test_availability_reports_malformed_and_missing_digests(client: Any) -> None:
    missing = sha256_digest(b"never uploaded")
    checked = await client.batch_check_layer_availability(
        repositoryName=REPO, layerDigests=["sha256:xyz", missing]
    )
    failures = {f["layerDigest"]: f["failureCode"] for f in checked["failures"]}
    assert failures == {"sha256:xyz": "InvalidLayerDigest", missing: "MissingLayerDigest"}


async def test_concurrent_uploads_never_mix_bytes(
    client: Any, small_registry: EmbeddedRegistry
) -> None:
    layers = [bytes([n]) * (3 * PART + n) for n in range(8)]
    upload_ids = [
        (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"] for _ in layers
    ]

    async def send(upload_id: str, data: bytes) -> None:
        for first in range(0, len(data), PART):
            await part(client, upload_id, first, data[first : first + PART])
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        for upload_id, data in zip(upload_ids, layers, strict=True):
            group.start_soon(send, upload_id, data)
    for upload_id, data in zip(upload_ids, layers, strict=True):
        done = await client.complete_layer_upload(
            repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256_digest(data)]
        )
        blob = small_registry.settings.data_dir / "blobs" / "sha256" / done["layerDigest"][7:]
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == done["layerDigest"][7:]


async def test_the_service_minimum_of_five_mib(registry: EmbeddedRegistry, ecr_client: Any) -> None:
    async with ecr_client(registry.endpoint_url) as client:
        await client.create_repository(repositoryName=REPO)
        initiated = await client.initiate_layer_upload(repositoryName=REPO)
        assert initiated["partSize"] == 10 * MIB
        short = b"4" * (4 * MIB)
        upload_id = initiated["uploadId"]
        await part(client, upload_id, 0, short)
        await part(client, upload_id, len(short), b"tail")
        with pytest.raises(client.exceptions.LayerPartTooSmallException):
            await client.complete_layer_upload(
                repositoryName=REPO,
                uploadId=upload_id,
                layerDigests=[sha256_digest(short + b"tail")],
            )
        enough = b"5" * (5 * MIB)
        upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        await part(client, upload_id, 0, enough)
        await part(client, upload_id, len(enough), b"tail")
        done = await client.complete_layer_upload(
            repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256_digest(enough + b"tail")]
        )
        assert done["layerDigest"] == sha256_digest(enough + b"tail")


async def test_private_ecr_api_runs_the_same_sequence(
    small_registry: EmbeddedRegistry, ecr_client: Any, ecr: Any
) -> None:
    async with ecr_client(small_registry.endpoint_url, "ecr") as private:
        created = await private.create_repository(repositoryName="private/app")
        assert created["repository"]["imageTagMutability"] == "MUTABLE"
        assert created["repository"]["repositoryArn"].startswith("arn:aws:ecr:us-east-1:")
        digest = await ecr.upload_layer(
            private, "private/app", os.urandom(PART * 2), part_size=PART
        )
        with pytest.raises(private.exceptions.UploadNotFoundException):
            await private.complete_layer_upload(
                repositoryName="private/app", uploadId=str(uuid.uuid4()), layerDigests=[digest]
            )
