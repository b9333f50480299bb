"""docker:// sources against a real CNCF distribution registry seeded by skopeo."""

from __future__ import annotations

import hashlib

import pytest

from layerhoist.errors import SourceError
from layerhoist.image import OCI_INDEX, OCI_MANIFEST, Image
from layerhoist.oci import ClientSettings
from layerhoist.oci.errors import ImageNotFoundError
from layerhoist.refs import parse_source
from layerhoist.sources import open_source
from layerhoist.sources.registry import RegistrySource, RegistrySourceOptions
from layerhoist.testing.distribution import Distribution
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.transfer.config import PushConfig

pytestmark = pytest.mark.anyio

LAYER_SIZE = 8192
#: Tags of the single-image repository, more than one page of PAGE_SIZE.
SINGLE_TAGS = 5
PAGE_SIZE = 2
#: Retries that fail fast: these tests expect failures, not outages.
FAST = PushConfig(part_attempts=2, backoff_initial=0.01, backoff_max=0.02, retry_for=0.0)
INSECURE = ClientSettings(tls_verify=False)


@pytest.fixture(scope="module")
def seeded(distribution: Distribution, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``app:v1…v5`` (single images) and ``multi:v1`` (amd64 + arm64): tag -> manifest digest."""
    root = tmp_path_factory.mktemp("layouts")
    single = root / "single"
    tags = write_oci_layout(single, images=SINGLE_TAGS, layers_per_image=2, layer_size=LAYER_SIZE)
    digests = {f"app:{tag}": distribution.seed(single, tag, f"app:{tag}") for tag in tags}
    multi = root / "multi"
    write_oci_layout(multi, images=1, layers_per_image=2, layer_size=LAYER_SIZE, multiarch=True)
    digests["multi:v1"] = distribution.seed(multi, "v1", "multi:v1", all_platforms=True)
    return digests


def source(
    distribution: Distribution,
    reference: str,
    *,
    all_tags: bool = False,
    client: ClientSettings = INSECURE,
) -> RegistrySource:
    opened = open_source(
        parse_source(f"docker://{distribution.host}/{reference}"),
        registry=RegistrySourceOptions(all_tags=all_tags, client=client, config=FAST),
    )
    assert isinstance(opened, RegistrySource)
    return opened


async def load(
    distribution: Distribution,
    reference: str,
    *,
    all_tags: bool = False,
    client: ClientSettings = INSECURE,
) -> list[Image]:
    opened = source(distribution, reference, all_tags=all_tags, client=client)
    try:
        return await opened.load()
    finally:
        await opened.aclose()


async def test_loads_a_single_image(distribution: Distribution, seeded: dict[str, str]) -> None:
    [image] = await load(distribution, "app:v2")
    assert image.tag == "v2"
    assert image.manifest.digest == seeded["app:v2"]
    assert image.manifest.media_type == OCI_MANIFEST
    assert len(image.blobs()) == 3
    assert image.children == ()


async def test_loads_a_multi_arch_index_with_platforms(
    distribution: Distribution, seeded: dict[str, str]
) -> None:
    [image] = await load(distribution, "multi:v1")
    assert image.manifest.media_type == OCI_INDEX
    assert image.manifest.digest == seeded["multi:v1"]
    platforms = [child.platform_name for child in image.manifest.manifests]
    assert platforms == ["linux/amd64", "linux/arm64"]
    assert [child.digest for child in image.children] == [
        descriptor.digest for descriptor in image.manifest.manifests
    ]


async def test_loads_by_digest_untagged(distribution: Distribution, seeded: dict[str, str]) -> None:
    [image] = await load(distribution, f"app@{seeded['app:v3']}")
    assert image.tag is None
    assert image.manifest.digest == seeded["app:v3"]


async def test_all_tags_follows_pagination(
    distribution: Distribution, seeded: dict[str, str]
) -> None:
    images = await load(
        distribution,
        "app",
        all_tags=True,
        client=ClientSettings(tls_verify=False, tags_page_size=PAGE_SIZE),
    )
    assert sorted(image.tag or "" for image in images) == [f"v{n}" for n in range(1, 6)]
    assert {image.manifest.digest for image in images} == {
        digest for name, digest in seeded.items() if name.startswith("app:")
    }


async def test_blob_bytes_stream_in_exact_chunks(
    distribution: Distribution, seeded: dict[str, str]
) -> None:
    opened = source(distribution, "app:v1")
    try:
        [image] = await opened.load()
        for descriptor in image.blobs():
            chunk_size = 3000
            chunks = [c async for c in opened.blob_chunks(descriptor, chunk_size=chunk_size)]
            assert all(len(chunk) == chunk_size for chunk in chunks[:-1])
            assert 0 < len(chunks[-1]) <= chunk_size
            data = b"".join(chunks)
            assert len(data) == descriptor.size
            assert "sha256:" + hashlib.sha256(data).hexdigest() == descriptor.digest
            tail = b"".join(
                [c async for c in opened.blob_chunks(descriptor, offset=100, chunk_size=999)]
            )
            assert tail == data[100:]
    finally:
        await opened.aclose()
    assert opened.stats.resumed == 0


async def test_missing_tag_is_one_line_naming_it(
    distribution: Distribution, seeded: dict[str, str]
) -> None:
    with pytest.raises(ImageNotFoundError) as info:
        await load(distribution, "app:nope")
    message = str(info.value)
    assert "\n" not in message
    assert f"{distribution.host}/app:nope" in message
    assert "MANIFEST_UNKNOWN" in message


async def test_missing_repository_is_one_line_naming_it(
    distribution: Distribution, seeded: dict[str, str]
) -> None:
    with pytest.raises(SourceError) as info:
        await load(distribution, "nothing/here:v1")
    message = str(info.value)
    assert "\n" not in message
    assert f"{distribution.host}/nothing/here:v1" in message
    assert "NAME_UNKNOWN" in message or "MANIFEST_UNKNOWN" in message
