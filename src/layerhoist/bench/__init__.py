"""``layerhoist bench``: how fast can we push from here, with which settings, and what limits it.

::

    layerhoist bench [--dest DEST] [--size 4MiB,8MiB] [--layers N] [--images N]
                     [--concurrency 1,4,16] [--part-size 5MiB,10MiB] [--profile lan|wan|far]
                     [--repeat N] [--json FILE] [--plot FILE.png] [--source oci:DIR] [--keep]
                     [--no-quotas] [--pacing auto|published|off] [--seed N] [--quiet]

It sweeps every combination of ``--concurrency`` (blobs in flight) and ``--part-size``; each
combination (a *cell*) is pushed ``--repeat`` times, after one unrecorded warm-up push. Every
push runs in a client process of its own (:mod:`layerhoist.bench.cell`), into a fresh
repository, so each is a cold push whose CPU time and peak RSS the kernel reports alone.

Without ``--dest`` the pushes go to the embedded registry, started in a separate process (client
and server never share an event loop). It enforces the ECR Public request-rate quotas, which the
clients pace themselves at as they would against the service (``--no-quotas`` drops both), and
simulates the network of ``--profile``: latency per request, bandwidth per connection. Parts
travel as base64, so a connection of 25 MB/s carries 18.75 MB/s of layer bytes.

========  ==========  ==========================  ==========================================
profile   latency     bandwidth per connection    like
========  ==========  ==========================  ==========================================
lan       none        unlimited                   same host or data centre; CPU-bound
wan       40 ms       25 MB/s                     a good link to a nearby AWS region
far       150 ms      8 MB/s                      another continent
========  ==========  ==========================  ==========================================

With ``--dest`` the pushes go to the real ECR Public or ECR repository it names, with the normal
AWS credentials: each push goes to a scratch repository named
``REPO/layerhoist-bench-scratch-RUNID/...``, deleted with everything in it at the end unless
``--keep``. Synthetic layers are incompressible bytes generated from ``--seed`` and streamed
(:mod:`layerhoist.bench.synth`); ``--source oci:DIR`` pushes a real image instead.

The result is a table on stdout (one row per cell, :mod:`layerhoist.bench.report` explains the
figures and the "limited by" column), ``--json`` with every run and the environment, and
``--plot`` a chart (:mod:`layerhoist.bench.plot`). Ctrl-C stops the sweep and still reports the
runs that finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, get_args

import aioboto3
import aiohttp
import anyio
from rich.console import Console

from layerhoist.bench import cell as benchcell
from layerhoist.bench.cell import EXIT_INTERRUPTED, SETUP_OPERATIONS, CellSpec
from layerhoist.bench.report import (
    MB,
    ProcessUsage,
    ServerUsage,
    blobs_in_flight,
    cells,
    environment,
    failed_record,
    load_average,
    render_table,
    run_record,
)
from layerhoist.bench.synth import SyntheticPlan, make_plan
from layerhoist.cli import argtypes
from layerhoist.destinations import part_limits
from layerhoist.destinations.ecr.limits import ECR_PUBLIC_REGION
from layerhoist.errors import UsageError
from layerhoist.refs import DestinationRef, parse_destination, parse_source
from layerhoist.registry.admin import STATS_PATH
from layerhoist.registry.launcher import RegistryProcess
from layerhoist.sources import open_source
from layerhoist.transfer.config import Pacing, PushConfig
from layerhoist.units import MiB, format_bytes, parse_size

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_SIZES = (4 * MiB, 8 * MiB)
DEFAULT_IMAGES = 2
DEFAULT_LAYERS = 8
DEFAULT_CONCURRENCY = (1, 4, 16)
DEFAULT_PART_SIZES = (5 * MiB, 10 * MiB)
DEFAULT_PROFILE = "wan"
DEFAULT_REPEAT = 1
DEFAULT_SEED = 0
#: Registry counters of the repository set-up before each push (its DescribeRepositories finds
#: nothing, as expected): left out of the push's figures.
SETUP_COUNTERS = SETUP_OPERATIONS | {"RepositoryNotFoundException"}
#: The process of one measured push.
CELL_COMMAND = (sys.executable, "-m", "layerhoist", "bench", "--cell")
#: Seconds between a client's progress lines.
PROGRESS_INTERVAL = 2.0
#: The quota profile of the embedded registry: the service the bench pushes to by default.
QUOTA_PROFILE = "ecr-public"
SCRATCH_PREFIX = "layerhoist-bench-scratch"
#: Characters of the random id that keeps one run's scratch repositories apart from another's.
RUN_ID_LENGTH = 8
#: Credentials handed to clients of the embedded registry, which accepts any key: real ones
#: must never be sent to it.
DUMMY_ACCESS_KEY = "AKIDLAYERHOISTBENCH"
DUMMY_SECRET_KEY = "layerhoist-bench"
#: Seconds to wait for the embedded registry's admin endpoint.
STATS_TIMEOUT = 10.0
#: Kibibytes per unit of ``ru_maxrss`` and of ``VmHWM`` on Linux.
KIB = 1024
#: Fields of ``/proc/PID/stat`` after the command name: utime and stime (in clock ticks).
_UTIME_FIELD, _STIME_FIELD = 11, 12


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


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _mib_list(values: Sequence[int]) -> str:
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
        help=f"synthetic layer sizes, cycled through (default {_mib_list(DEFAULT_SIZES)})",
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
        help=f"part sizes, swept (default {_mib_list(DEFAULT_PART_SIZES)})",
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
        type=parse_size,
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


class _Interrupted(Exception):
    """A client was stopped by SIGINT: the user pressed Ctrl-C."""


# ----------------------------------------------------------------------------- client processes


def _wait_child(
    command: Sequence[str],
    env: Mapping[str, str],
    stdin: bytes,
    started: list[subprocess.Popen[bytes]],
) -> tuple[bytes, ProcessUsage]:
    child = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, env=dict(env)
    )
    started.append(child)
    assert child.stdin is not None and child.stdout is not None
    with child.stdin:
        child.stdin.write(stdin)
    output = child.stdout.read()
    child.stdout.close()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return output, ProcessUsage(
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=usage.ru_maxrss * KIB,
        exit_code=child.returncode,
    )


async def measure_child(
    command: Sequence[str], *, env: Mapping[str, str], stdin: bytes = b""
) -> tuple[bytes, ProcessUsage]:
    """Run ``command`` to the end; return its stdout and what the kernel says it cost.

    stderr passes through. If the caller is cancelled the child is terminated.
    """
    started: list[subprocess.Popen[bytes]] = []
    try:
        return await anyio.to_thread.run_sync(
            _wait_child, command, env, stdin, started, abandon_on_cancel=True
        )
    except BaseException:
        for child in started:
            child.terminate()
        raise


def embedded_env() -> dict[str, str]:
    """This process's environment with dummy AWS credentials and no AWS configuration."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=DUMMY_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=DUMMY_SECRET_KEY,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


