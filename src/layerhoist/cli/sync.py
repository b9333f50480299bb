"""``layerhoist sync --config FILE``: keep destination repositories in step with their sources.

The file (:func:`layerhoist.sync.config.load_config`) says what goes where; the options say
how, as ``copy``'s do (the transfer options, the destination options that override the file's
``defaults:``, ``--authfile``). The plan is printed one line per tag (on stdout); errors are one
line each on stderr, then the summary. Exit codes: 0 every tag done (skipped tags included),
1 some tag failed, 2 a bad file or option, 3 another sync holds the state file.

``--dry-run`` prints the plan and writes nothing anywhere but the reports asked for: no
destination write, no state write. It does not take the state file's lock (it reads the file
as it is), so it can be run beside a sync in progress.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from functools import partial
from pathlib import Path

from layerhoist.cli import argtypes
from layerhoist.cli.copy import authfile_option, destination_options, push_config, transfer_options
from layerhoist.errors import UsageError
from layerhoist.sync.settings import DEFAULT_MAPPINGS_AT_ONCE


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``sync`` to ``parser``."""
    parser.add_argument("--config", type=Path, required=True, metavar="FILE", help="sync file")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan; write nothing anywhere"
    )
    parser.add_argument("--json", type=Path, metavar="REPORT", help="write a JSON report")
    parser.add_argument(
        "--metrics-file",
        type=Path,
        metavar="FILE",
        help="write a Prometheus textfile (node_exporter's textfile collector: *.prom)",
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="state file (default: layerhoist's directory in the user's cache)",
    )
    shards = parser.add_mutually_exclusive_group()
    shards.add_argument("--shard", metavar="I/N", help="take shard I (from 0) of N of the work")
    shards.add_argument(
        "--shards",
        type=argtypes.positive_int,
        metavar="N",
        help="take one shard of N, its index from JOB_COMPLETION_INDEX or "
        "AWS_BATCH_JOB_ARRAY_INDEX",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="ask the destination about every tag, even those the state file confirms",
    )
    parser.add_argument(
        "--mappings-at-once",
        type=argtypes.positive_int,
        default=DEFAULT_MAPPINGS_AT_ONCE,
        metavar="N",
        help=f"mappings copied at once (default {DEFAULT_MAPPINGS_AT_ONCE})",
    )
    transfer_options(parser)
    destination_options(parser)
    authfile_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no line per tag, only errors")


def run(args: argparse.Namespace) -> int:
    """Sync as ``args`` say; the exit code (errors that stop the run are raised)."""
    # Imported once the command runs: ``layerhoist --help`` stays fast.
    import anyio

    from layerhoist.sync.config import load_config
    from layerhoist.sync.model import Destination
    from layerhoist.sync.plan import plan_line
    from layerhoist.sync.report import SyncReport
    from layerhoist.sync.run import sync
    from layerhoist.sync.settings import SyncSettings
    from layerhoist.sync.shard import parse_shard, shard_from_environment

    if args.dry_run and args.metrics_file is not None:
        # Monitoring reads the file as what the last run did: a plan is not a run.
        raise UsageError(
            "--metrics-file records a run, and --dry-run runs nothing (--json reports the plan)"
        )
    config = load_config(args.config)
    shard = (
        parse_shard(args.shard)
        if args.shard is not None
        else shard_from_environment(args.shards)
        if args.shards is not None
        else None
    )
    settings = SyncSettings(
        config=push_config(args),
        destination=Destination(
            endpoint_url=args.endpoint_url,
            region=args.region,
            profile=args.profile,
            registry_id=args.registry_id,
        ),
        auth_file=args.authfile,
        verify=args.verify,
        chunk_size=args.chunk_size,
        mappings_at_once=args.mappings_at_once,
    )
    started, clock = time.time(), time.monotonic()
    # What is imported by now lives as long as the process (see ``copy``).
    gc.freeze()

    records = anyio.run(
        partial(sync, config, settings, state=args.state, shard=shard, dry_run=args.dry_run)
    )
    report = SyncReport(
        records,
        seconds=time.monotonic() - clock,
        dry_run=args.dry_run,
        shard=str(shard) if shard is not None else None,
        started=started,
    )
    if args.dry_run or not args.quiet:
        for record in records:
            print(plan_line(record))
    for record in records:
        if record.action == "failed":
            print(f"layerhoist: error: {record.error}", file=sys.stderr)
    if args.json is not None:
        report.write_json(args.json)
    if args.metrics_file is not None:
        report.write_metrics(args.metrics_file)
    print(report.summary(), file=sys.stderr)
    return report.exit_code
