"""SigV4 and bad input: the registry refuses cleanly, keeps serving, and stays in its data dir."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from layerhoist.registry import EmbeddedRegistry

pytestmark = pytest.mark.anyio

PART = 1024
REPO = "safe/app"
TARGET = "SpencerFrontendService."
AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
INVALID = "InvalidParameterException"
CATALOG_FILES = {"catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm"}


def sha256_digest(data: bytes) -> str:
    """The OCI digest of ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.fixture
async def small_registry(make_registry: Any) -> AsyncIterator[EmbeddedRegistry]:
    """A registry with small part limits and a small body limit."""
    async with make_registry(
        min_part_size=PART, part_size=PART, max_part_size=PART, max_body_size=64 * 1024
    ) as reg:
        yield reg


@pytest.fixture
async def client(small_registry: EmbeddedRegistry, ecr_client: Any) -> AsyncIterator[Any]:
    """An ecr-public client with ``REPO`` created."""
    async with ecr_client(small_registry.endpoint_url) as ecr_public:
        await ecr_public.create_repository(repositoryName=REPO)
        yield ecr_public


async def post(
    registry: EmbeddedRegistry, operation: str | None, body: bytes
) -> tuple[int, dict[str, Any]]:
    """POST a raw JSON 1.1 request; the status and the decoded answer."""
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if operation is not None:
        headers["X-Amz-Target"] = operation
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{registry.endpoint_url}/", data=body, headers=headers) as response,
    ):
        return response.status, json.loads(await response.read())


# --- SigV4 -----------------------------------------------------------------------------------


@pytest.fixture
async def signed_registry(make_registry: Any) -> AsyncIterator[EmbeddedRegistry]:
    """A registry that requires SigV4 signatures by ``AKID``."""
    async with make_registry(credentials={AKID: SECRET}) as reg:
        yield reg


async def test_correct_signature_is_accepted(
    signed_registry: EmbeddedRegistry, ecr_client: Any
) -> None:
    for service in ("ecr-public", "ecr"):
        async with ecr_client(
            signed_registry.endpoint_url,
            service,
            aws_access_key_id=AKID,
            aws_secret_access_key=SECRET,
        ) as client:
            await client.describe_repositories()


@pytest.mark.parametrize(
    ("access_key", "secret", "code"),
    [
        (AKID, "not-the-secret", "InvalidSignatureException"),
        ("AKIDUNKNOWN", SECRET, "UnrecognizedClientException"),
    ],
)
async def test_bad_credentials_are_refused(
    signed_registry: EmbeddedRegistry, ecr_client: Any, access_key: str, secret: str, code: str
) -> None:
    async with ecr_client(
        signed_registry.endpoint_url, aws_access_key_id=access_key, aws_secret_access_key=secret
    ) as client:
        with pytest.raises(ClientError) as refused:
            await client.create_repository(repositoryName=REPO)
    assert refused.value.response["Error"]["Code"] == code
    assert signed_registry.stats()["images_stored"] == 0


async def test_unsigned_request_is_refused(
    signed_registry: EmbeddedRegistry, ecr_client: Any
) -> None:
    config = Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1})
    async with ecr_client(signed_registry.endpoint_url, config=config) as client:
        with pytest.raises(ClientError) as refused:
            await client.describe_repositories()
    assert refused.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


async def test_signed_part_upload(
    signed_registry: EmbeddedRegistry, ecr_client: Any, ecr: Any
) -> None:
    async with ecr_client(
        signed_registry.endpoint_url, aws_access_key_id=AKID, aws_secret_access_key=SECRET
    ) as client:
        await client.create_repository(repositoryName=REPO)
        data = os.urandom(300 * 1024)
        assert await ecr.upload_layer(client, REPO, data, part_size=len(data)) == sha256_digest(
            data
        )


# --- Bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../escape",
        "/absolute",
        "a/../../b",
        "UPPER",
        "a//b",
        "trailing/",
        "a" * 257,
        "spaces in name",
        "nul\x00byte",
        "dot.",
    ],
)
async def test_hostile_repository_names_are_invalid_parameters(
    client: Any, small_registry: EmbeddedRegistry, name: str
) -> None:
    with pytest.raises(client.exceptions.InvalidParameterException):
        await client.create_repository(repositoryName=name)
    with pytest.raises(client.exceptions.InvalidParameterException):
        await client.initiate_layer_upload(repositoryName=name)
    assert [
        r["repositoryName"] for r in (await client.describe_repositories())["repositories"]
    ] == [REPO]


async def test_malformed_digests_and_ids(client: Any) -> None:
    upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    await client.upload_layer_part(
        repositoryName=REPO, uploadId=upload_id, partFirstByte=0, partLastByte=0, layerPartBlob=b"x"
    )
    for digest in ("sha256:abc", "md5:" + "0" * 32, "sha256:" + "A" * 64, "../" + "0" * 64):
        with pytest.raises(client.exceptions.InvalidParameterException):
            await client.complete_layer_upload(
                repositoryName=REPO, uploadId=upload_id, layerDigests=[digest]
            )
    with pytest.raises(client.exceptions.InvalidParameterException):
        await client.upload_layer_part(
            repositoryName=REPO,
            uploadId="../../etc/passwd",
            partFirstByte=0,
            partLastByte=0,
            layerPartBlob=b"x",
        )
    done = await client.complete_layer_upload(
        repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256_digest(b"x")]
    )
    assert done["layerDigest"] == sha256_digest(b"x")