def _proc_cpu(pid: int, *, thread: int | None = None) -> float | None:
    """CPU seconds of process ``pid`` (or of one of its threads) from ``/proc``; Linux only."""
    path = Path(f"/proc/{pid}/stat") if thread is None else Path(f"/proc/{pid}/task/{thread}/stat")
    try:
        fields = path.read_text().rpartition(")")[2].split()
        ticks = int(fields[_UTIME_FIELD]) + int(fields[_STIME_FIELD])
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def _proc_peak_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * KIB
    except (OSError, ValueError, IndexError):
        pass
    return None


# ------------------------------------------------------------------------------------- targets


class _Target(Protocol):
    @property
    def description(self) -> str:
        """What the pushes go to, for people."""
        ...

    @property
    def endpoint_url(self) -> str | None:
        """The API endpoint clients use (``None``: the service's own)."""
        ...

    @property
    def env(self) -> Mapping[str, str]:
        """The environment of client processes (their credentials)."""
        ...

    def destination(self, name: str) -> str:
        """The destination reference of scratch repository ``name``."""
        ...

    async def counters(self) -> tuple[dict[str, Any] | None, float | None, float | None]:
        """The registry's counters and CPU seconds (process, event loop), where visible."""
        ...


async def _admin_stats(session: aiohttp.ClientSession, endpoint: str) -> dict[str, Any] | None:
    try:
        async with session.get(endpoint.rstrip("/") + STATS_PATH) as response:
            if response.status != 200:
                return None
            stats: dict[str, Any] = await response.json()
            return stats
    except (aiohttp.ClientError, ValueError):
        return None


class _EmbeddedTarget:
    """The embedded registry in a child process, simulating a network profile."""

    def __init__(
        self,
        registry: RegistryProcess,
        session: aiohttp.ClientSession,
        profile: NetworkProfile,
        args: Sequence[str],
    ) -> None:
        self._registry = registry
        self._session = session
        self.endpoint_url: str | None = registry.endpoint_url
        self.description = f"embedded registry, {profile.name} profile ({' '.join(args)})"
        self.env = embedded_env()

    def destination(self, name: str) -> str:
        return f"ecr-public:{SCRATCH_PREFIX}/{name}"

    async def counters(self) -> tuple[dict[str, Any] | None, float | None, float | None]:
        pid = self._registry.pid
        stats = await _admin_stats(self._session, self._registry.endpoint_url)
        return stats, _proc_cpu(pid), _proc_cpu(pid, thread=pid)

    def peak_rss(self) -> int | None:
        """The registry's peak RSS so far."""
        return _proc_peak_rss(self._registry.pid)


class _RemoteTarget:
    """A real repository (or the endpoint of ``--endpoint-url``) and its scratch repositories."""

    def __init__(
        self, settings: BenchSettings, ref: DestinationRef, session: aiohttp.ClientSession
    ) -> None:
        self._settings = settings
        self._ref = ref
        self._session = session
        self._prefix = f"{ref.repository}/{SCRATCH_PREFIX}-{uuid.uuid4().hex[:RUN_ID_LENGTH]}"
        self.endpoint_url = settings.endpoint_url
        self.description = f"{ref} (scratch repositories {self._prefix}/...)"
        self.env = dict(os.environ)
        self.created: list[str] = []

    def destination(self, name: str) -> str:
        repository = f"{self._prefix}/{name}"
        self.created.append(repository)
        return str(dataclasses.replace(self._ref, repository=repository, tag=None))

    async def counters(self) -> tuple[dict[str, Any] | None, float | None, float | None]:
        if self.endpoint_url is None:
            return None, None, None
        return await _admin_stats(self._session, self.endpoint_url), None, None

    async def delete_scratch(self) -> list[str]:
        """Delete every scratch repository made, with its images; return the ones that failed."""
        ref = self._ref
        region = (
            ECR_PUBLIC_REGION
            if ref.service == "ecr-public"
            else self._settings.region or ref.region
        )
        registry_id = self._settings.registry_id or ref.registry_id
        extra = {"registryId": registry_id} if registry_id else {}
        failed = []
        session = aioboto3.Session(profile_name=self._settings.aws_profile)
        async with session.client(
            ref.service, region_name=region, endpoint_url=self.endpoint_url
        ) as client:
            for repository in self.created:
                try:
                    await client.delete_repository(repositoryName=repository, force=True, **extra)
                except Exception as exc:
                    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                    if code != "RepositoryNotFoundException":
                        failed.append(f"{repository}: {exc}")
        return failed


# --------------------------------------------------------------------------------------- sweep


class Bench:
    """One sweep: its settings, the report it fills as runs finish, and where it says so."""

    def __init__(self, settings: BenchSettings, *, progress: Console | None) -> None:
        self.settings = settings
        self.progress = progress
        self.report: dict[str, Any] = {
            "layerhoist_bench": 1,
            "interrupted": False,
            "environment": environment(),
            "settings": settings.to_json() | {"target": None},
            "workload": None,
            "runs": [],
            "cells": [],
            "peak_rss_bytes": {},
        }

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.print(text, highlight=False)

    async def run(self) -> None:
        """Prepare the workload, open the target, warm up and sweep."""
        settings = self.settings
        plan = await self._workload()
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=STATS_TIMEOUT)
        ) as http:
            if settings.dest is None:
                assert settings.profile is not None
                with tempfile.TemporaryDirectory(prefix="layerhoist-bench-") as scratch:
                    args = settings.registry_args() or []
                    async with RegistryProcess(data_dir=Path(scratch), args=args) as registry:
                        target = _EmbeddedTarget(registry, http, settings.profile, args)
                        try:
                            await self._sweep(target, plan)
                        finally:
                            self.report["peak_rss_bytes"]["registry"] = target.peak_rss()
            else:
                remote = _RemoteTarget(settings, settings.dest, http)
                try:
                    await self._sweep(remote, plan)
                finally:
                    if not settings.keep and remote.created:
                        with anyio.CancelScope(shield=True):
                            failed = await remote.delete_scratch()
                        self.report["scratch_not_deleted"] = failed
                        for line in failed:
                            self._say(f"could not delete scratch repository {line}")

    async def _workload(self) -> SyntheticPlan | None:
        settings = self.settings
        if settings.source is not None:
            source = open_source(parse_source(settings.source))
            try:
                images = await source.load()
            finally:
                await source.aclose()
            blobs = {d.digest: d.size for image in images for d in image.blobs()}
            self.report["workload"] = {
                "description": f"{settings.source}: {len(images)} images, {len(blobs)} blobs, "
                f"{format_bytes(sum(blobs.values()))}",
                "images": len(images),
                "blobs": len(blobs),
                "bytes": sum(blobs.values()),
            }
            return None
        self._say(f"hashing {settings.images * settings.layers} synthetic layers ...")
        plan = await make_plan(
            seed=settings.seed,
            images=settings.images,
            layers=settings.layers,
            sizes=settings.sizes,
            workers=os.cpu_count() or 1,
        )
        self.report["workload"] = {
            "description": f"{_count(settings.images, 'image')} x "
            f"{_count(settings.layers, 'layer')} of "
            f"{_mib_list(settings.sizes)} ({format_bytes(plan.layer_bytes)} of synthetic layers, "
            f"seed {settings.seed})",
            "images": settings.images,
            "blobs": plan.layer_count + settings.images,
            "bytes": plan.layer_bytes,
        }
        return plan

    async def _sweep(self, target: _Target, plan: SyntheticPlan | None) -> None:
        settings = self.settings
        self.report["settings"]["target"] = target.description
        self._say(f"target: {target.description}")
        cells_ = list(itertools.product(settings.concurrency, settings.part_sizes))
        # Repeat 0 is the warm-up: pushed like the others, never recorded.
        warmup = [(max(settings.concurrency), settings.part_sizes[0], 0)] if settings.warmup else []
        todo = warmup + [
            (concurrency, part_size, repeat)
            for repeat in range(1, settings.repeat + 1)
            for concurrency, part_size in cells_
        ]
        total = len(cells_) * settings.repeat
        for concurrency, part_size, repeat in todo:
            shape = f"{blobs_in_flight(concurrency)}, {part_size / MiB:g} MiB parts"
            if repeat:
                number = len(self.report["runs"]) + 1
                self._say(f"run {number}/{total}: {shape}, repeat {repeat}/{settings.repeat}")
            else:
                self._say(f"warm-up push, not recorded: {shape}")
            record = await self._push(
                target,
                plan,
                concurrency=concurrency,
                part_size=part_size,
                name=f"c{concurrency}-p{part_size}-r{repeat}",
                repeat=repeat,
            )
            if record["ok"]:
                self._say(
                    f"  {record['throughput_mb_s']:.1f} MB/s in {record['seconds']:.1f}s; "
                    f"limited by {record['limit']}"
                )
            else:
                self._say(f"  FAILED: {record['error']}")
            started = "limit" in record
            if repeat or not started:
                self.report["runs"].append(record)
            if not started:
                self._say("stopping: the client could not start a push")
                return

    async def _push(
        self,
        target: _Target,
        plan: SyntheticPlan | None,
        *,
        concurrency: int,
        part_size: int,
        name: str,
        repeat: int,
    ) -> dict[str, Any]:
        settings = self.settings
        spec = CellSpec(
            destination=target.destination(name),
            plan=None if plan is None else plan.to_json(),
            source=settings.source,
            blob_concurrency=concurrency,
            part_size=part_size,
            pacing=settings.pacing,
            memory_budget=settings.memory_budget,
            endpoint_url=target.endpoint_url,
            region=settings.region,
            profile=settings.aws_profile,
            registry_id=settings.registry_id,
            progress_interval=None if settings.quiet else PROGRESS_INTERVAL,
            label="    ",
        )
        before = await target.counters()
        output, usage = await measure_child(
            CELL_COMMAND,
            env=target.env,
            stdin=spec.to_json().encode(),
        )
        if usage.exit_code in (EXIT_INTERRUPTED, -signal.SIGINT):
            raise _Interrupted
        after = await target.counters()
        try:
            client = json.loads(output)
        except ValueError:
            client = {"error": f"the client exited with code {usage.exit_code} and no report"}
        if "ok" not in client:
            return failed_record(
                concurrency=concurrency,
                part_size=part_size,
                repeat=repeat,
                error=client["error"],
                usage=usage,
            )
        profile = settings.profile
        return run_record(
            client,
            usage,
            server=_server_usage(before, after),
            concurrency=concurrency,
            part_size=part_size,
            repeat=repeat,
            bandwidth=None if profile is None else profile.bandwidth,
            latency_ms=None if profile is None else profile.latency_ms,
            cpus=os.cpu_count() or 1,
        )

    def finish(self) -> None:
        """Group the runs into cells and record the peak RSS the kernel saw."""
        report = self.report
        report["cells"] = cells(report["runs"])
        report["environment"]["load_average_at_end"] = load_average()
        clients = [run["client"]["peak_rss_bytes"] for run in report["runs"]]
        report["peak_rss_bytes"].update(
            clients=max(clients, default=None),
            bench_process=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB,
            process_tree=max(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            )
            * KIB,
        )


def _delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {
        key: value - before.get(key, 0)
        for key, value in after.items()
        if value != before.get(key, 0)
    }


def _without_setup(counters: Mapping[str, int]) -> dict[str, int]:
    return {key: value for key, value in counters.items() if key not in SETUP_COUNTERS}


def _server_usage(
    before: tuple[dict[str, Any] | None, float | None, float | None],
    after: tuple[dict[str, Any] | None, float | None, float | None],
) -> ServerUsage | None:
    stats_before, cpu_before, loop_before = before
    stats_after, cpu_after, loop_after = after
    if stats_before is None or stats_after is None:
        return None
    return ServerUsage(
        cpu_seconds=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        loop_cpu_seconds=None
        if loop_before is None or loop_after is None
        else loop_after - loop_before,
        part_bytes_received=stats_after["part_bytes_received"]
        - stats_before["part_bytes_received"],
        requests=_without_setup(_delta(stats_after["requests"], stats_before["requests"])),
        errors=_without_setup(_delta(stats_after["errors"], stats_before["errors"])),
    )


def run(args: argparse.Namespace) -> int:
    """Run the bench as ``args`` say; the exit code (0 ok, 1 a run failed, 2 usage, 130 Ctrl-C)."""
    if args.cell:
        return benchcell.main()
    settings = BenchSettings.from_args(args)
    stderr = Console(stderr=True, soft_wrap=True)
    bench = Bench(settings, progress=None if settings.quiet else stderr)
    try:
        anyio.run(bench.run, backend="asyncio")
    except (KeyboardInterrupt, _Interrupted):
        bench.report["interrupted"] = True
    bench.finish()
    report = bench.report
    render_table(report, Console(soft_wrap=False, width=max(Console().width, 150)))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot is not None:
        # matplotlib takes a second to import: only when a chart is asked for.
        from layerhoist.bench.plot import plot_sweep

        plot_sweep(report, args.plot)
    if report["interrupted"]:
        return EXIT_INTERRUPTED
    failed = any(
        not r["ok"] or (r.get("bytes_check") or {}).get("equal") is False for r in report["runs"]
    )
    return EXIT_FAILED if failed else EXIT_OK
