"""The simulation knobs of the embedded registry, seen from a real client, on injected time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from conftest import sha256_digest
from fakes import FakeTime
from layerhoist.registry import EmbeddedRegistry, RegistrySettings, SimulationSettings

pytestmark = pytest.mark.anyio

PART = 1024
REPO = "sim/app"


@pytest.fixture
def fake_time() -> FakeTime:
    """Injected time for the registry and its simulator."""
    return FakeTime()


Started = Callable[..., Any]


@pytest.fixture
def start(tmp_path: Path, fake_time: FakeTime, ecr_client: Any) -> Started:
    """``async with start(**simulation) as (registry, client)``: a registry on fake time."""

    @asynccontextmanager
    async def started(**simulation: Any) -> AsyncIterator[tuple[EmbeddedRegistry, Any]]:
        settings = RegistrySettings(
            data_dir=tmp_path / f"registry-{uuid.uuid4()}",
            min_part_size=PART,
            part_size=PART,
            max_part_size=PART,
            simulation=SimulationSettings(**simulation),
        )
        registry = EmbeddedRegistry(settings, clock=fake_time.clock, sleep=fake_time.sleep)
        async with registry, ecr_client(registry.endpoint_url) as client:
            yield registry, client

    return started


async def part(client: Any, upload_id: str, first: int, data: bytes) -> None:
    """Send one part of an upload into ``REPO``."""
    await client.upload_layer_part(
        repositoryName=REPO,
        uploadId=upload_id,
        partFirstByte=first,
        partLastByte=first + len(data) - 1,
        layerPartBlob=data,
    )


async def test_latency_is_added_to_every_request(start: Started, fake_time: FakeTime) -> None:
    async with start(latency_ms=250) as (_, client):
        await client.create_repository(repositoryName=REPO)
        await client.describe_repositories()
    assert fake_time.sleeps == [0.25, 0.25]


async def test_bandwidth_paces_request_bodies_and_blob_responses(
    start: Started, fake_time: FakeTime, ecr: Any
) -> None:
    rate = 100_000.0
    data = bytes(range(256)) * 4
    async with start() as (registry, client):
        await client.create_repository(repositoryName=REPO)
        registry.simulator.update({"bandwidth": rate})
        fake_time.sleeps.clear()
        await part(
            client, (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"], 0, data
        )
        body_seconds = sum(fake_time.sleeps)
        # The body is the part's base64 text (4/3 of it) plus a few hundred bytes of JSON.
        assert len(data) * 4 / 3 / rate < body_seconds < (len(data) * 4 / 3 + 500) / rate

        registry.simulator.update({"bandwidth": None})
        digest = await ecr.upload_layer(client, REPO, data * 3, part_size=PART)
        registry.simulator.update({"bandwidth": "100KB/s"})
        fake_time.sleeps.clear()
        url = f"{registry.endpoint_url}/v2/{REPO}/blobs/{digest}"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert await response.read() == data * 3
        assert sum(fake_time.sleeps) == pytest.approx(len(data) * 3 / rate)


async def test_quota_answers_throttling_until_tokens_return(
    start: Started, fake_time: FakeTime
) -> None:
    async with start(quotas={"InitiateLayerUpload": 1.0}) as (registry, client):
        await client.create_repository(repositoryName=REPO)
        await client.initiate_layer_upload(repositoryName=REPO)
        with pytest.raises(ClientError) as throttled:
            await client.initiate_layer_upload(repositoryName=REPO)
        assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
        assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        # Other operations have no quota here.
        await client.describe_repositories()
        fake_time.now += 1.0
        await client.initiate_layer_upload(repositoryName=REPO)
        assert registry.stats()["errors"] == {"ThrottlingException": 1}


async def test_quota_profile_of_the_public_service(start: Started) -> None:
    async with start(quotas={}) as (registry, client):
        registry.simulator.update({"quotas": "ecr-public"})
        await client.create_repository(repositoryName=REPO)
        outcomes = []
        for _ in range(12):
            try:
                await client.initiate_layer_upload(repositoryName=REPO)
                outcomes.append("ok")
            except ClientError as error:
                outcomes.append(error.response["Error"]["Code"])
        # 10 requests/second, burst 10, and time stands still.
        assert outcomes == ["ok"] * 10 + ["ThrottlingException"] * 2


async def fault_outcomes(client: Any, count: int) -> list[str]:
    """What ``count`` DescribeRepositories calls got: "ok" or the error code."""
    outcomes = []
    for _ in range(count):
        try:
            await client.describe_repositories()
            outcomes.append("ok")
        except client.exceptions.ServerException as error:
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            outcomes.append("ServerException")
    return outcomes


async def test_injected_server_errors_repeat_with_the_seed(start: Started) -> None:
    async with start(fault_rate=0.5, seed=11) as (registry, client):
        first = await fault_outcomes(client, 20)
        assert registry.stats()["faults"] == {"error": first.count("ServerException")}
    async with start(fault_rate=0.5, seed=11) as (_, client):
        second = await fault_outcomes(client, 20)
    assert first == second
    assert 0 < first.count("ServerException") < len(first)


async def test_dropped_connection_gets_no_answer_and_the_server_goes_on(start: Started) -> None:
    async with start(drop_rate=1.0) as (registry, client):
        with pytest.raises(Exception) as dropped:
            await client.create_repository(repositoryName=REPO)
        assert not isinstance(dropped.value, ClientError)
        async with aiohttp.ClientSession() as http:
            url = f"{registry.endpoint_url}/_layerhoist/simulation"
            async with http.post(url, json={"drop_rate": 0.0}) as response:
                assert response.status == 200
        await client.create_repository(repositoryName=REPO)
        assert registry.stats()["faults"] == {"drop": 1}


async def test_corrupted_part_fails_completion(start: Started) -> None:
    data = b"precious bytes" * 50
    async with start(corrupt_rate=1.0, seed=3) as (registry, client):
        await client.create_repository(repositoryName=REPO)
        upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        await part(client, upload_id, 0, data)
        with pytest.raises(client.exceptions.InvalidLayerException):
            await client.complete_layer_upload(
                repositoryName=REPO, uploadId=upload_id, layerDigests=[sha256_digest(data)]
            )
        assert registry.stats()["parts_corrupted"] == 1


async def test_idle_upload_expires(start: Started, fake_time: FakeTime) -> None:
    async with start(upload_expiry=60.0) as (_, client):
        await client.create_repository(repositoryName=REPO)
        upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        fake_time.now += 59.0
        await part(client, upload_id, 0, b"a" * PART)
        fake_time.now += 59.0
        await part(client, upload_id, PART, b"b")
        fake_time.now += 61.0
        with pytest.raises(client.exceptions.UploadNotFoundException):
            await client.complete_layer_upload(
                repositoryName=REPO,
                uploadId=upload_id,
                layerDigests=[sha256_digest(b"a" * PART + b"b")],
            )


async def test_admin_endpoint_reads_and_changes_the_simulation(start: Started) -> None:
    async with start(seed=5) as (registry, client), aiohttp.ClientSession() as http:
        url = f"{registry.endpoint_url}/_layerhoist/simulation"
        async with http.get(url) as response:
            assert (await response.json())["seed"] == 5
        async with http.post(url, json={"latency_ms": 5, "quotas": "ecr"}) as response:
            assert response.status == 200
            changed = await response.json()
        assert changed["latency_ms"] == 5
        assert changed["quotas"]["PutImage"] == 10.0
        assert registry.simulator.settings.latency_ms == 5
        for bad in ({"latency_ms": -1}, {"no_such_knob": 1}, [1, 2]):
            async with http.post(url, json=bad) as response:
                assert response.status == 400
                assert "error" in await response.json()
        assert registry.simulator.settings.latency_ms == 5

        await client.create_repository(repositoryName=REPO)
        async with http.get(f"{registry.endpoint_url}/_layerhoist/stats") as response:
            stats = await response.json()
        assert stats["requests"] == {"CreateRepository": 1}
        assert stats == registry.stats()
