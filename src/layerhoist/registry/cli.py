"""``python -m layerhoist.registry`` / ``layerhoist serve``: run the embedded registry.

Prints exactly one line, ``listening on http://HOST:PORT``, to stdout once the
registry accepts requests, then serves until SIGINT or SIGTERM and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import anyio

from layerhoist.exits import EXIT_FAILED, EXIT_OK
from layerhoist.registry.server import EmbeddedRegistry
from layerhoist.registry.settings import FLAVORS, OCI_AUTH_MODES, RegistrySettings
from layerhoist.registry.simulation import QUOTA_PROFILES, SimulationSettings, parse_rate
from layerhoist.units import parse_duration, parse_size

#: The settings' own defaults, shown as the flags' defaults.
DEFAULTS = RegistrySettings(data_dir=Path())


def _credentials(pairs: list[str] | None) -> Mapping[str, str] | None:
    if not pairs:
        return None
    result = {}
    for pair in pairs:
        key, sep, secret = pair.partition(":")
        if not sep or not key or not secret:
            raise ValueError(f"credentials must look like AKID:SECRET, not {pair!r}")
        result[key] = secret
    return result


def _users(text: str | None) -> dict[str, str]:
    users = {}
    for pair in (text or "").split(","):
        if not pair:
            continue
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"--oci-users must look like USER:PASS[,USER:PASS...], not {pair!r}")
        users[user] = password
    return users


def _pull_limit(text: str | None) -> dict[str, object]:
    if text is None:
        return {}
    count, sep, window = text.partition("/")
    if not sep or not count.isascii() or not count.isdigit():
        raise ValueError(f"--pull-limit must look like N/WINDOW (100/6h), not {text!r}")
    return {"pull_limit": int(count), "pull_limit_window": parse_duration(window)}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the registry's options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where blobs and the catalog live (default: a temporary directory, removed at exit)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to each request")
    parser.add_argument("--bandwidth", help="per-connection rate, e.g. 25MB/s or 200Mbit/s")
    parser.add_argument(
        "--quotas", choices=sorted(QUOTA_PROFILES), help="apply a published request-rate profile"
    )
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of HTTP 500 answers")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="share of dropped requests")
    parser.add_argument("--corrupt-rate", type=float, default=0.0, help="share of corrupted parts")
    parser.add_argument("--upload-expiry", type=float, help="seconds an idle upload id lives")
    parser.add_argument("--seed", type=int, help="makes every simulated decision repeatable")
    parser.add_argument(
        "--credentials",
        action="append",
        metavar="AKID:SECRET",
        help="require SigV4 signatures by these credentials (repeatable)",
    )
    parser.add_argument("--part-size", help="partSize InitiateLayerUpload answers (e.g. 10MiB)")
    parser.add_argument("--min-part-size", help="smallest non-final part (default 5MiB)")
    parser.add_argument("--max-part-size", help="largest part accepted (default 20MiB)")
    parser.add_argument(
        "--region",
        default=DEFAULTS.region,
        help="region of ECR (private) signatures (default: %(default)s; ECR Public: us-east-1)",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULTS.header_timeout,
        help="seconds to send request headers, and to idle (default: %(default)s)",
    )
    parser.add_argument(
        "--body-idle-timeout",
        type=float,
        default=DEFAULTS.body_idle_timeout,
        help="seconds a request body may stall (default: %(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULTS.max_connections,
        help="connections served at once (keep it under ulimit -n) (default: %(default)s)",
    )
    parser.add_argument(
        "--max-buffered-body",
        help="request body bytes held at once, e.g. 512MiB (default: 16 of the largest)",
    )
    parser.add_argument(
        "--flavor",
        choices=FLAVORS,
        default=DEFAULTS.flavor,
        help="which registry /v2/ behaves like, quirks included (default: %(default)s)",
    )
    parser.add_argument(
        "--blob-mounting",
        action="store_true",
        help="--flavor ecr: start with the account setting BLOB_MOUNTING enabled (ECR's "
        "default is disabled; PutAccountSetting turns it on or off)",
    )
    parser.add_argument(
        "--oci-auth",
        choices=OCI_AUTH_MODES,
        default=DEFAULTS.oci_auth,
        help="how /v2/ clients authenticate (default: %(default)s)",
    )
    parser.add_argument(
        "--oci-users", metavar="USER:PASS[,USER:PASS...]", help="the accounts of /v2/"
    )
    parser.add_argument(
        "--oci-token-lifetime",
        metavar="DURATION",
        help="how long a token of the token realm lasts, its expires_in (e.g. 5m; "
        f"default {DEFAULTS.oci_token_lifetime:g} s)",
    )
    parser.add_argument(
        "--oci-token-revoked-after",
        metavar="DURATION",
        help="refuse realm tokens this long after they were issued, before the expiry they "
        "announce (a registry revoking tokens early)",
    )
    parser.add_argument(
        "--pull-limit",
        metavar="N/WINDOW",
        help="manifest GETs per client address and window, e.g. 100/6h (Docker Hub's)",
    )
    parser.add_argument(
        "--upload-idle-limit",
        type=float,
        default=DEFAULTS.upload_idle_limit,
        help="seconds before an untouched upload is removed (default: %(default)s)",
    )


def settings_from_args(args: argparse.Namespace, data_dir: Path) -> RegistrySettings:
    """The registry settings the parsed options describe; ``ValueError`` when invalid."""
    simulation = SimulationSettings(
        latency_ms=args.latency_ms,
        bandwidth=None if args.bandwidth is None else parse_rate(args.bandwidth),
        quotas=QUOTA_PROFILES[args.quotas] if args.quotas else {},
        fault_rate=args.fault_rate,
        drop_rate=args.drop_rate,
        corrupt_rate=args.corrupt_rate,
        upload_expiry=args.upload_expiry,
        seed=args.seed,
    )
    sizes = {
        name: parse_size(value)
        for name in ("part_size", "min_part_size", "max_part_size")
        if (value := getattr(args, name)) is not None
    }
    if args.max_buffered_body is not None:
        sizes["max_buffered_body_bytes"] = parse_size(args.max_buffered_body)
    durations = {
        name: parse_duration(value)
        for name in ("oci_token_lifetime", "oci_token_revoked_after")
        if (value := getattr(args, name)) is not None
    }
    return RegistrySettings(
        data_dir=data_dir,
        host=args.host,
        port=args.port,
        simulation=simulation,
        credentials=_credentials(args.credentials),
        region=args.region,
        header_timeout=args.header_timeout,
        body_idle_timeout=args.body_idle_timeout,
        max_connections=args.max_connections,
        upload_idle_limit=args.upload_idle_limit,
        flavor=args.flavor,
        blob_mounting=args.blob_mounting,
        oci_auth=args.oci_auth,
        oci_users=_users(args.oci_users),
    ).replace(**sizes, **durations, **_pull_limit(args.pull_limit))


async def serve(settings: RegistrySettings) -> None:
    """Run the registry until SIGINT or SIGTERM."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with EmbeddedRegistry(settings) as registry:
            print(f"listening on {registry.endpoint_url}", flush=True)
            async for _ in signals:
                break


def run(args: argparse.Namespace) -> int:
    """Serve as ``args`` say; the process exit code."""
    if args.data_dir is not None:
        return _run_in(args, args.data_dir)
    # Only a registry without a data directory of its own gets (and removes) a scratch one.
    with tempfile.TemporaryDirectory(prefix="layerhoist-registry-") as scratch:
        return _run_in(args, Path(scratch))


def _run_in(args: argparse.Namespace, data_dir: Path) -> int:
    try:
        settings = settings_from_args(args, data_dir)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    try:
        anyio.run(serve, settings, backend="asyncio")
    except OSError as error:
        print(f"error: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m layerhoist.registry``."""
    parser = argparse.ArgumentParser(
        prog="python -m layerhoist.registry",
        description="Run the embedded ECR / ECR Public compatible registry.",
    )
    configure_parser(parser)
    return run(parser.parse_args(argv))
