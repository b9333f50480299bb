"""Upload strategies, mounts and registry quirks of a ``docker://`` destination.

Against Debian's docker-registry, behind :class:`QuirkProxy`: a
:class:`~registry_proxy.RegistryProxy` that also bends upload answers the way some registries
do. Upload requests (``/blobs/uploads/``) are forwarded by it, buffered (test blobs are small),
and their answers rewritten: ``Location`` always points back through the proxy (relative with
``relative_location``), PATCH answers 201 with ``patch_created``, a session's ``Range`` stays
at its first value with ``stall_range``, and the first ``invalid_puts`` final PUTs answer
``BLOB_UPLOAD_INVALID``. Results are read back with skopeo.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from yarl import URL

from layerhoist.destinations import DestinationOptions
from layerhoist.destinations.registry.destination import RegistryDestination
from layerhoist.destinations.registry.limits import RegistryUploadSettings
from layerhoist.destinations.registry.mounts import KnownBlobs
from layerhoist.destinations.registry.upload import PATCH_CREATED, RANGE_STALLED
from layerhoist.oci import ClientSettings
from layerhoist.refs import parse_destination, parse_source
from layerhoist.sources import open_source
from layerhoist.sources.registry import RegistrySourceOptions
from layerhoist.testing.distribution import Distribution
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.transfer.config import PushConfig
from layerhoist.transfer.pipeline import Pipeline
from layerhoist.transfer.report import PushResult
from layerhoist.units import MiB
from registry_proxy import _HOP_HEADERS, RegistryProxy, _error

pytestmark = pytest.mark.anyio

UPLOADS = "/blobs/uploads/"


class QuirkProxy(RegistryProxy):
    """A registry proxy with upload quirks; ``async with`` it, then use :attr:`host`."""

    def __init__(
        self,
        upstream: str,
        *,
        patch_created: bool = False,
        relative_location: bool = False,
        stall_range: bool = False,
        invalid_puts: int = 0,
    ) -> None:
        super().__init__(upstream)
        self.patch_created = patch_created
        self.relative_location = relative_location
        self.stall_range = stall_range
        self.invalid_puts = invalid_puts
        #: ``METHOD PATH?QUERY`` of every request, in order.
        self.requests: list[str] = []
        self._first_range: dict[str, str] = {}

    def count(self, method: str, fragment: str = "") -> int:
        """Requests of ``method`` whose path and query contain ``fragment``."""
        return sum(1 for r in self.requests if r.startswith(f"{method} ") and fragment in r)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.raw_path}")
        if UPLOADS not in request.path:
            return await super()._forward(request)
        # Read as a stream: ``request.read()`` refuses bodies over aiohttp's 1 MiB default.
        body = await request.content.read()
        if request.method == "PUT" and self.invalid_puts > 0:
            self.invalid_puts -= 1
            return _error(400, "BLOB_UPLOAD_INVALID", "the upload is refused, once", {})
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        assert self._client is not None
        async with self._client.request(
            request.method,
            URL(f"http://{self.upstream}{request.raw_path}", encoded=True),
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream:
            answer = await upstream.read()
            status = upstream.status
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
        location = out.get("Location")
        if location is not None:
            relative = URL(location, encoded=True).raw_path_qs
            out["Location"] = (
                relative if self.relative_location else f"http://{self.host}{relative}"
            )
        if request.method == "PATCH":
            if self.patch_created and status == 202:
                status = 201
            if self.stall_range and "Range" in out:
                out["Range"] = self._first_range.setdefault(request.path, out["Range"])
        return web.Response(status=status, headers=out, body=answer)


LAYER_SIZE = 3 * MiB
#: Several PATCHes per layer.
CHUNK = 1 * MiB
PLAIN_HTTP = DestinationOptions(tls_verify=False)
FAST = PushConfig(backoff_initial=0.001, backoff_max=0.01)
STREAMED = RegistryUploadSettings()
CHUNKED = RegistryUploadSettings(chunk_size=CHUNK)


async def push(
    source: str,
    destination: str,
    *,
    settings: RegistryUploadSettings = STREAMED,
    known: KnownBlobs | None = None,
) -> tuple[PushResult, RegistryDestination]:
    """Copy ``source`` into ``destination`` with upload ``settings``; the result and the
    destination (for its quirk counters)."""
    ref = parse_destination(destination)
    opened = open_source(
        parse_source(source),
        registry=RegistrySourceOptions(client=ClientSettings(tls_verify=False), config=FAST),
    )
    try:
        images = await opened.load()
        async with RegistryDestination(
            ref,
            config=FAST,
            options=PLAIN_HTTP,
            settings=settings,
            known_blobs=known if known is not None else KnownBlobs(),
        ) as dest:
            await dest.prepare(create=False)
            pipeline = Pipeline(source=opened, destination=dest, config=FAST)
            result = await pipeline.run(images, targets=[ref.tag] * len(images))
    finally:
        await opened.aclose()
    return result, dest


async def skopeo_digest(skopeo: str, reference: str) -> str:
    """The manifest digest skopeo reads for ``reference``."""
    done = await anyio.run_process([skopeo, "inspect", "--tls-verify=false", reference])
    digest: str = json.loads(done.stdout)["Digest"]
    return digest


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """One image of two layers of :data:`LAYER_SIZE`."""
    path = tmp_path / "layout"
    write_oci_layout(path, images=1, layers_per_image=2, layer_size=LAYER_SIZE, seed=21)
    return path


async def test_streamed_and_chunked_uploads_land_the_same_image(
    distribution: Distribution, skopeo: str, layout: Path
) -> None:
    digests = []
    for name, settings in (("streamed", STREAMED), ("chunked", CHUNKED)):
        target = f"docker://{distribution.host}/strategy/{name}:v1"
        result, _ = await push(f"oci:{layout}:v1", target, settings=settings)
        assert result.ok, result
        digests.append(await skopeo_digest(skopeo, target))
    assert digests[0] == digests[1]


async def test_chunked_upload_through_the_quirks(
    distribution: Distribution, skopeo: str, layout: Path
) -> None:
    proxy = QuirkProxy(
        distribution.host, patch_created=True, relative_location=True, stall_range=True
    )
    async with proxy:
        target = f"docker://{proxy.host}/quirks/app:v1"
        result, dest = await push(f"oci:{layout}:v1", target, settings=CHUNKED)
        assert result.ok, result
        assert proxy.count("PATCH") >= 2 * (LAYER_SIZE // CHUNK)
        assert dest.quirks[PATCH_CREATED] == proxy.count("PATCH")
        assert dest.quirks[RANGE_STALLED] > 0
    digest = await skopeo_digest(skopeo, f"docker://{distribution.host}/quirks/app:v1")
    assert digest == result.images[0].digest


@pytest.mark.parametrize("settings", [STREAMED, CHUNKED], ids=["streamed", "chunked"])
async def test_blob_upload_invalid_once_is_requeued_and_lands(
    distribution: Distribution, skopeo: str, layout: Path, settings: RegistryUploadSettings
) -> None:
    proxy = QuirkProxy(distribution.host, relative_location=True, invalid_puts=1)
    async with proxy:
        name = f"requeue/{'chunked' if settings.chunk_size else 'streamed'}"
        result, _ = await push(
            f"oci:{layout}:v1", f"docker://{proxy.host}/{name}:v1", settings=settings
        )
        assert result.ok, result
        assert sorted(blob.attempts for blob in result.blobs)[-1] == 2
        assert proxy.invalid_puts == 0
    digest = await skopeo_digest(skopeo, f"docker://{distribution.host}/{name}:v1")
    assert digest == result.images[0].digest


async def test_registry_to_registry_mounts_what_this_process_pushed(
    distribution: Distribution, skopeo: str, layout: Path
) -> None:
    known = KnownBlobs()
    proxy = QuirkProxy(distribution.host)
    async with proxy:
        first, _ = await push(
            f"oci:{layout}:v1", f"docker://{proxy.host}/mount/first:v1", known=known
        )
        assert first.ok, [b.error for b in first.blobs] + [i.error for i in first.images]
        result, dest = await push(
            f"docker://{distribution.host}/mount/first:v1",
            f"docker://{proxy.host}/mount/second:v1",
            known=known,
        )
        assert result.ok, result
        blobs = len(result.blobs)
        assert proxy.count("POST", "mount=") == blobs
        assert sorted(dest.mounted) == sorted(blob.digest for blob in result.blobs)
        assert proxy.count("PUT", "/blobs/uploads/") == len(first.blobs)
        again, _ = await push(
            f"docker://{distribution.host}/mount/first:v1",
            f"docker://{proxy.host}/mount/second:v1",
            known=known,
        )
        assert {blob.status for blob in again.blobs} == {"present"}
        assert proxy.count("POST", "mount=") == blobs
    digest = await skopeo_digest(skopeo, f"docker://{distribution.host}/mount/second:v1")
    assert digest == first.images[0].digest
