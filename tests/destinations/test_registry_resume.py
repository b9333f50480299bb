"""Resuming a ``docker://`` upload on CNCF distribution (Debian's docker-registry).

distribution is the registry whose session rules resume must meet for real: each PATCH
answers a new ``Location`` whose signed ``_state`` carries the offset, a status GET answers
``Range``, and a session whose bytes disagree with the ``_state`` it is resumed by is
cancelled. A copy is stopped once half its layer is acknowledged (from its progress, so no
request is in flight: as a SIGKILL between two chunks), then copied again with the same
journal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from yarl import URL

from fakes import CancelAfter
from layerhoist.api import copy
from layerhoist.destinations import DestinationOptions
from layerhoist.state import StateFile
from layerhoist.state.journal import StateJournal
from layerhoist.testing.distribution import Distribution
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.report import PushResult
from layerhoist.units import MiB

pytestmark = pytest.mark.anyio

LAYER_SIZE = 48 * MiB
PART = 8 * MiB
CONFIG = PushConfig(part_size=PART, resume_min_size=2 * PART, retry_for=0.0)
OPTIONS = DestinationOptions(tls_verify=False)
GUARD_SECONDS = 60.0


def layout_of(tmp_path: Path, *, seed: int) -> Path:
    """One image with one layer of :data:`LAYER_SIZE` bytes, tagged ``v1``; each test has a
    seed of its own, or the blob another test pushed would be mounted instead of uploaded."""
    path = tmp_path / "layout"
    write_oci_layout(path, images=1, layers_per_image=1, layer_size=LAYER_SIZE, seed=seed)
    return path


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[StateJournal]:
    """The upload journal of a fresh state file."""
    with StateFile(tmp_path / "state.sqlite") as state:
        yield StateJournal(state.db)


async def stopped_halfway(source: str, destination: str, journal: StateJournal) -> None:
    """Copy until half the layer is acknowledged, then stop."""
    with anyio.fail_after(GUARD_SECONDS), anyio.CancelScope() as scope:
        await copy(
            source,
            destination,
            config=CONFIG,
            options=OPTIONS,
            progress=CancelAfter(scope, nbytes=LAYER_SIZE // 2),
            journal=journal,
        )
    assert scope.cancelled_caught


async def copied(source: str, destination: str, journal: StateJournal) -> PushResult:
    """The whole copy, with ``journal``."""
    with anyio.fail_after(GUARD_SECONDS):
        return await copy(source, destination, config=CONFIG, options=OPTIONS, journal=journal)


def layer_outcome(result: PushResult) -> tuple[int, int]:
    """Bytes sent and bytes resumed of the run's one layer."""
    (layer,) = [blob for blob in result.blobs if blob.size == LAYER_SIZE]
    return layer.bytes_sent, layer.bytes_resumed


async def test_a_stopped_copy_resumes_on_distribution(
    distribution: Distribution, journal: StateJournal, skopeo: str, tmp_path: Path
) -> None:
    layout = layout_of(tmp_path, seed=21)
    destination = f"docker://{distribution.host}/resume/halfway:v1"
    await stopped_halfway(f"oci:{layout}", destination, journal)

    result = await copied(f"oci:{layout}", destination, journal)

    assert result.ok
    sent, resumed = layer_outcome(result)
    assert resumed >= LAYER_SIZE // 2
    assert sent + resumed == LAYER_SIZE
    assert result.requests["UploadStatus"]["requests"] == 1
    assert journal.pending(destination.removesuffix(":v1")) == {}
    read_back = await anyio.run_process(
        [skopeo, "copy", "--quiet", "--src-tls-verify=false", destination, f"oci:{tmp_path}/rb"],
        check=False,
    )
    assert read_back.returncode == 0, read_back.stderr.decode()


async def test_a_cancelled_session_starts_afresh_on_distribution(
    distribution: Distribution, journal: StateJournal, tmp_path: Path
) -> None:
    layout = layout_of(tmp_path, seed=22)
    destination = f"docker://{distribution.host}/resume/cancelled:v1"
    await stopped_halfway(f"oci:{layout}", destination, journal)
    (entry,) = journal.pending(destination.removesuffix(":v1")).values()
    async with aiohttp.ClientSession() as http, http.delete(URL(entry.latest_session)) as answer:
        assert answer.status == 204

    result = await copied(f"oci:{layout}", destination, journal)

    assert result.ok
    assert layer_outcome(result) == (LAYER_SIZE, 0)
    # Afresh at once: a session gone is no failure to retry.
    assert result.retries == []
