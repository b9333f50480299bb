"""``layerhoist copy SOURCE DESTINATION``: the command's options, and the copy it runs.

``layerhoist push`` is the same command under its former name (the ``COMMANDS`` table points
both at this module), so scripts that call ``push`` keep working unchanged. Only the options
are built at start-up; the copy machinery (the AWS SDK, rich) is imported once the command
runs, so ``layerhoist --help`` stays fast.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from layerhoist.cli import argtypes
from layerhoist.destinations import DestinationOptions
from layerhoist.destinations.base import ECR_TRANSPORTS
from layerhoist.errors import UsageError
from layerhoist.exits import EXIT_FAILED, EXIT_OK
from layerhoist.refs import DOCKER_PREFIX
from layerhoist.transfer.config import Pacing, PushConfig
from layerhoist.units import format_bytes

if TYPE_CHECKING:
    from layerhoist.sources.registry import RegistrySourceOptions
    from layerhoist.transfer.journal import UploadJournal
    from layerhoist.transfer.pipeline import ProgressSink
    from layerhoist.transfer.report import PushResult


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``copy`` (and ``push``) to ``parser``."""
    defaults = PushConfig()
    parser.add_argument(
        "source",
        help="oci:DIR[:TAG], docker-archive:FILE[:TAG] or docker://[HOST/]REPO[:TAG|@DIGEST]",
    )
    parser.add_argument(
        "destination",
        help="ecr-public:REPO[:TAG], ecr:REPO[:TAG], public.ecr.aws/ALIAS/REPO[:TAG], "
        "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG], docker://HOST/REPO[:TAG] (an OCI "
        "registry) or oci:DIR[:TAG] (an OCI layout)",
    )
    parser.add_argument(
        "--concurrency",
        type=argtypes.positive_int,
        default=defaults.blob_concurrency,
        help=f"blobs uploading at once (default {defaults.blob_concurrency})",
    )
    parser.add_argument(
        "--part-size",
        type=argtypes.size,
        default=None,
        help="part size, e.g. 10MiB (default: the destination's; ECR: the service's "
        "partSize, clamped to 5-10 MiB; OCI layout: 8 MiB)",
    )
    parser.add_argument(
        "--chunk-size",
        type=argtypes.size,
        default=None,
        help="docker:// destinations and --transport oci: upload each blob as PATCH chunks "
        "of this size (ECR: at least 5MiB; default: one streamed PUT per blob)",
    )
    parser.add_argument(
        "--memory-budget",
        type=argtypes.size,
        default=defaults.memory_budget,
        help=f"layer bytes held in memory at once (default {format_bytes(defaults.memory_budget)})",
    )
    parser.add_argument(
        "--retry-budget",
        type=int,
        default=defaults.retry_budget,
        help=f"retries allowed over the whole run (default {defaults.retry_budget})",
    )
    parser.add_argument(
        "--retry-for",
        type=argtypes.duration,
        default=defaults.retry_for,
        help="keep retrying a failing request or layer this long, e.g. 2m or 90s "
        f"(default {defaults.retry_for:g}s; 0: attempts only)",
    )
    parser.add_argument(
        "--pacing",
        choices=get_args(Pacing),
        default=defaults.pacing,
        help="pace requests to the published quotas: auto (on AWS endpoints), published, off",
    )
    parser.add_argument("--endpoint-url", help="API endpoint (e.g. the embedded registry's URL)")
    parser.add_argument("--region", help="AWS region (ECR private; ECR Public is us-east-1)")
    parser.add_argument("--profile", help="AWS profile from the shared config")
    parser.add_argument("--registry-id", help="registry (account) id")
    parser.add_argument(
        "--create-repo", action="store_true", help="create the repository if missing"
    )
    parser.add_argument(
        "--transport",
        choices=ECR_TRANSPORTS,
        default=DestinationOptions().transport,
        help="ECR and ECR Public: push through the layer API (api, the default) or the "
        "registry's /v2/ endpoint with a GetAuthorizationToken password (oci)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="journal large uploads in this SQLite state file (created if missing) so that "
        "a run killed halfway resumes them: run again with the same FILE and only what the "
        "destination lacks is sent. One run at a time holds it (exit 3 if another does)",
    )
    _registry_options(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def _registry_options(parser: argparse.ArgumentParser) -> None:
    """The options named as skopeo names them: how registries are reached, what is copied."""
    parser.add_argument(
        "--src-creds", metavar="USER[:PASS]", help="credentials of a docker:// source"
    )
    parser.add_argument(
        "--dest-creds", metavar="USER[:PASS]", help="credentials of a docker:// destination"
    )
    parser.add_argument(
        "--authfile",
        type=Path,
        help="registry auth file (default: $REGISTRY_AUTH_FILE, then ~/.docker/config.json)",
    )
    for side in ("src", "dest"):
        parser.add_argument(
            f"--{side}-tls-verify",
            type=argtypes.boolean,
            nargs="?",
            const=True,
            default=True,
            metavar="true|false",
            help=f"check the {side} registry's certificate; =false also allows plain HTTP "
            "(default true)",
        )
    parser.add_argument(
        "--all-tags", action="store_true", help="copy every tag of a docker:// source repository"
    )
    parser.add_argument(
        "--platform",
        type=argtypes.platform,
        action="append",
        default=[],
        metavar="OS/ARCH[/VARIANT]",
        help="copy only this platform of an index (repeatable; default: every platform)",
    )


def _source_options(args: argparse.Namespace, config: PushConfig) -> RegistrySourceOptions | None:
    """How a ``docker://`` source is reached; ``None`` for a file source (nothing to load)."""
    if not args.source.startswith(DOCKER_PREFIX):
        if args.all_tags:
            raise UsageError("--all-tags needs a docker:// source")
        return None
    # Imported only for a registry source: a copy from files never loads the HTTP client.
    from layerhoist.oci.client import ClientSettings
    from layerhoist.oci.credentials import parse_credentials
    from layerhoist.sources.registry import RegistrySourceOptions

    return RegistrySourceOptions(
        credentials=parse_credentials(args.src_creds) if args.src_creds is not None else None,
        auth_file=args.authfile,
        all_tags=args.all_tags,
        client=ClientSettings(tls_verify=args.src_tls_verify),
        config=config,
    )


def _progress(args: argparse.Namespace) -> ProgressSink | None:
    if args.quiet:
        return None
    if sys.stderr.isatty():
        # rich is loaded only for a person watching: CI logs get plain lines.
        from rich.console import Console

        from layerhoist.transfer.terminal import TerminalProgress

        return TerminalProgress(Console(stderr=True, soft_wrap=True))
    from layerhoist.transfer.progress import PlainProgress

    return PlainProgress(sys.stderr)


@contextmanager
def _journal(path: Path | None) -> Iterator[UploadJournal | None]:
    """The upload journal of the state file ``path``, held for the run; none without one."""
    if path is None:
        yield None
        return
    # Imported only for a run that keeps state.
    from layerhoist.state import StateFile
    from layerhoist.state.journal import StateJournal

    with StateFile(path) as state:
        yield StateJournal(state.db)


async def _run_copy(
    args: argparse.Namespace, config: PushConfig, journal: UploadJournal | None
) -> PushResult:
    from layerhoist.api import copy

    options = DestinationOptions(
        endpoint_url=args.endpoint_url,
        region=args.region,
        profile=args.profile,
        registry_id=args.registry_id,
        create_repository=args.create_repo,
        credentials=args.dest_creds,
        authfile=args.authfile,
        tls_verify=args.dest_tls_verify,
        chunk_size=args.chunk_size,
        transport=args.transport,
    )
    source_options = _source_options(args, config)
    progress = _progress(args)
    with progress if isinstance(progress, AbstractContextManager) else nullcontext():
        return await copy(
            args.source,
            args.destination,
            config=config,
            options=options,
            progress=progress,
            source_options=source_options,
            platforms=args.platform,
            journal=journal,
        )


def run(args: argparse.Namespace) -> int:
    """Copy as ``args`` say; the exit code (errors that stop the run are raised)."""
    try:
        config = PushConfig(
            blob_concurrency=args.concurrency,
            part_size=args.part_size,
            memory_budget=args.memory_budget,
            retry_budget=args.retry_budget,
            retry_for=args.retry_for,
            pacing=args.pacing,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    import anyio

    # What is imported by now lives as long as the process: frozen, it is left out
    # of every later collection instead of traversed by each full one.
    gc.freeze()
    with _journal(args.state) as journal:
        result = anyio.run(_run_copy, args, config, journal)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    for image in result.images:
        if image.status != "pushed":
            print(f"layerhoist: error: {image.error}", file=sys.stderr)
    if result.stopped is not None:
        print(f"layerhoist: error: {result.stopped}", file=sys.stderr)
    print(result.summary(), file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED
