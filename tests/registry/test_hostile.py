"""The embedded registry under hostile input (issue 9, items 1-7): each case as reproduced.

Every test talks HTTP to a real registry, in process or as ``python -m layerhoist.registry``,
and most end by checking that a normal push still works.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from yarl import URL

from conftest import EcrSequences, sha256_digest
from fakes import FakeTime, FullDisk
from layerhoist.registry import EmbeddedRegistry, RegistrySettings
from layerhoist.registry.auth import ADMIN_SERVICE
from layerhoist.registry.connections import ConditionLog
from layerhoist.registry.storage import BlobStore

pytestmark = pytest.mark.anyio

PART = 1024
REPO = "hostile/app"
AKID = "AKIDHOSTILE"
SECRET = "hostile-secret"
PUBLIC = "SpencerFrontendService."
PRIVATE = "AmazonEC2ContainerRegistry_V20150921."
MiB = 1024 * 1024
#: Generous bound for anything the server should do "soon" (never a performance claim).
SOON = 20.0
#: Seconds between two looks at the server's state.
POLL = 0.01
#: Small limits keep the hostile bodies small.
SMALL: dict[str, Any] = {"min_part_size": PART, "part_size": PART, "max_part_size": PART}
#: Parts of whole pages: each is written to disk as it arrives, even with direct I/O.
PAGE = 8192
PAGES: dict[str, Any] = {"min_part_size": PAGE, "part_size": PAGE, "max_part_size": PAGE}


# --- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A raw HTTP answer: status (``None`` when the connection closed without one) and body."""

    status: int | None
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def address(registry: EmbeddedRegistry) -> tuple[str, int]:
    parts = urlsplit(registry.endpoint_url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def head(target: str | None, *, length: int | None, extra: str = "") -> bytes:
    """The request line and headers of an ECR API POST (no body)."""
    lines = ["POST / HTTP/1.1", "Host: x", "Content-Type: application/x-amz-json-1.1"]
    if target is not None:
        lines.append(f"X-Amz-Target: {target}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


async def exchange(registry: EmbeddedRegistry, data: bytes) -> Answer:
    """Send ``data`` on a new connection; read the answer, or until the server closes it.

    The answer is read by its Content-Length: when it comes before the body, the server
    lingers to drain the body before it closes the connection.
    """
    received = b""
    with anyio.fail_after(SOON):
        async with await anyio.connect_tcp(*address(registry)) as stream:
            await stream.send(data)
            try:
                while not _complete(received):
                    received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                pass
    if not received.startswith(b"HTTP/1.1 "):
        return Answer(None, received)
    header, _, body = received.partition(b"\r\n\r\n")
    return Answer(int(header.split()[1]), body)


def _complete(received: bytes) -> bool:
    header, separator, body = received.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in header.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


async def post(
    registry: EmbeddedRegistry,
    target: str | None,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST a JSON 1.1 body; the status and the decoded answer."""
    sent = {"Content-Type": "application/x-amz-json-1.1", **(headers or {})}
    if target is not None:
        sent["X-Amz-Target"] = target
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{registry.endpoint_url}/", data=body, headers=sent) as response,
    ):
        return response.status, json.loads(await response.read())


def signed_headers(
    url: str,
    *,
    target: str | None,
    body: bytes = b"{}",
    method: str = "POST",
    service: str = "ecr-public",
    region: str = "us-east-1",
    secret: str = SECRET,
) -> dict[str, str]:
    """Headers of a request signed by botocore (the target, if any, is signed too)."""
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(AKID, secret), service, region).add_auth(request)
    return dict(request.headers.items())


async def push_works(registry: EmbeddedRegistry, ecr_client: Any, ecr: EcrSequences) -> None:
    """A normal push (repository, two layers, a tagged manifest) succeeds."""
    keys = {"aws_access_key_id": AKID, "aws_secret_access_key": SECRET}
    part_size = registry.settings.part_size
    async with ecr_client(registry.endpoint_url, **keys) as client:
        repository = f"ok/{os.urandom(4).hex()}"
        await client.create_repository(repositoryName=repository)
        await ecr.push_image(
            client,
            repository,
            layers=[os.urandom(3 * part_size + 5), os.urandom(100)],
            tag="v1",
            part_size=part_size,
        )


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds, failing after ``SOON`` seconds."""
    with anyio.fail_after(SOON):
        while not condition():  # noqa: ASYNC110 (server state, no event to wait on)
            await anyio.sleep(POLL)


@pytest.fixture
async def small(make_registry: Any) -> AsyncIterator[EmbeddedRegistry]:
    """A registry with small parts and short timeouts, no credentials."""
    async with make_registry(**SMALL, header_timeout=0.5, body_idle_timeout=0.5) as registry:
        yield registry


@pytest.fixture
async def signed(make_registry: Any) -> AsyncIterator[EmbeddedRegistry]:
    """A registry with small parts that wants SigV4 signatures by ``AKID``."""
    async with make_registry(**SMALL, credentials={AKID: SECRET}) as registry:
        yield registry


# --- 1. memory before authentication ----------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "MissingAuthenticationTokenException"),
        ("Authorization: AWS4-HMAC-SHA256 nonsense\r\n", "IncompleteSignatureException"),
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIDUNKNOWN/{date}/us-east-1/ecr-public/"
            "aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=00\r\n"
            "X-Amz-Date: {stamp}\r\n",
            "UnrecognizedClientException",
        ),
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=AKIDHOSTILE/20000101/us-east-1/"
            "ecr-public/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, "
            "Signature=00\r\nX-Amz-Date: 20000101T000000Z\r\n",
            "InvalidSignatureException",
        ),
    ],
)
async def test_bad_authorization_is_refused_before_the_body_is_read(
    signed: EmbeddedRegistry,
    ecr_client: Any,
    ecr: EcrSequences,
    authorization: str | None,
    code: str,
) -> None:
    now = datetime.now(UTC)
    extra = (authorization or "").format(
        date=now.strftime("%Y%m%d"), stamp=now.strftime("%Y%m%dT%H%M%SZ")
    )
    # One byte of a declared MiB: the answer can only come before the body.
    answer = await exchange(
        signed, head(PUBLIC + "CreateRepository", length=MiB, extra=extra) + b"{"
    )
    assert answer.status in (400, 403)
    assert answer.json()["__type"] == code
    assert signed.body_bytes_held == 0
    await push_works(signed, ecr_client, ecr)


