"""Resuming through ECR's layer API, against the embedded registry.

The API has no status call: a resumed upload tries the journal's offset, and the first part's
answer says where the upload stands (``InvalidLayerPartException`` carries
``lastValidByteReceived``) or that it is gone (``UploadNotFoundException``). A copy is stopped
once half its layer is acknowledged; the journal is then made to say less than the service
holds, as when a run dies between a part's answer and its journal write.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import anyio
import pytest

from conftest import ClientFactory
from fakes import CancelAfter
from layerhoist.api import copy
from layerhoist.destinations import DestinationOptions
from layerhoist.destinations.ecr.destination import EcrDestination
from layerhoist.image import Descriptor
from layerhoist.refs import parse_destination
from layerhoist.registry import EmbeddedRegistry
from layerhoist.state import StateFile
from layerhoist.state.journal import StateJournal
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.report import PushResult
from layerhoist.units import MiB

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("aws_credentials")]

PART = 5 * MiB
PARTS = 8
LAYER_SIZE = PARTS * PART
CONFIG = PushConfig(part_size=PART, resume_min_size=2 * PART, retry_for=0.0)
DESTINATION = "ecr-public:resume/api"
GUARD_SECONDS = 60.0
#: An upload id as the service writes them.
UPLOAD_ID = "0b3a5c1e-7a4f-4d1e-9a57-2f1c8e6d9b10"


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """One image with one layer of :data:`PARTS` parts, tagged ``v1``."""
    path = tmp_path / "layout"
    write_oci_layout(path, images=1, layers_per_image=1, layer_size=LAYER_SIZE, seed=31)
    return path


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[StateJournal]:
    """The upload journal of a fresh state file."""
    with StateFile(tmp_path / "state.sqlite") as state:
        yield StateJournal(state.db)


def options(registry: EmbeddedRegistry) -> DestinationOptions:
    """The embedded registry's API, creating the repository."""
    return DestinationOptions(endpoint_url=registry.endpoint_url, create_repository=True)


async def stopped_halfway(layout: Path, registry: EmbeddedRegistry, journal: StateJournal) -> None:
    """Copy until half the layer is acknowledged (and journaled), then stop."""
    with anyio.fail_after(GUARD_SECONDS), anyio.CancelScope() as scope:
        await copy(
            f"oci:{layout}",
            DESTINATION,
            config=CONFIG,
            options=options(registry),
            progress=CancelAfter(scope, nbytes=LAYER_SIZE // 2),
            journal=journal,
        )
    assert scope.cancelled_caught
    (entry,) = journal.pending(DESTINATION).values()
    assert entry.acknowledged == LAYER_SIZE // 2


async def copied(
    layout: Path, registry: EmbeddedRegistry, journal: StateJournal
) -> tuple[PushResult, int]:
    """The whole copy; its result and the layer bytes the registry accepted meanwhile."""
    before = registry.stats()["part_bytes_received"]
    assert isinstance(before, int)
    with anyio.fail_after(GUARD_SECONDS):
        result = await copy(
            f"oci:{layout}", DESTINATION, config=CONFIG, options=options(registry), journal=journal
        )
    after = registry.stats()["part_bytes_received"]
    assert isinstance(after, int)
    return result, after - before


def layer_digest(journal: StateJournal) -> str:
    """The digest of the one upload journaled."""
    (digest,) = journal.pending(DESTINATION)
    return digest


@pytest.mark.parametrize("unjournaled", [0, 1, 2])
async def test_a_resumed_upload_goes_on_where_the_service_stands(
    layout: Path, registry: EmbeddedRegistry, journal: StateJournal, unjournaled: int
) -> None:
    """``unjournaled`` parts landed after the last journal write: the journal's offset is
    right, one part short (its repeat is answered as already landed), or two short (the
    service names its offset and the pass starts again there)."""
    await stopped_halfway(layout, registry, journal)
    journal.truncate(DESTINATION, layer_digest(journal), parts=PARTS // 2 - unjournaled)

    result, received = await copied(layout, registry, journal)

    assert result.ok
    assert result.retries == []
    assert received == LAYER_SIZE // 2
    (layer,) = [blob for blob in result.blobs if blob.size == LAYER_SIZE]
    assert layer.bytes_resumed >= LAYER_SIZE // 2 - PART
    assert journal.pending(DESTINATION) == {}


async def test_an_upload_the_service_forgot_starts_afresh_at_once(
    layout: Path, registry: EmbeddedRegistry, journal: StateJournal
) -> None:
    await stopped_halfway(layout, registry, journal)
    # Gone as an expired upload is (the registry's /v2/ side shares the API's uploads).
    (entry,) = journal.pending(DESTINATION).values()
    upload = f"{registry.endpoint_url}/v2/resume/api/blobs/uploads/{entry.session}"
    async with aiohttp.ClientSession() as http, http.delete(upload) as answer:
        assert answer.status == 204

    result, received = await copied(layout, registry, journal)

    assert result.ok
    assert result.retries == []
    assert received == LAYER_SIZE


async def test_a_session_of_another_form_is_not_resumed(registry: EmbeddedRegistry) -> None:
    ref = parse_destination(DESTINATION)
    blob = Descriptor("application/octet-stream", "sha256:" + "0" * 64, LAYER_SIZE)
    async with EcrDestination(ref, config=CONFIG, options=options(registry)) as destination:
        url = f"{registry.endpoint_url}/v2/resume/api/blobs/uploads/{UPLOAD_ID}"
        assert await destination.resume_upload(blob, session=url, part_size=PART) is None
        assert await destination.resume_upload(blob, session=UPLOAD_ID, part_size=1) is None
        resumed = await destination.resume_upload(blob, session=UPLOAD_ID, part_size=PART)
        assert resumed is not None
        assert resumed.acknowledged is None
        assert resumed.upload.session == UPLOAD_ID


async def test_an_offset_between_two_parts_starts_afresh(
    layout: Path,
    registry: EmbeddedRegistry,
    journal: StateJournal,
    ecr_client: ClientFactory,
) -> None:
    """An upload holding a part of another size (written by another client, or before the
    part size changed) cannot be continued without a part under the service's minimum."""
    odd = PART + MiB
    digest = json.loads((layout / "index.json").read_bytes())["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs/sha256" / digest.removeprefix("sha256:")).read_bytes())
    layer = manifest["layers"][0]["digest"]
    data = (layout / "blobs/sha256" / layer.removeprefix("sha256:")).read_bytes()[:odd]
    async with ecr_client(registry.endpoint_url) as client:
        await client.create_repository(repositoryName="resume/api")
        upload = await client.initiate_layer_upload(repositoryName="resume/api")
        await client.upload_layer_part(
            repositoryName="resume/api",
            uploadId=upload["uploadId"],
            partFirstByte=0,
            partLastByte=odd - 1,
            layerPartBlob=data,
        )
    journal.started(DESTINATION, layer, session=upload["uploadId"], part_size=PART)

    result, received = await copied(layout, registry, journal)

    assert result.ok
    assert result.retries == []
    (sent,) = [blob for blob in result.blobs if blob.size == LAYER_SIZE]
    assert (sent.bytes_sent, sent.bytes_resumed) == (LAYER_SIZE, 0)
    assert received >= LAYER_SIZE
