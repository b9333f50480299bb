"""ECR and ECR Public through ``/v2/`` (``--transport oci``), against the embedded registry in
its ECR flavours with their auth on.

Every result is read back by skopeo through ``/v2/`` with a GetAuthorizationToken password,
and through the JSON API (BatchGetImage): one store, the same digests.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import layerhoist
from commands import FAILED, OK, USAGE, one_line_error, push_cli
from conftest import TEST_REGION, ClientFactory, RegistryFactory
from layerhoist.destinations import DestinationOptions
from layerhoist.destinations.ecr.oci import EcrOciDestination
from layerhoist.errors import RepositoryNotFoundError, UsageError
from layerhoist.image import Descriptor, sha256_digest
from layerhoist.oci.push import OCTET_STREAM
from layerhoist.refs import parse_destination
from layerhoist.registry import EmbeddedRegistry
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.transfer.config import PushConfig
from layerhoist.units import MiB

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("aws_credentials")]

FAST = PushConfig(backoff_initial=0.001, backoff_max=0.01)
SMALL_LAYER = 64 * 1024
SKOPEO_TIMEOUT = 60
#: The ``/v2/`` auth each flavour uses on AWS: Basic for ECR, the token exchange for Public.
AUTH = {"ecr": "basic", "ecr-public": "token"}
REPO = "team/app"


def layout(tmp_path: Path, *, multiarch: bool = False, layer_size: int = SMALL_LAYER) -> Path:
    """An OCI layout of one image (or one index) tagged ``v1``, two layers per image."""
    path = tmp_path / ("multi" if multiarch else "single")
    write_oci_layout(path, images=1, layers_per_image=2, layer_size=layer_size, multiarch=multiarch)
    return path


def layout_digest(path: Path) -> str:
    """The digest of the layout's first (only) tagged image."""
    index = json.loads((path / "index.json").read_bytes())
    digest: str = index["manifests"][0]["digest"]
    return digest


def options(registry: EmbeddedRegistry, **changes: Any) -> DestinationOptions:
    """``--transport oci`` to the embedded registry, creating the repository."""
    settings: dict[str, Any] = {
        "endpoint_url": registry.endpoint_url,
        "transport": "oci",
        "create_repository": True,
        "tls_verify": False,
        "region": TEST_REGION,
    }
    settings.update(changes)
    return DestinationOptions(**settings)


async def password(ecr_client: ClientFactory, registry: EmbeddedRegistry, service: str) -> str:
    """A GetAuthorizationToken password, as a user of the AWS CLI would get one."""
    async with ecr_client(registry.endpoint_url, service) as client:
        answer = await client.get_authorization_token()
    data = answer["authorizationData"]
    token = (data[0] if service == "ecr" else data)["authorizationToken"]
    user, _, secret = base64.b64decode(token).decode().partition(":")
    assert user == "AWS"
    return secret


async def skopeo_inspect(skopeo: str, secret: str, reference: str, *raw: str) -> bytes:
    """``skopeo inspect`` through ``/v2/`` as user ``AWS``."""
    with anyio.fail_after(SKOPEO_TIMEOUT):
        done = await anyio.run_process(
            [skopeo, "inspect", "--tls-verify=false", "--creds", f"AWS:{secret}", *raw, reference]
        )
    return done.stdout


async def skopeo_digest(skopeo: str, secret: str, reference: str) -> str:
    """The manifest digest skopeo reads for ``reference``."""
    digest: str = json.loads(await skopeo_inspect(skopeo, secret, reference))["Digest"]
    return digest


async def api_digest(
    ecr_client: ClientFactory, registry: EmbeddedRegistry, service: str, tag: str
) -> str:
    """The digest the JSON API gives ``REPO:tag`` (the other side of the one store):
    BatchGetImage on ECR, DescribeImages on ECR Public (which has no BatchGetImage)."""
    async with ecr_client(registry.endpoint_url, service) as client:
        if service == "ecr":
            answer = await client.batch_get_image(repositoryName=REPO, imageIds=[{"imageTag": tag}])
            (image,) = answer["images"]
            digest: str = image["imageId"]["imageDigest"]
            return digest
        answer = await client.describe_images(repositoryName=REPO, imageIds=[{"imageTag": tag}])
    (detail,) = answer["imageDetails"]
    digest = detail["imageDigest"]
    return digest


def stats(registry: EmbeddedRegistry) -> dict[str, int]:
    """Requests the registry received, by operation."""
    requests: dict[str, int] = registry.stats()["requests"]  # type: ignore[assignment]
    return requests