async def test_declared_lengths_reserve_no_memory(
    make_registry: Any, ecr_client: Any, ecr: EcrSequences
) -> None:
    async with make_registry(**SMALL, max_body_size=2 * MiB) as registry:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            streams = [await anyio.connect_tcp(*address(registry)) for _ in range(20)]
            for stream in streams:
                await stream.send(head(PUBLIC + "UploadLayerPart", length=MiB) + b"{")
            await eventually(lambda: registry.body_bytes_held >= 20 * MiB)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # 20 declared MiB, one byte each received: a few kilobytes per socket, not megabytes.
        assert grown < 4 * MiB
        for stream in streams:
            await stream.aclose()
        await eventually(lambda: registry.body_bytes_held == 0)
        await push_works(registry, ecr_client, ecr)


async def test_full_body_budget_throttles(
    make_registry: Any, ecr_client: Any, ecr: EcrSequences
) -> None:
    async with make_registry(
        **SMALL, max_body_size=64 * 1024, max_buffered_body_bytes=128 * 1024
    ) as registry:
        holders = [await anyio.connect_tcp(*address(registry)) for _ in range(2)]
        for stream in holders:
            await stream.send(head(PUBLIC + "UploadLayerPart", length=60_000) + b"{")
        await eventually(lambda: registry.body_bytes_held >= 120_000)
        answer = await exchange(registry, head(PUBLIC + "UploadLayerPart", length=60_000))
        assert (answer.status, answer.json()["__type"]) == (400, "ThrottlingException")
        for stream in holders:
            await stream.aclose()
        await push_works(registry, ecr_client, ecr)


async def test_only_parts_and_manifests_get_large_bodies(make_registry: Any) -> None:
    async with make_registry(**SMALL, max_small_body_size=4096) as registry:
        padding = " " * 5000
        status, answer = await post(
            registry, PUBLIC + "BatchCheckLayerAvailability", f"{{{padding}}}".encode()
        )
        assert (status, answer["__type"]) == (413, "InvalidParameterException")
        for operation in ("PutImage", "UploadLayerPart"):
            status, answer = await post(
                registry, PUBLIC + operation, f'{{"repositoryName": "no/such"{padding}}}'.encode()
            )
            assert (status, answer["__type"]) == (400, "RepositoryNotFoundException")


# --- 2. timeouts, connection cap, quiet logs --------------------------------------------------


async def test_half_header_sockets_are_closed(
    small: EmbeddedRegistry, ecr_client: Any, ecr: EcrSequences
) -> None:
    streams = [await anyio.connect_tcp(*address(small)) for _ in range(10)]
    for stream in streams:
        await stream.send(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Ta")
    with anyio.fail_after(SOON):
        for stream in streams:
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await stream.receive()
            await stream.aclose()
    await eventually(lambda: small.open_connections == 0)
    await push_works(small, ecr_client, ecr)


async def test_stalled_body_closes_its_connection_and_frees_its_budget(
    small: EmbeddedRegistry, ecr_client: Any, ecr: EcrSequences
) -> None:
    answer = await exchange(small, head(PUBLIC + "UploadLayerPart", length=1000) + b'{"a"')
    assert answer.status is None
    assert small.body_bytes_held == 0
    await push_works(small, ecr_client, ecr)


async def test_connections_over_the_limit_are_closed_with_one_log_line(
    make_registry: Any, ecr_client: Any, ecr: EcrSequences, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="layerhoist.registry")
    async with make_registry(**SMALL, max_connections=5) as registry:
        held = [await anyio.connect_tcp(*address(registry)) for _ in range(5)]
        await eventually(lambda: registry.open_connections >= 5)
        for _ in range(20):
            answer = await exchange(registry, head(PUBLIC + "DescribeRepositories", length=2))
            assert answer.status is None
        for stream in held:
            await stream.aclose()
        await eventually(lambda: registry.open_connections == 0)
        await push_works(registry, ecr_client, ecr)
    refusals = [r for r in caplog.records if "refusing connections" in r.getMessage()]
    assert len(refusals) == 1


def test_condition_log_writes_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="layerhoist.registry")
    now = [0.0]
    log = ConditionLog(interval=60.0, clock=lambda: now[0])
    for _ in range(100):
        log.note("flood", "something keeps happening")
    log.note("other", "something else")
    now[0] = 61.0
    log.note("flood", "something keeps happening")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "something keeps happening",
        "something else",
        "something keeps happening (99 more since the last such line)",
    ]


# --- 3. JSON amplification -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"repositoryName": "x", "layerDigests": [' + b"{}," * 200_000 + b"{}]}",
        b'{"repositoryName": "' + "é".encode("latin-1") + b'"}',
        b'{"repositoryName": 1' + b"0" * 5000 + b"}",
        b"",
    ],
)
async def test_unparseable_bodies_are_serialization_exceptions(
    make_registry: Any, body: bytes
) -> None:
    async with make_registry(max_small_body_size=MiB) as registry:
        status, answer = await post(registry, PUBLIC + "BatchCheckLayerAvailability", body)
    assert (status, answer["__type"]) == (400, "SerializationException")


async def test_amplification_body_is_refused_before_it_is_read(make_registry: Any) -> None:
    async with make_registry() as registry:
        body_length = 28_000_000
        answer = await exchange(
            registry, head(PUBLIC + "BatchCheckLayerAvailability", length=body_length) + b"[{},"
        )
        assert (answer.status, answer.json()["__type"]) == (413, "InvalidParameterException")
        assert registry.body_bytes_held == 0


async def test_manifests_full_of_braces_still_push(
    small: EmbeddedRegistry, ecr_client: Any, ecr: EcrSequences
) -> None:
    async with ecr_client(small.endpoint_url) as client:
        await client.create_repository(repositoryName=REPO)
        config = ecr.image_config([])
        await ecr.upload_layer(client, REPO, config, part_size=PART)
        manifest = json.loads(ecr.image_manifest(config, []))
        manifest["annotations"] = {f"k{i}": "{[" * 20 for i in range(200)}
        answer = await client.put_image(repositoryName=REPO, imageManifest=json.dumps(manifest))
        assert answer["image"]["imageId"]["imageDigest"].startswith("sha256:")


# --- 4. the admin endpoint -------------------------------------------------------------------


async def test_admin_endpoint_wants_credentials_when_they_are_set(signed: EmbeddedRegistry) -> None:
    stats_url = f"{signed.endpoint_url}/_layerhoist/stats"
    simulation_url = f"{signed.endpoint_url}/_layerhoist/simulation"
    async with aiohttp.ClientSession() as http:
        async with http.get(stats_url) as response:
            assert response.status == 403
            assert (await response.json())["__type"] == "MissingAuthenticationTokenException"
        async with http.post(simulation_url, json={"fault_rate": 1.0}) as response:
            assert response.status == 403
        assert signed.simulator.settings.fault_rate == 0.0
        forged = signed_headers(
            stats_url, target=None, body=b"", method="GET", service=ADMIN_SERVICE, secret="nope"
        )
        async with http.get(stats_url, headers=forged) as response:
            assert (await response.json())["__type"] == "InvalidSignatureException"
        wrong_service = signed_headers(stats_url, target=None, body=b"", method="GET")
        async with http.get(stats_url, headers=wrong_service) as response:
            assert (await response.json())["__type"] == "InvalidSignatureException"
        good = signed_headers(stats_url, target=None, body=b"", method="GET", service=ADMIN_SERVICE)
        async with http.get(stats_url, headers=good) as response:
            assert response.status == 200
            assert "requests" in await response.json()
        body = json.dumps({"latency_ms": 1}).encode()
        good = signed_headers(simulation_url, target=None, body=body, service=ADMIN_SERVICE)
        async with http.post(simulation_url, data=body, headers=good) as response:
            assert response.status == 200
        assert signed.simulator.settings.latency_ms == 1


@pytest.mark.parametrize(
    "knob",
    [
        {"latency_ms": 1e12},
        {"bandwidth": 1e-300},
        {"bandwidth": "1e-300B/s"},
        {"quotas": {"PutImage": 1e-300}},
        {"quotas": {f"Op{i}": 1.0 for i in range(1000)}},
        {"upload_expiry": 1e12},
        {"seed": -1},
        {"seed": 2**70},
        {"fault_rate": 2.0},
    ],
)
async def test_simulation_knobs_are_bounded(small: EmbeddedRegistry, knob: dict[str, Any]) -> None:
    before = small.simulator.settings
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{small.endpoint_url}/_layerhoist/simulation", json=knob) as response,
    ):
        assert response.status == 400
        assert "error" in await response.json()
    assert small.simulator.settings == before


# --- 5. SigV4 as strict as AWS ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "service", "region"),
    [
        (PUBLIC, "ecr-public", "eu-west-1"),
        (PUBLIC, "ecr-public", "mars-1"),
        (PUBLIC, "s3", "us-east-1"),
        (PUBLIC, "sts", "us-east-1"),
        (PUBLIC, "ecr", "us-east-1"),
        (PRIVATE, "ecr-public", "us-east-1"),
        (PRIVATE, "ecr", "eu-west-1"),
    ],
)
async def test_signatures_of_another_scope_are_refused(
    signed: EmbeddedRegistry, target: str, service: str, region: str
) -> None:
    url = f"{signed.endpoint_url}/"
    headers = signed_headers(
        url, target=target + "DescribeRepositories", service=service, region=region
    )
    status, answer = await post(signed, None, b"{}", headers)
    assert (status, answer["__type"]) == (400, "InvalidSignatureException")
    assert "scoped" in answer["message"]


