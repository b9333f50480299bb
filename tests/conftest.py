"""Fixtures shared by the whole suite: the anyio backend, embedded registries, ECR clients, skopeo.

``aws_credentials`` (for clients made in the test's process) and ``aws_env`` (the environment of
a subprocess) are the one way a test gets dummy AWS credentials, with the machine's own AWS
settings kept out. ``registry`` is an in-process :class:`EmbeddedRegistry` on a fresh data
directory; ``ecr_client(endpoint_url, service)`` opens a real aioboto3 client against any
endpoint with the same dummy credentials and botocore's retries off; ``ecr`` bundles the upload
and push sequences tests keep needing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioboto3
import pytest
from botocore.config import Config

from layerhoist.registry import EmbeddedRegistry, RegistrySettings
from layerhoist.registry.launcher import free_port
from layerhoist.testing.distribution import Distribution, distribution_process, wait_listening

#: The dummy credentials of every test. The secret is one no output could contain by
#: chance, so a test can check that it never shows.
TEST_ACCESS_KEY = "test"
TEST_SECRET_KEY = "test-secret-never-shown"
TEST_REGION = "us-east-1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

ClientFactory = Callable[..., AbstractAsyncContextManager[Any]]
RegistryFactory = Callable[..., EmbeddedRegistry]


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp (and so aiobotocore and the embedded registry) runs on asyncio only."""
    return "asyncio"


@pytest.fixture
def aws_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a process that calls AWS APIs (the CLI, the bench): dummy credentials.

    This process's environment with every ``AWS_*`` variable of the machine removed, then the
    dummy credentials, empty config and credentials files (so no profile of the machine's own
    files leaks in) and no instance-metadata lookup (which would wait for a timeout).
    """
    config = tmp_path / "aws-config"
    credentials = tmp_path / "aws-credentials"
    config.touch()
    credentials.touch()
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=TEST_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=TEST_SECRET_KEY,
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(credentials),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, aws_env: dict[str, str]) -> None:
    """The same AWS settings as :func:`aws_env`, for clients created in this process."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in aws_env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)


@pytest.fixture
def make_registry(tmp_path: Path) -> RegistryFactory:
    """``make_registry(**settings)`` builds an EmbeddedRegistry (enter it with ``async with``).

    The data directory defaults to one per test, so two registries made in one test
    with no ``data_dir`` share it (the restart case).
    """

    def make(*, data_dir: Path | None = None, **changes: Any) -> EmbeddedRegistry:
        settings = RegistrySettings(data_dir=data_dir or tmp_path / "registry", **changes)
        return EmbeddedRegistry(settings)

    return make


@pytest.fixture
async def registry(make_registry: RegistryFactory) -> AsyncIterator[EmbeddedRegistry]:
    """A running in-process registry with default settings on a fresh data directory."""
    async with make_registry() as running:
        yield running


@pytest.fixture
def ecr_client() -> ClientFactory:
    """``ecr_client(endpoint_url, service="ecr-public", **options)``: a real aioboto3 client.

    Dummy credentials (override with ``aws_access_key_id``/``aws_secret_access_key``),
    region us-east-1, botocore retries off (one attempt in all) so every refusal reaches the test.
    """

    def make(endpoint_url: str, service: str = "ecr-public", **options: Any) -> Any:
        options.setdefault("aws_access_key_id", TEST_ACCESS_KEY)
        options.setdefault("aws_secret_access_key", TEST_SECRET_KEY)
        options.setdefault("config", Config(retries={"total_max_attempts": 1}))
        return aioboto3.Session().client(
            service, endpoint_url=endpoint_url, region_name=TEST_REGION, **options
        )

    return make


@pytest.fixture
async def public_client(
    registry: EmbeddedRegistry, ecr_client: ClientFactory
) -> AsyncIterator[Any]:
    """An ``ecr-public`` client of the ``registry`` fixture."""
    async with ecr_client(registry.endpoint_url) as client:
        yield client


#: moto_server, installed in the same environment as the interpreter running the tests.
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
MOTO_START_TIMEOUT = 30.0


