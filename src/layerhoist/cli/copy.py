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
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, get_args

from layerhoist.cli import argtypes
from layerhoist.destinations import DestinationOptions
from layerhoist.errors import UsageError
from layerhoist.exits import EXIT_FAILED, EXIT_OK
from layerhoist.transfer.config import Pacing, PushConfig
from layerhoist.units import format_bytes

if TYPE_CHECKING:
    from layerhoist.transfer.pipeline import ProgressSink
    from layerhoist.transfer.report import PushResult


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``copy`` (and ``push``) to ``parser``."""
    defaults = PushConfig()
    parser.add_argument("source", help="oci:DIR[:TAG] or docker-archive:FILE[:TAG]")
    parser.add_argument(
        "destination",
        help="ecr-public:REPO[:TAG], ecr:REPO[:TAG], public.ecr.aws/ALIAS/REPO[:TAG], "
        "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG] or oci:DIR[:TAG] (an OCI layout)",
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
    parser.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


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


async def _run_copy(args: argparse.Namespace, config: PushConfig) -> PushResult:
    from layerhoist.api import copy

    options = DestinationOptions(
        endpoint_url=args.endpoint_url,
        region=args.region,
        profile=args.profile,
        registry_id=args.registry_id,
        create_repository=args.create_repo,
    )
    progress = _progress(args)
    if isinstance(progress, AbstractContextManager):
        with progress:
            return await copy(
                args.source, args.destination, config=config, options=options, progress=progress
            )
    return await copy(
        args.source, args.destination, config=config, options=options, progress=progress
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
    result = anyio.run(_run_copy, args, config)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    for image in result.images:
        if image.status != "pushed":
            print(f"layerhoist: error: {image.error}", file=sys.stderr)
    print(result.summary(), file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED
