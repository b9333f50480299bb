"""``make demo``: the main job end to end on the embedded registry, no AWS account needed.

It writes a sample OCI layout of several images (one layer shared by all), starts
the embedded ECR-compatible registry in its own process, pushes every image through
the ECR Public API with progress, reads each one back with skopeo (an independent
client) to compare digests, and pushes again to show that a re-run uploads nothing.

Then it mirrors: a second embedded registry stands in for an upstream registry behind token
auth (a Docker-Hub-style token realm on its own port), skopeo seeds one image into it, and
``layerhoist copy docker://… ecr-public:mirror/…`` with ``--src-creds`` copies it registry to
registry into the first one through both of ECR's transports (the layer API, and ``/v2/`` with
the GetAuthorizationToken password), where skopeo reads each copy back. The first registry
answers ``/v2/`` as ECR Public's endpoint does (``--flavor ecr-public``, token auth).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
from rich.console import Console

from layerhoist.api import copy, push
from layerhoist.destinations import DestinationOptions
from layerhoist.destinations.base import ECR_TRANSPORTS
from layerhoist.errors import LayerhoistError
from layerhoist.oci import Credentials
from layerhoist.oci.client import ClientSettings
from layerhoist.registry.launcher import RegistryProcess, client_env
from layerhoist.sources.registry import RegistrySourceOptions
from layerhoist.testing.synthetic import write_oci_layout
from layerhoist.transfer.pipeline import ProgressSink
from layerhoist.transfer.progress import PlainProgress
from layerhoist.transfer.report import PushResult
from layerhoist.transfer.terminal import TerminalProgress
from layerhoist.units import MiB

IMAGES = 4
LAYERS_PER_IMAGE = 3
LAYER_SIZE = 12 * MiB
REPOSITORY = "demo/app"
#: The upstream repository of the mirror step, and where its image lands.
UPSTREAM_REPOSITORY = "upstream/app"
MIRROR_REPOSITORY = "mirror/app"
#: The upstream registry's one account (its token realm hands out tokens to it alone).
UPSTREAM_USER = "demo"
UPSTREAM_PASSWORD = "demo"
#: Seconds skopeo may take for one small image.
SKOPEO_TIMEOUT = 60.0


async def _push(
    layout: Path, endpoint_url: str, console: Console, *, show_progress: bool
) -> PushResult:
    options = DestinationOptions(endpoint_url=endpoint_url, create_repository=True)
    progress: ProgressSink | None = None
    if show_progress and console.is_terminal:
        terminal = TerminalProgress(console)
        with terminal:
            return await push(
                f"oci:{layout}", f"ecr-public:{REPOSITORY}", options=options, progress=terminal
            )
    if show_progress:
        progress = PlainProgress(sys.stderr)
    return await push(
        f"oci:{layout}", f"ecr-public:{REPOSITORY}", options=options, progress=progress
    )


def _read_back(endpoint_url: str, tag: str, repository: str = REPOSITORY) -> str:
    """The manifest digest skopeo sees for ``repository:tag`` in the embedded registry."""
    host = endpoint_url.removeprefix("http://")
    completed = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{repository}:{tag}"],
        check=True,
        capture_output=True,
        timeout=SKOPEO_TIMEOUT,
    )
    return "sha256:" + hashlib.sha256(completed.stdout).hexdigest()


def _seed_upstream(layout: Path, tag: str, endpoint_url: str) -> str:
    """skopeo pushes ``tag`` of the layout into the upstream registry; its manifest digest."""
    host = endpoint_url.removeprefix("http://")
    digest_file = layout.parent / "upstream-digest"
    subprocess.run(
        [
            *("skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"),
            *("--dest-creds", f"{UPSTREAM_USER}:{UPSTREAM_PASSWORD}"),
            *("--digestfile", str(digest_file)),
            *(f"oci:{layout}:{tag}", f"docker://{host}/{UPSTREAM_REPOSITORY}:{tag}"),
        ],
        check=True,
        capture_output=True,
        timeout=SKOPEO_TIMEOUT,
    )
    return digest_file.read_text().strip()


async def _mirror(
    layout: Path, tag: str, workdir: Path, endpoint_url: str, console: Console
) -> bool:
    """The mirror step: upstream registry (token auth) -> the ECR Public API, read back."""
    upstream_args = ["--oci-auth", "token", "--oci-users", f"{UPSTREAM_USER}:{UPSTREAM_PASSWORD}"]
    async with RegistryProcess(data_dir=workdir / "upstream", args=upstream_args) as upstream:
        host = upstream.endpoint_url.removeprefix("http://")
        console.print(f"upstream registry (token auth, user {UPSTREAM_USER}): {host}")
        digest = await anyio.to_thread.run_sync(_seed_upstream, layout, tag, upstream.endpoint_url)
        console.print(f"skopeo seeded {UPSTREAM_REPOSITORY}:{tag} {digest[:19]}… upstream")
        source = f"docker://{host}/{UPSTREAM_REPOSITORY}:{tag}"
        landed: list[str] = []
        # ECR's two transports, each mirrored into a repository of its own.
        for transport in ECR_TRANSPORTS:
            repository = f"{MIRROR_REPOSITORY}-{transport}"
            console.print(
                f"layerhoist copy {source} ecr-public:{repository} --transport {transport} "
                f"--src-creds {UPSTREAM_USER}:*** --src-tls-verify=false "
                f"--endpoint-url {endpoint_url} --create-repo"
            )
            result = await copy(
                source,
                f"ecr-public:{repository}",
                options=DestinationOptions(
                    endpoint_url=endpoint_url, create_repository=True, transport=transport
                ),
                source_options=RegistrySourceOptions(
                    credentials=Credentials(UPSTREAM_USER, UPSTREAM_PASSWORD),
                    client=ClientSettings(tls_verify=False),
                ),
            )
            console.print(f"mirror ({transport}): {result.summary()}")
            if not result.ok:
                return False
            landed.append(repository)
    if shutil.which("skopeo") is None:
        return True
    for repository in landed:
        seen = await anyio.to_thread.run_sync(_read_back, endpoint_url, tag, repository)
        verdict = "ok" if seen == digest else f"MISMATCH (upstream has {digest})"
        console.print(f"skopeo read back {repository}:{tag} {seen[:19]}… {verdict}")
        if seen != digest:
            return False
    return True


async def _main(workdir: Path) -> int:
    console = Console(stderr=True, soft_wrap=True)
    layout = workdir / "layout"
    tags = write_oci_layout(
        layout,
        images=IMAGES,
        layers_per_image=LAYERS_PER_IMAGE,
        layer_size=LAYER_SIZE,
        seed=1,
        shared_layers=1,
    )
    console.print(
        f"sample layout: {len(tags)} images x {LAYERS_PER_IMAGE} layers of "
        f"{LAYER_SIZE // MiB} MiB (one shared) in {layout}"
    )
    # /v2/ answers as ECR Public's endpoint does; anonymous readers such as skopeo below get
    # pull-only tokens.
    flavor = ["--flavor", "ecr-public", "--oci-auth", "token"]
    async with RegistryProcess(data_dir=workdir / "registry", args=flavor) as registry:
        console.print(f"embedded registry: {registry.endpoint_url}")
        first = await _push(layout, registry.endpoint_url, console, show_progress=True)
        console.print(first.summary())
        if not first.ok:
            return 1
        if shutil.which("skopeo") is None:
            console.print("skopeo is not installed: skipping the independent read-back")
        else:
            for image in first.images:
                tag = image.destination.rsplit(":", 1)[1]
                seen = await anyio.to_thread.run_sync(_read_back, registry.endpoint_url, tag)
                verdict = "ok" if seen == image.digest else f"MISMATCH (skopeo sees {seen})"
                console.print(f"skopeo read back {REPOSITORY}:{tag} {image.digest[:19]}… {verdict}")
                if seen != image.digest:
                    return 1
        second = await _push(layout, registry.endpoint_url, console, show_progress=False)
        console.print(f"re-run: {second.summary()}")
        if not second.ok or second.bytes_uploaded != 0:
            return 1
        if shutil.which("skopeo") is None:
            console.print("skopeo is not installed: skipping the mirror (skopeo seeds its source)")
            return 0
        mirrored = await _mirror(layout, tags[0], workdir, registry.endpoint_url, console)
        return 0 if mirrored else 1


def main() -> int:
    """Run the demo in a scratch directory that is removed afterwards."""
    # The embedded registry runs without SigV4 verification; fixed dummy keys keep
    # whatever real AWS credentials the environment holds out of the demo entirely.
    environment = client_env()
    os.environ.clear()
    os.environ.update(environment)
    try:
        with tempfile.TemporaryDirectory(prefix="layerhoist-demo-") as tmp:
            return anyio.run(_main, Path(tmp))
    except LayerhoistError as exc:
        print(f"layerhoist demo: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