async def test_private_ecr_signs_in_the_registry_region(
    make_registry: Any, ecr_client: Any
) -> None:
    async with make_registry(credentials={AKID: SECRET}, region="eu-west-3") as registry:
        url = f"{registry.endpoint_url}/"
        for target, service, region in (
            (PRIVATE, "ecr", "eu-west-3"),
            (PUBLIC, "ecr-public", "us-east-1"),
        ):
            headers = signed_headers(
                url, target=target + "DescribeRepositories", service=service, region=region
            )
            status, _ = await post(registry, None, b"{}", headers)
            assert status == 200
        keys = {"aws_access_key_id": AKID, "aws_secret_access_key": SECRET}
        async with ecr_client(registry.endpoint_url, "ecr", **keys) as client:
            with pytest.raises(ClientError) as refused:  # the fixture's client signs us-east-1
                await client.describe_repositories()
        assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"


async def test_a_signature_not_covering_the_target_cannot_be_replayed(
    signed: EmbeddedRegistry, ecr_client: Any
) -> None:
    keys = {"aws_access_key_id": AKID, "aws_secret_access_key": SECRET}
    async with ecr_client(signed.endpoint_url, **keys) as client:
        await client.create_repository(repositoryName=REPO)
    body = json.dumps({"repositoryName": REPO}).encode()
    url = f"{signed.endpoint_url}/"
    captured = signed_headers(url, target=None, body=body)  # signed without X-Amz-Target
    for operation in ("DescribeRepositories", "DeleteRepository"):
        status, answer = await post(signed, PUBLIC + operation, body, captured)
        assert (status, answer["__type"]) == (400, "IncompleteSignatureException")
        assert "X-Amz-Target" in answer["message"]
    replayed = signed_headers(url, target=PUBLIC + "DescribeRepositories", body=body)
    replayed["X-Amz-Target"] = PUBLIC + "DeleteRepository"
    status, answer = await post(signed, None, body, replayed)
    assert (status, answer["__type"]) == (400, "InvalidSignatureException")
    async with ecr_client(signed.endpoint_url, **keys) as client:
        names = [
            r["repositoryName"] for r in (await client.describe_repositories())["repositories"]
        ]
    assert names == [REPO]


# --- 6. a full disk --------------------------------------------------------------------------


@pytest.fixture
def disk() -> FullDisk:
    return FullDisk()


@pytest.fixture
async def on_disk(tmp_path: Path, disk: FullDisk) -> AsyncIterator[EmbeddedRegistry]:
    """A registry whose uploads are written through ``disk``."""
    settings = RegistrySettings(data_dir=tmp_path / "full", **PAGES)
    async with EmbeddedRegistry(settings, write=disk) as registry:
        yield registry


async def part(client: Any, upload_id: str, first: int, data: bytes) -> Any:
    return await client.upload_layer_part(
        repositoryName=REPO,
        uploadId=upload_id,
        partFirstByte=first,
        partLastByte=first + len(data) - 1,
        layerPartBlob=data,
    )


async def test_full_disk_is_a_server_exception_and_the_part_can_be_sent_again(
    on_disk: EmbeddedRegistry, disk: FullDisk, ecr_client: Any, ecr: EcrSequences
) -> None:
    data = os.urandom(2 * PAGE + 100)
    async with ecr_client(on_disk.endpoint_url) as client:
        await client.create_repository(repositoryName=REPO)
        upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        await part(client, upload_id, 0, data[:PAGE])
        disk.full = True
        with pytest.raises(ClientError) as refused:
            await part(client, upload_id, PAGE, data[PAGE : 2 * PAGE])
        error = refused.value.response
        assert error["Error"]["Code"] == "ServerException"
        assert "out of space (ENOSPC)" in error["Error"]["Message"]
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 500
        disk.full = False
        await part(client, upload_id, PAGE, data[PAGE : 2 * PAGE])
        await part(client, upload_id, 2 * PAGE, data[2 * PAGE :])
        done = await client.complete_layer_upload(
            repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256_digest(data)]
        )
        assert done["layerDigest"] == sha256_digest(data)
    await push_works(on_disk, ecr_client, ecr)