@pytest.mark.parametrize(
    ("target", "body", "status", "code"),
    [
        (TARGET + "CreateRepository", b"{not json", 400, "SerializationException"),
        (TARGET + "CreateRepository", b"[]", 400, "SerializationException"),
        (TARGET + "CreateRepository", b"\xff\xfe", 400, "SerializationException"),
        (TARGET + "CreateRepository", b'{"repositoryName": 7}', 400, INVALID),
        (TARGET + "GetRegistryCatalogData", b"{}", 400, "UnknownOperationException"),
        (TARGET + "ListImages", b"{}", 400, "UnknownOperationException"),
        ("Nope.CreateRepository", b"{}", 400, "UnknownOperationException"),
        (None, b"{}", 400, "UnknownOperationException"),
        (
            TARGET + "CreateRepository",
            b"{" + b" " * 70_000 + b"}",
            413,
            "InvalidParameterException",
        ),
    ],
)
async def test_malformed_requests_get_clean_errors(
    small_registry: EmbeddedRegistry, target: str | None, body: bytes, status: int, code: str
) -> None:
    answer_status, answer = await post(small_registry, target, body)
    assert (answer_status, answer["__type"]) == (status, code)
    ok_status, _ = await post(small_registry, TARGET + "DescribeRepositories", b"{}")
    assert ok_status == 200


async def raw_part(
    registry: EmbeddedRegistry, upload_id: str, first: int, blob_json: str, *, blob_first: bool
) -> tuple[int, dict[str, Any]]:
    """An UploadLayerPart body written by hand, with ``layerPartBlob`` first or last."""
    fields = {
        "repositoryName": REPO,
        "uploadId": upload_id,
        "partFirstByte": first,
        "partLastByte": first + len(base64.b64decode(json.loads(blob_json))) - 1,
    }
    rest = json.dumps(fields)[1:-1]
    blob = f'"layerPartBlob" :  {blob_json}'
    text = "{" + (f"{blob}, {rest}" if blob_first else f"{rest},{blob}") + "}"
    return await post(registry, TARGET + "UploadLayerPart", text.encode())


async def test_part_bodies_in_any_field_order_and_with_escapes(
    client: Any, small_registry: EmbeddedRegistry
) -> None:
    upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    data = bytes(range(256)) * 4  # its base64 text holds '/' and '+'
    text = base64.b64encode(data).decode()
    escaped = json.dumps(text).replace("/", "\\/")
    assert "\\/" in escaped
    status, answer = await raw_part(small_registry, upload_id, 0, escaped, blob_first=True)
    assert (status, answer["lastByteReceived"]) == (200, len(data) - 1)
    status, answer = await raw_part(
        small_registry, upload_id, len(data), json.dumps(text), blob_first=False
    )
    assert status == 200
    done = await client.complete_layer_upload(
        repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256_digest(data * 2)]
    )
    assert done["layerDigest"] == sha256_digest(data * 2)

    for bad in ('"not base64!"', '"QUJD\\u00e9"', "12", "null"):
        body = json.dumps(
            {"repositoryName": REPO, "uploadId": upload_id, "partFirstByte": 0, "partLastByte": 2}
        )
        status, answer = await post(
            small_registry,
            TARGET + "UploadLayerPart",
            body[:-1].encode() + b', "layerPartBlob": ' + bad.encode() + b"}",
        )
        assert (status, answer["__type"]) == (400, "InvalidParameterException")


def tree(root: Path) -> set[Path]:
    """Every path under ``root``."""
    return set(root.rglob("*"))


async def test_nothing_is_written_outside_the_data_dir(
    tmp_path: Path, make_registry: Any, ecr_client: Any, ecr: Any
) -> None:
    data_dir = tmp_path / "inside" / "data"
    async with make_registry(data_dir=data_dir, min_part_size=PART, part_size=PART) as reg:
        before = tree(tmp_path) - tree(data_dir)
        async with ecr_client(reg.endpoint_url) as client:
            for name in ("../../outside", "..", "inside/../../x"):
                with pytest.raises(client.exceptions.InvalidParameterException):
                    await client.create_repository(repositoryName=name)
            await client.create_repository(repositoryName="a/b/c")
            await ecr.push_image(
                client, "a/b/c", layers=[os.urandom(3000)], tag="t", part_size=PART
            )
        assert tree(tmp_path) - tree(data_dir) == before
        top = {path.name for path in data_dir.iterdir()}
        assert top <= {
            "blobs",
            "uploads",
            "catalog.sqlite3",
            "catalog.sqlite3-wal",
            "catalog.sqlite3-shm",
        }