@pytest.fixture
def unused_port() -> int:
    """A local TCP port nothing listens on: connections to it are refused."""
    return free_port()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a ``moto_server`` (a third-party ECR implementation) on a free local port."""
    port = free_port()
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(process, port, name="moto_server", timeout=MOTO_START_TIMEOUT)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


def required_tool(name: str) -> str:
    """Path of the Debian-packaged tool ``name``: fails in CI when missing, skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI (make installs it as root)")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


@pytest.fixture
def skopeo() -> str:
    """Path of the skopeo binary; fails in CI when it is missing, skips elsewhere."""
    return required_tool("skopeo")


def sha256_digest(data: bytes) -> str:
    """The OCI digest of ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass(frozen=True)
class PushedImage:
    """An image pushed by :meth:`EcrSequences.push_image`."""

    manifest: bytes
    digest: str
    config: bytes
    layers: tuple[bytes, ...]


class EcrSequences:
    """The ECR upload and push sequences, spelled out as a client performs them."""

    async def upload_layer(
        self, client: Any, repository: str, data: bytes, *, part_size: int
    ) -> str:
        """Upload ``data`` in parts of ``part_size`` bytes; returns its digest."""
        upload = await client.initiate_layer_upload(repositoryName=repository)
        for first in range(0, len(data), part_size):
            part = data[first : first + part_size]
            await client.upload_layer_part(
                repositoryName=repository,
                uploadId=upload["uploadId"],
                partFirstByte=first,
                partLastByte=first + len(part) - 1,
                layerPartBlob=part,
            )
        digest = sha256_digest(data)
        answer = await client.complete_layer_upload(
            repositoryName=repository, uploadId=upload["uploadId"], layerDigests=[digest]
        )
        assert answer["layerDigest"] == digest
        return digest

    def image_manifest(self, config: bytes, layers: Sequence[bytes]) -> bytes:
        """An OCI image manifest of ``config`` and ``layers``."""
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": OCI_LAYER, "digest": sha256_digest(layer), "size": len(layer)}
                for layer in layers
            ],
        }
        return json.dumps(document, indent=2).encode()

    def image_config(self, layers: Sequence[bytes]) -> bytes:
        """A minimal OCI image config naming ``layers`` (as uncompressed digests)."""
        document = {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer) for layer in layers]},
            "config": {},
        }
        return json.dumps(document).encode()

    async def push_image(
        self,
        client: Any,
        repository: str,
        *,
        layers: Sequence[bytes],
        tag: str | None,
        part_size: int,
    ) -> PushedImage:
        """Upload config and layers, then PutImage an OCI manifest referencing them."""
        config = self.image_config(layers)
        for blob in (config, *layers):
            await self.upload_layer(client, repository, blob, part_size=part_size)
        manifest = self.image_manifest(config, layers)
        params: dict[str, Any] = {"repositoryName": repository, "imageManifest": manifest.decode()}
        if tag is not None:
            params["imageTag"] = tag
        answer = await client.put_image(**params)
        digest = sha256_digest(manifest)
        assert answer["image"]["imageId"]["imageDigest"] == digest
        return PushedImage(manifest=manifest, digest=digest, config=config, layers=tuple(layers))


@pytest.fixture
def ecr() -> EcrSequences:
    """Upload and push sequences over an ECR client."""
    return EcrSequences()


# ------------------------------------------------ CNCF distribution (Debian's docker-registry)

#: The user of the htpasswd-protected registry.
DISTRIBUTION_USER = "alice"
DISTRIBUTION_PASSWORD = "wonderland-7"


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """A docker-registry without auth, started once per test module."""
    directory = tmp_path_factory.mktemp("distribution")
    binary, skopeo = required_tool("docker-registry"), required_tool("skopeo")
    with distribution_process(directory, binary=binary, skopeo=skopeo) as running:
        yield running


@pytest.fixture(scope="module")
def distribution_htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distribution]:
    """A docker-registry with htpasswd Basic auth (:data:`DISTRIBUTION_USER`), once per module."""
    directory = tmp_path_factory.mktemp("distribution-auth")
    binary, skopeo = required_tool("docker-registry"), required_tool("skopeo")
    users = {DISTRIBUTION_USER: DISTRIBUTION_PASSWORD}
    with distribution_process(directory, binary=binary, skopeo=skopeo, users=users) as running:
        yield running
