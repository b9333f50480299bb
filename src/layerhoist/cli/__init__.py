"""The ``layerhoist`` command: ``push`` images, ``serve`` the embedded registry.

Exit codes: 0 success, 1 some image failed (or the run could not start), 2 usage
error, 130 interrupted. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from typing import NoReturn, get_args

import anyio
from rich.console import Console

from layerhoist import __version__, bench
from layerhoist.allocator import tune_malloc
from layerhoist.api import push
from layerhoist.cli import argtypes
from layerhoist.destinations import DestinationOptions
from layerhoist.errors import LayerhoistError, UsageError
from layerhoist.push.config import Pacing, PushConfig
from layerhoist.push.pipeline import ProgressSink
from layerhoist.push.progress import PlainProgress, TerminalProgress
from layerhoist.push.report import PushResult
from layerhoist.registry import cli as registry_cli
from layerhoist.units import format_bytes

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: 128 + SIGINT, what shells expect of a command stopped by Ctrl-C.
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``layerhoist`` command."""
    parser = _Parser(prog="layerhoist", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"layerhoist {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    defaults = PushConfig()
    p = commands.add_parser("push", help="push images into ECR Public or ECR")
    p.add_argument("source", help="oci:DIR[:TAG] or docker-archive:FILE[:TAG]")
    p.add_argument(
        "destination",
        help="ecr-public:REPO[:TAG], ecr:REPO[:TAG], public.ecr.aws/ALIAS/REPO[:TAG] "
        "or ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG]",
    )
    p.add_argument(
        "--concurrency",
        type=argtypes.positive_int,
        default=defaults.blob_concurrency,
        help=f"blobs uploading at once (default {defaults.blob_concurrency})",
    )
    p.add_argument(
        "--part-size",
        type=argtypes.size,
        default=None,
        help="part size, e.g. 10MiB (default: the service's partSize, clamped to 5-10 MiB)",
    )
    p.add_argument(
        "--memory-budget",
        type=argtypes.size,
        default=defaults.memory_budget,
        help=f"layer bytes held in memory at once (default {format_bytes(defaults.memory_budget)})",
    )
    p.add_argument(
        "--retry-budget",
        type=int,
        default=defaults.retry_budget,
        help=f"retries allowed over the whole run (default {defaults.retry_budget})",
    )
    p.add_argument(
        "--pacing",
        choices=get_args(Pacing),
        default=defaults.pacing,
        help="pace requests to the published quotas: auto (on AWS endpoints), published, off",
    )
    p.add_argument("--endpoint-url", help="API endpoint (e.g. the embedded registry's URL)")
    p.add_argument("--region", help="AWS region (ECR private; ECR Public is us-east-1)")
    p.add_argument("--profile", help="AWS profile from the shared config")
    p.add_argument("--registry-id", help="registry (account) id")
    p.add_argument("--create-repo", action="store_true", help="create the repository if missing")
    p.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress display")

    s = commands.add_parser("serve", help="run the embedded ECR-compatible registry")
    registry_cli.configure_parser(s)

    b = commands.add_parser("bench", help="benchmark push speed and show what limits it")
    bench.configure_parser(b)
    return parser


def _progress(args: argparse.Namespace, console: Console) -> ProgressSink | None:
    if args.quiet:
        return None
    if console.is_terminal:
        return TerminalProgress(console)
    return PlainProgress(sys.stderr)


async def _run_push(args: argparse.Namespace, config: PushConfig) -> PushResult:
    options = DestinationOptions(
        endpoint_url=args.endpoint_url,
        region=args.region,
        profile=args.profile,
        registry_id=args.registry_id,
        create_repository=args.create_repo,
    )
    console = Console(stderr=True, soft_wrap=True)
    progress = _progress(args, console)
    if isinstance(progress, TerminalProgress):
        with progress:
            return await push(
                args.source, args.destination, config=config, options=options, progress=progress
            )
    return await push(
        args.source, args.destination, config=config, options=options, progress=progress
    )


def _push_command(args: argparse.Namespace) -> int:
    try:
        config = PushConfig(
            blob_concurrency=args.concurrency,
            part_size=args.part_size,
            memory_budget=args.memory_budget,
            retry_budget=args.retry_budget,
            pacing=args.pacing,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    # What is imported by now lives as long as the process: frozen, it is left out
    # of every later collection instead of traversed by each full one.
    gc.freeze()
    result = anyio.run(_run_push, args, config)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    for image in result.images:
        if image.status != "pushed":
            print(f"layerhoist: error: {image.error}", file=sys.stderr)
    print(result.summary(), file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also the console script's entry)."""
    tune_malloc()
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return registry_cli.run(args)
        if args.command == "bench":
            return bench.run(args)
        return _push_command(args)
    except LayerhoistError as exc:
        print(f"layerhoist: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("layerhoist: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