@pytest.mark.parametrize("service", ["ecr-public", "ecr"])
async def test_single_image_and_index_land_and_read_back(
    make_registry: RegistryFactory,
    ecr_client: ClientFactory,
    skopeo: str,
    tmp_path: Path,
    service: str,
) -> None:
    single, multi = layout(tmp_path), layout(tmp_path, multiarch=True)
    async with make_registry(flavor=service, oci_auth=AUTH[service]) as registry:
        for source, tag in ((single, "v1"), (multi, "multi")):
            result = await layerhoist.copy(
                f"oci:{source}:v1",
                f"{service}:{REPO}:{tag}",
                config=FAST,
                options=options(registry),
            )
            assert result.ok, result.summary()
        secret = await password(ecr_client, registry, service)
        host = registry.endpoint_url.removeprefix("http://")
        for source, tag in ((single, "v1"), (multi, "multi")):
            expected = layout_digest(source)
            assert await skopeo_digest(skopeo, secret, f"docker://{host}/{REPO}:{tag}") == expected
            assert await api_digest(ecr_client, registry, service, tag) == expected
        raw = await skopeo_inspect(skopeo, secret, f"docker://{host}/{REPO}:multi", "--raw")
        assert "manifests" in json.loads(raw)
        requests = stats(registry)
        # Blob checks went through the API, uploads through /v2/.
        assert requests.get("BatchCheckLayerAvailability", 0) >= 2
        assert requests.get("InitiateLayerUpload", 0) == 0


async def test_api_and_oci_transports_land_the_same_digests(
    make_registry: RegistryFactory, ecr_client: ClientFactory, tmp_path: Path
) -> None:
    source = layout(tmp_path, multiarch=True)
    async with make_registry(flavor="ecr-public", oci_auth="token") as registry:
        for transport in ("api", "oci"):
            result = await layerhoist.copy(
                f"oci:{source}:v1",
                f"ecr-public:{REPO}:{transport}",
                config=FAST,
                options=options(registry, transport=transport),
            )
            assert result.ok, result.summary()
        assert await api_digest(ecr_client, registry, "ecr-public", "api") == await api_digest(
            ecr_client, registry, "ecr-public", "oci"
        )