async def test_completion_keeps_the_upload_when_its_last_write_fails(
    on_disk: EmbeddedRegistry, disk: FullDisk, ecr_client: Any
) -> None:
    data = os.urandom(100)  # under one block: with direct I/O it is written at completion
    async with ecr_client(on_disk.endpoint_url) as client:
        await client.create_repository(repositoryName=REPO)
        upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        await part(client, upload_id, 0, data)
        disk.full = True
        complete = {"repositoryName": REPO, "uploadId": upload_id}
        try:
            await client.complete_layer_upload(**complete, layerDigests=[sha256_digest(data)])
        except ClientError as refused:
            assert "out of space" in refused.response["Error"]["Message"]
        else:
            pytest.skip("nothing left to write at completion: no direct I/O here")
        disk.full = False
        done = await client.complete_layer_upload(**complete, layerDigests=[sha256_digest(data)])
        assert done["layerDigest"] == sha256_digest(data)
        async with aiohttp.ClientSession() as http:
            url = f"{on_disk.endpoint_url}/v2/{REPO}/blobs/{sha256_digest(data)}"
            async with http.get(url) as response:
                assert await response.read() == data


async def test_abandoned_uploads_are_swept_with_their_files(
    tmp_path: Path, ecr_client: Any
) -> None:
    time = FakeTime()
    data_dir = tmp_path / "sweep"
    settings = RegistrySettings(
        data_dir=data_dir, **PAGES, upload_idle_limit=600.0, upload_sweep_interval=0.05
    )
    async with (
        EmbeddedRegistry(settings, clock=time.clock) as registry,
        ecr_client(registry.endpoint_url) as client,
    ):
        await client.create_repository(repositoryName=REPO)
        for _ in range(3):
            upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
            await part(client, upload_id, 0, os.urandom(PAGE))
        assert registry.stats()["uploads_in_progress"] == 3
        assert len(list((data_dir / "uploads").iterdir())) == 3
        time.now += 601.0
        await eventually(lambda: registry.stats()["uploads_in_progress"] == 0)
        assert list((data_dir / "uploads").iterdir()) == []


def test_open_uploads_are_found_idle_from_the_front_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    uploads = [store.new_upload("r/a", now=float(i)) for i in range(1000)]
    store.touch(uploads[0], now=5000.0)
    idle = store.idle_uploads(before=10.0)
    assert idle == uploads[1:10]
    assert store.uploads()[-1] is uploads[0]
    store.discard_upload(uploads[1])
    assert store.idle_uploads(before=3.0) == [uploads[2]]


# --- 7. small ones ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", ["%C2%B2", "%D9%A3", "-1", "0", "1e3", "99999999999999999999"])
async def test_listing_counts_that_are_not_numbers_are_pagination_errors(
    small: EmbeddedRegistry, count: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(URL(f"{small.endpoint_url}/v2/_catalog?n={count}", encoded=True)) as response,
    ):
        assert response.status == 400
        assert (await response.json())["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"


@pytest.mark.parametrize(
    "token",
    [
        base64.urlsafe_b64encode(b"-1").decode(),
        base64.urlsafe_b64encode(b" 1").decode(),
        base64.urlsafe_b64encode(b"\xd9\xa3").decode(),
        base64.urlsafe_b64encode(b"9" * 5000).decode(),
        "-1",
    ],
)
async def test_foreign_next_tokens_are_invalid_parameters(
    small: EmbeddedRegistry, token: str
) -> None:
    body = json.dumps({"nextToken": token}).encode()
    status, answer = await post(small, PUBLIC + "DescribeRepositories", body)
    assert (status, answer["__type"]) == (400, "InvalidParameterException")


async def test_serve_with_a_data_dir_leaves_no_scratch_directory(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    command = [sys.executable, "-m", "layerhoist.registry", "--data-dir", str(tmp_path / "data")]
    environment = {**os.environ, "TMPDIR": str(scratch)}
    process = await anyio.open_process(command, stdout=subprocess.PIPE, env=environment)
    async with process:
        assert process.stdout is not None
        with anyio.fail_after(SOON):
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive(1)
            assert line.startswith(b"listening on ")
            assert list(scratch.iterdir()) == []
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    assert list(scratch.iterdir()) == []
