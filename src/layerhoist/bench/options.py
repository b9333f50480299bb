"""The options of ``layerhoist bench``: the parser, the network profiles and the checked settings.

Building the parser is part of every ``layerhoist`` start-up, so this module imports nothing
that talks to a network, draws or pushes: only the references, the part limits and the push
configuration it validates the options against.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from layerhoist.cli import argtypes
from layerhoist.destinations import part_limits
from layerhoist.errors import UsageError
from layerhoist.refs import DestinationRef, parse_destination, parse_source
from layerhoist.transfer.config import Pacing, PushConfig
from layerhoist.units import MB, MiB, parse_size

DEFAULT_SIZES = (4 * MiB, 8 * MiB)
DEFAULT_IMAGES = 2
DEFAULT_LAYERS = 8
DEFAULT_CONCURRENCY = (1, 4, 16)
DEFAULT_PART_SIZES = (5 * MiB, 10 * MiB)
DEFAULT_PROFILE = "wan"
DEFAULT_REPEAT = 1
DEFAULT_SEED = 0
#: The quota profile of the embedded registry: the service the bench pushes to by default.
QUOTA_PROFILE = "ecr-public"
#: Starts the name of every scratch repository the bench pushes to.
SCRATCH_PREFIX = "layerhoist-bench-scratch"
#: What draws ``--plot``: an optional extra, since the bench mostly runs headless.
PLOT_PACKAGE = "matplotlib"
PLOT_EXTRA = "layerhoist[bench]"


@dataclass(frozen=True)
class NetworkProfile:
    """A network the embedded registry simulates: latency per request, bandwidth per connection."""

    name: str
    latency_ms: float
    #: Bytes per second per connection; ``None`` is unlimited.
    bandwidth: float | None

    def registry_args(self, *, quotas: str | None = QUOTA_PROFILE) -> list[str]:
        """The ``python -m layerhoist.registry`` options that simulate this network.

        ``quotas`` names the request-rate quota profile the registry enforces too (``None``:
        none).
        """
        args = [] if quotas is None else ["--quotas", quotas]
        if self.latency_ms:
            args += ["--latency-ms", f"{self.latency_ms:g}"]
        if self.bandwidth is not None:
            args += ["--bandwidth", f"{self.bandwidth / MB:g}MB/s"]
        return args


PROFILES: Mapping[str, NetworkProfile] = {
    "lan": NetworkProfile("lan", 0.0, None),
    "wan": NetworkProfile("wan", 40.0, 25 * MB),
    "far": NetworkProfile("far", 150.0, 8 * MB),
}


def _list_of(convert: Callable[[str], int]) -> Callable[[str], list[int]]:
    def parse(text: str) -> list[int]:
        try:
            values = [convert(item) for item in text.split(",") if item.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        if not values or min(values) <= 0:
            raise argparse.ArgumentTypeError(f"need positive values, got {text!r}")
        return list(dict.fromkeys(values))

    return parse


def mib_list(values: Sequence[int]) -> str:
    """``'4MiB,8MiB'``: sizes as the options take them."""
    return ",".join(f"{v / MiB:g}MiB" for v in values)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``layerhoist bench`` to ``parser``."""
    parser.add_argument(
        "--dest",
        help="benchmark a real repository (ecr-public:REPO, ecr:REPO, public.ecr.aws/ALIAS/REPO "
        "or ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO): scratch repositories are made under it",
    )
    parser.add_argument(
        "--source", help="push this image (oci:DIR[:TAG], docker-archive:FILE[:TAG])"
    )
    parser.add_argument(
        "--size",
        type=_list_of(parse_size),
        default=list(DEFAULT_SIZES),
        help=f"synthetic layer sizes, cycled through (default {mib_list(DEFAULT_SIZES)})",
    )
    parser.add_argument(
        "--layers",
        type=argtypes.positive_int,
        default=DEFAULT_LAYERS,
        help=f"layers per synthetic image (default {DEFAULT_LAYERS})",
    )
    parser.add_argument(
        "--images",
        type=argtypes.positive_int,
        default=DEFAULT_IMAGES,
        help=f"synthetic images (default {DEFAULT_IMAGES})",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="seed of the synthetic layers"
    )
    parser.add_argument(
        "--concurrency",
        type=_list_of(int),
        default=list(DEFAULT_CONCURRENCY),
        help=f"blobs in flight, swept (default {','.join(map(str, DEFAULT_CONCURRENCY))})",
    )
    parser.add_argument(
        "--part-size",
        type=_list_of(parse_size),
        default=list(DEFAULT_PART_SIZES),
        help=f"part sizes, swept (default {mib_list(DEFAULT_PART_SIZES)})",
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help=f"network the embedded registry simulates (default {DEFAULT_PROFILE})",
    )
    parser.add_argument(
        "--no-quotas",
        action="store_true",
        help="the embedded registry enforces no request-rate quotas (and clients pace nothing)",
    )
    parser.add_argument(
        "--pacing",
        choices=get_args(Pacing),
        help="client-side pacing at the published quotas (default: published on the embedded "
        "registry, which enforces them; off with --no-quotas; auto with --dest)",
    )
    parser.add_argument(
        "--memory-budget",
        type=argtypes.size,
        help="layer bytes a client may hold at once "
        f"(default {PushConfig().memory_budget / MiB:g}MiB)",
    )
    parser.add_argument(
        "--repeat",
        type=argtypes.positive_int,
        default=DEFAULT_REPEAT,
        help="runs per cell (default 1)",
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up push")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--plot", type=Path, help="draw throughput and p99 latency to this PNG")
    parser.add_argument("--keep", action="store_true", help="keep the scratch repositories")
    parser.add_argument("--endpoint-url", help="API endpoint of --dest")
    parser.add_argument("--region", help="AWS region of --dest (ECR private)")
    parser.add_argument("--aws-profile", help="AWS profile for --dest")
    parser.add_argument("--registry-id", help="registry (account) id of --dest")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    # One measured push, in the process the bench starts for it (layerhoist.bench.cell).
    parser.add_argument("--cell", action="store_true", help=argparse.SUPPRESS)