async def test_a_missing_repository_is_one_line_or_created(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    source = layout(tmp_path)
    async with make_registry(flavor="ecr", oci_auth="basic") as registry:
        with pytest.raises(RepositoryNotFoundError) as raised:
            await layerhoist.copy(
                f"oci:{source}:v1",
                f"ecr:{REPO}:v1",
                config=FAST,
                options=options(registry, create_repository=False),
            )
        message = str(raised.value)
        assert "\n" not in message
        assert "--create-repo" in message
        result = await layerhoist.copy(
            f"oci:{source}:v1", f"ecr:{REPO}:v1", config=FAST, options=options(registry)
        )
        assert result.ok, result.summary()


@pytest.mark.parametrize(("part_size", "chunked"), [(8 * MiB, True), (1 * MiB, False)])
async def test_resumable_uploads_go_as_chunks_ecr_takes(
    make_registry: RegistryFactory, part_size: int, chunked: bool
) -> None:
    """A resumable upload is PATCH chunks, which ECR takes from 5 MiB; with smaller parts it
    stays one streamed PUT, which no later run can resume."""
    async with make_registry(flavor="ecr", oci_auth="basic") as registry:
        ref = parse_destination(f"ecr:{REPO}")
        descriptor = Descriptor(OCTET_STREAM, sha256_digest(b"layer"), 64 * MiB)
        config = FAST.replace(part_size=part_size)
        async with EcrOciDestination(ref, config=config, options=options(registry)) as destination:
            await destination.prepare(create=True)
            upload = await destination.start_upload(descriptor, resumable=True)
            assert (upload.session is not None) == chunked
            assert (upload.part_size, destination.registry.part_size) == (part_size, part_size)
            if upload.session is not None:
                resumed = await destination.resume_upload(
                    descriptor, session=upload.session, part_size=part_size
                )
                # ECR's Range is not trusted: the first PATCH will say where the session is.
                assert resumed is not None
                assert resumed.acknowledged is None
            else:
                session = f"{registry.endpoint_url}/v2/{REPO}/blobs/uploads/x"
                resumed = await destination.resume_upload(
                    descriptor, session=session, part_size=part_size
                )
                assert resumed is None


async def test_name_unknown_on_the_post_creates_the_repository_and_retries(
    make_registry: RegistryFactory,
) -> None:
    async with make_registry(flavor="ecr", oci_auth="basic") as registry:
        ref = parse_destination(f"ecr:{REPO}")
        blob = b"layer"
        descriptor = Descriptor(OCTET_STREAM, sha256_digest(blob), len(blob))
        async with EcrOciDestination(ref, config=FAST, options=options(registry)) as destination:
            await destination.registry.prepare(create=False)  # no CreateRepository yet
            await destination.start_upload(descriptor)  # NAME_UNKNOWN, created, POSTed again
        assert stats(registry).get("CreateRepository") == 1


async def test_a_token_that_expires_mid_run_is_refreshed(make_registry: RegistryFactory) -> None:
    now = [time.time()]
    async with make_registry(flavor="ecr", oci_auth="basic") as registry:
        ref = parse_destination(f"ecr:{REPO}")
        async with EcrOciDestination(
            ref, config=FAST, options=options(registry), wall_clock=lambda: now[0]
        ) as destination:
            await destination.prepare(create=True)
            assert stats(registry)["GetAuthorizationToken"] == 1
            first = await destination.tokens.credentials()
            # Twelve hours later (the token's life on AWS): the next request needs a new one.
            now[0] += 12 * 3600
            await destination.registry.prepare(create=False)
            assert stats(registry)["GetAuthorizationToken"] == 2
            assert (await destination.tokens.credentials()) != first


async def test_a_token_revoked_mid_run_is_replaced_by_one_fresh_token(
    make_registry: RegistryFactory, ecr_client: ClientFactory, tmp_path: Path
) -> None:
    source = layout(tmp_path, multiarch=True)
    # ECR Public's /v2/ tokens announce 300 s; this registry refuses them after 60 s, and its
    # clock jumps past that once the first upload session is open: that upload's streamed PUT
    # (which cannot be sent again) and every later request carrying the first token are
    # refused.
    start, jump = time.time(), 61.0
    opened: list[EmbeddedRegistry] = []

    def wall_clock() -> float:
        requests = stats(opened[0]) if opened else {}
        return start + (jump if requests.get("v2.uploads") else 0.0)

    settings = make_registry(
        flavor="ecr-public",
        oci_auth="token",
        oci_token_lifetime=300.0,
        oci_token_revoked_after=60.0,
    ).settings
    async with EmbeddedRegistry(settings, wall_clock=wall_clock) as registry:
        opened.append(registry)
        # One blob at a time: the first upload's PUT is the first request after the jump.
        config = dataclasses.replace(FAST, blob_concurrency=1)
        result = await layerhoist.copy(
            f"oci:{source}:v1", f"ecr-public:{REPO}:v1", config=config, options=options(registry)
        )
        assert result.ok, result.summary()
        counts = registry.stats()
        # The mid-run refusals were answered by one fresh token; the refused PUT's blob was
        # uploaded again.
        assert counts["tokens_refused"] != 0
        assert result.retry_causes() == {"UNAUTHORIZED": 1}
        assert counts["tokens_issued"] == 2
        assert await api_digest(ecr_client, registry, "ecr-public", "v1") == layout_digest(source)


async def test_chunks_under_5_mib_are_refused_and_5_mib_works(
    make_registry: RegistryFactory, tmp_path: Path, skopeo: str, ecr_client: ClientFactory
) -> None:
    source = layout(tmp_path, layer_size=6 * MiB)
    async with make_registry(flavor="ecr-public", oci_auth="token") as registry:
        with pytest.raises(UsageError, match="at least 5 MiB"):
            await layerhoist.copy(
                f"oci:{source}:v1",
                f"ecr-public:{REPO}:v1",
                config=FAST,
                options=options(registry, chunk_size=4 * MiB),
            )
        result = await layerhoist.copy(
            f"oci:{source}:v1",
            f"ecr-public:{REPO}:v1",
            config=FAST,
            options=options(registry, chunk_size=5 * MiB),
        )
        assert result.ok, result.summary()
        assert await api_digest(ecr_client, registry, "ecr-public", "v1") == layout_digest(source)


async def test_the_cli_copies_with_transport_oci(
    make_registry: RegistryFactory,
    aws_env: dict[str, str],
    ecr_client: ClientFactory,
    tmp_path: Path,
) -> None:
    source = layout(tmp_path)
    async with make_registry(flavor="ecr-public", oci_auth="token") as registry:
        common = ("--transport", "oci", "--dest-tls-verify=false", "--quiet")
        args = (f"oci:{source}:v1", f"ecr-public:{REPO}:v1", registry.endpoint_url, *common)
        missing = await push_cli(aws_env, *args)
        assert missing.returncode == FAILED
        assert "--create-repo" in one_line_error(missing)
        too_small = await push_cli(aws_env, *args, "--create-repo", "--chunk-size", "1MiB")
        assert too_small.returncode == USAGE
        assert "at least 5 MiB" in one_line_error(too_small)
        done = await push_cli(aws_env, *args, "--create-repo")
        assert done.returncode == OK, done.stderr.decode()
        secret = await password(ecr_client, registry, "ecr-public")
        assert secret not in done.stderr.decode() + done.stdout.decode()
        assert await api_digest(ecr_client, registry, "ecr-public", "v1") == layout_digest(source)