@dataclass(frozen=True, kw_only=True)
class BenchSettings:
    """The validated options of one bench."""

    dest: DestinationRef | None
    source: str | None
    sizes: tuple[int, ...]
    layers: int
    images: int
    seed: int
    concurrency: tuple[int, ...]
    part_sizes: tuple[int, ...]
    profile: NetworkProfile | None
    #: The quota profile the embedded registry enforces.
    quotas: str | None
    pacing: Pacing
    memory_budget: int | None
    repeat: int
    warmup: bool
    keep: bool
    endpoint_url: str | None
    region: str | None
    aws_profile: str | None
    registry_id: str | None
    quiet: bool
    #: Where to write every figure as JSON.
    json: Path | None
    #: Where to draw the chart.
    plot: Path | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchSettings:
        """Check the options; :class:`UsageError` names the first bad one."""
        if args.dest is not None and (args.profile is not None or args.no_quotas):
            raise UsageError(
                "--profile and --no-quotas set up the embedded registry; not with --dest"
            )
        remote_only = ("endpoint_url", "region", "aws_profile", "registry_id", "keep")
        if args.dest is None and any(getattr(args, name) for name in remote_only):
            raise UsageError(
                "--endpoint-url, --region, --aws-profile, --registry-id and --keep "
                "apply to --dest only"
            )
        dest = None if args.dest is None else parse_destination(args.dest)
        limits = part_limits(dest or parse_destination(f"ecr-public:{SCRATCH_PREFIX}/cell"))
        for concurrency, part_size in itertools.product(args.concurrency, args.part_size):
            try:
                limits.check(
                    PushConfig(blob_concurrency=concurrency, part_size=part_size).replace(
                        memory_budget=args.memory_budget or PushConfig().memory_budget
                    )
                )
            except (ValueError, UsageError) as exc:
                raise UsageError(f"--part-size/--concurrency/--memory-budget: {exc}") from exc
        if args.source is not None:
            parse_source(args.source)
        # Checked before any push: a sweep can take hours, and its chart is what was asked for.
        if args.plot is not None and importlib.util.find_spec(PLOT_PACKAGE) is None:
            raise UsageError(
                f"--plot needs {PLOT_PACKAGE}, which is not installed: pip install '{PLOT_EXTRA}'"
            )
        return cls(
            dest=dest,
            source=args.source,
            sizes=tuple(args.size),
            layers=args.layers,
            images=args.images,
            seed=args.seed,
            concurrency=tuple(args.concurrency),
            part_sizes=tuple(args.part_size),
            profile=None if args.dest else PROFILES[args.profile or DEFAULT_PROFILE],
            quotas=None if args.dest or args.no_quotas else QUOTA_PROFILE,
            pacing=args.pacing or _default_pacing(args),
            memory_budget=args.memory_budget,
            repeat=args.repeat,
            warmup=not args.no_warmup,
            keep=args.keep,
            endpoint_url=args.endpoint_url,
            region=args.region,
            aws_profile=args.aws_profile,
            registry_id=args.registry_id,
            quiet=args.quiet,
            json=args.json,
            plot=args.plot,
        )

    def registry_args(self) -> list[str] | None:
        """The options of the embedded registry (``None`` with ``--dest``)."""
        return None if self.profile is None else self.profile.registry_args(quotas=self.quotas)

    def to_json(self) -> dict[str, Any]:
        """The settings as they go into the JSON report."""
        defaults = PushConfig()
        return {
            "destination": None if self.dest is None else str(self.dest),
            "source": self.source,
            "synthetic": None
            if self.source
            else {
                "sizes": list(self.sizes),
                "layers": self.layers,
                "images": self.images,
                "seed": self.seed,
            },
            "concurrency": list(self.concurrency),
            "part_sizes": list(self.part_sizes),
            "profile": None if self.profile is None else dataclasses.asdict(self.profile),
            "registry_args": self.registry_args(),
            "pacing": self.pacing,
            "repeat": self.repeat,
            "warmup": self.warmup,
            "memory_budget": self.memory_budget or defaults.memory_budget,
            "read_ahead_parts": defaults.read_ahead_parts,
        }


def _default_pacing(args: argparse.Namespace) -> Pacing:
    # Against the embedded registry's quotas, clients pace as they would against the service.
    if args.dest:
        return "auto"
    return "off" if args.no_quotas else "published"
