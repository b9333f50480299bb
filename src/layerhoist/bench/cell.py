"""One measured push of ``layerhoist bench``, in a process of its own.

``layerhoist bench --cell`` (a hidden option: the bench runs it, people do not) reads a
:class:`CellSpec` as JSON on stdin, pushes once, and prints one JSON object on stdout: the push
report (requests and latency per operation, retries by cause, bytes, seconds), the CPU seconds
of the push alone (whole process, event-loop thread, synthetic generation, the whole machine),
the memory budget's figures and what the client-side pacer did per operation; or
``{"error": ...}`` and exit code 1 when the push could not start. Progress lines go to stderr.

The bench starts one process per measured run, so that each run's CPU time and peak RSS are its
own (the parent reads them with ``os.wait4``: :mod:`layerhoist.bench.measure`) and no run
inherits another's heap. It goes through the ``layerhoist`` entry point, so it runs with the
process settings ``layerhoist push`` has (such as its malloc arena limit). The push is composed by
:func:`layerhoist.api.prepare_push`, as every push is; the cell times only its run, and reads
the destination's pacer statistics and a source object
(:class:`~layerhoist.bench.synth.SyntheticSource`) that no reference string names.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import anyio

from layerhoist.api import prepare_push
from layerhoist.bench.measure import machine_busy_seconds, own_cpu_seconds
from layerhoist.bench.synth import SyntheticPlan, SyntheticSource
from layerhoist.destinations import DestinationOptions, PartLimits
from layerhoist.errors import LayerhoistError
from layerhoist.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from layerhoist.refs import parse_destination, parse_source
from layerhoist.sources import Source, open_source
from layerhoist.transfer.config import Pacing, PushConfig, memory_bound, part_cost
from layerhoist.transfer.report import ImageOutcome
from layerhoist.transfer.retry import RetryEvent
from layerhoist.units import format_bytes

#: Requests that set the repository up before the push; they are left out of its figures.
SETUP_OPERATIONS = frozenset({"DescribeRepositories", "CreateRepository"})


@dataclass(frozen=True, kw_only=True)
class CellSpec:
    """What one measured push does. Exactly one of ``plan`` and ``source`` is set."""

    #: ``ecr-public:REPO`` or any form :func:`~layerhoist.refs.parse_destination` takes.
    destination: str
    #: A :class:`SyntheticPlan` in its JSON form.
    plan: dict[str, Any] | None = None
    #: A source reference (``oci:DIR[:TAG]``, ``docker-archive:FILE[:TAG]``).
    source: str | None = None
    blob_concurrency: int
    #: ``None`` follows the service's ``partSize``.
    part_size: int | None = None
    #: Client-side pacing (:attr:`~layerhoist.transfer.config.PushConfig.pacing`).
    pacing: Pacing = "auto"
    #: ``None`` keeps the default memory budget.
    memory_budget: int | None = None
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    registry_id: str | None = None
    #: Seconds between progress lines on stderr; ``None`` prints none.
    progress_interval: float | None = None
    #: Starts every progress line.
    label: str = ""

    def __post_init__(self) -> None:
        if (self.plan is None) == (self.source is None):
            raise ValueError("a cell needs exactly one of plan and source")

    def to_json(self) -> str:
        """The spec as a JSON document (what the cell process reads on stdin)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CellSpec:
        """The spec :meth:`to_json` wrote."""
        return cls(**json.loads(text))

    def config(self) -> PushConfig:
        """The push settings of the cell (defaults for everything the bench does not sweep)."""
        config = PushConfig(
            blob_concurrency=self.blob_concurrency, part_size=self.part_size, pacing=self.pacing
        )
        if self.memory_budget is None:
            return config
        return config.replace(memory_budget=self.memory_budget)


class CellProgress:
    """A :class:`~layerhoist.transfer.pipeline.ProgressSink`: a line every ``interval`` s."""

    def __init__(
        self,
        stream: TextIO,
        *,
        label: str,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._label = label
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last = self._started
        self._sent = 0
        self._blobs = 0
        self._images = 0
        self._retries = 0

    def _tick(self) -> None:
        now = self._clock()
        if now - self._last < self._interval:
            return
        self._last = now
        elapsed = now - self._started
        rate = self._sent / elapsed if elapsed > 0 else 0.0
        print(
            f"{self._label}[{elapsed:5.1f}s] {format_bytes(self._sent)} sent "
            f"({format_bytes(rate)}/s), {self._blobs} blobs, {self._images} images, "
            f"{self._retries} retries",
            file=self._stream,
            flush=True,
        )

    def blob_started(self, digest: str, size: int) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""

    def bytes_sent(self, digest: str, nbytes: int) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        self._sent += nbytes
        self._tick()

    def blob_finished(self, digest: str, *, ok: bool) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        self._blobs += 1
        self._tick()

    def image_finished(self, outcome: ImageOutcome) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        self._images += 1
        self._tick()

    def retried(self, event: RetryEvent) -> None:
        """See :class:`~layerhoist.transfer.pipeline.ProgressSink`."""
        self._retries += 1
        self._tick()


def memory_figures(config: PushConfig, limits: PartLimits, *, held_peak: int) -> dict[str, int]:
    """The memory budget, its bound (:mod:`layerhoist.transfer.config`) and the peak held."""
    part_size = config.part_size or config.max_part_size or limits.preferred_max_part_size
    expansion = limits.payload_expansion
    cost = part_cost(part_size, payload_expansion=expansion)
    wanted = memory_bound(config, part_size=part_size, payload_expansion=expansion)
    return {
        "held_peak_bytes": held_peak,
        "budget_bytes": config.memory_budget,
        "bound_bytes": min(config.memory_budget, wanted),
        "part_cost_bytes": cost,
    }


async def run_cell(spec: CellSpec) -> dict[str, Any]:
    """Push as ``spec`` says and return the figures (the JSON the process prints)."""
    config = spec.config()
    destination = parse_destination(spec.destination)
    options = DestinationOptions(
        endpoint_url=spec.endpoint_url,
        region=spec.region,
        profile=spec.profile,
        registry_id=spec.registry_id,
        create_repository=True,
    )
    synthetic = SyntheticSource(SyntheticPlan.from_json(spec.plan)) if spec.plan else None
    source: Source = synthetic or open_source(parse_source(spec.source or ""))
    progress = (
        None
        if spec.progress_interval is None
        else CellProgress(sys.stderr, label=spec.label, interval=spec.progress_interval)
    )
    try:
        async with prepare_push(
            source, destination, config=config, options=options, progress=progress
        ) as prepared:
            cpu_started = own_cpu_seconds()
            loop_started = time.thread_time()
            machine_started = machine_busy_seconds()
            result = await prepared.run()
            machine_ended = machine_busy_seconds()
            cpu = own_cpu_seconds() - cpu_started
            loop_cpu = time.thread_time() - loop_started
            pacer = prepared.destination.pacer
            pacing = (
                {op: dataclasses.asdict(stats) for op, stats in pacer.stats.items()}
                if pacer
                else {}
            )
            limits = prepared.destination.limits
    finally:
        await source.aclose()
    report = result.to_json()
    errors = [image.error for image in result.images if image.error]
    return {
        "ok": result.ok,
        "error": errors[0] if errors else None,
        "seconds": result.seconds,
        "bytes_sent": result.bytes_uploaded,
        "layer_bytes": sum(b.size for b in result.blobs if b.status == "uploaded"),
        "blobs_uploaded": sum(b.status == "uploaded" for b in result.blobs),
        "images_pushed": sum(image.status == "pushed" for image in result.images),
        "images": len(result.images),
        "requests": {
            op: figures for op, figures in report["requests"].items() if op not in SETUP_OPERATIONS
        },
        "retries": result.retry_causes(),
        "memory": memory_figures(config, limits, held_peak=result.memory_peak),
        "cpu_seconds": cpu,
        "loop_cpu_seconds": loop_cpu,
        "source_cpu_seconds": synthetic.generation_cpu_seconds if synthetic else 0.0,
        "machine_busy_seconds": None
        if machine_started is None or machine_ended is None
        else machine_ended - machine_started,
        "pacing": pacing,
    }


def main() -> int:
    """Run the cell whose spec is on stdin; print its figures on stdout; the exit code."""
    try:
        spec = CellSpec.from_json(sys.stdin.read())
        figures = anyio.run(run_cell, spec, backend="asyncio")
    except LayerhoistError as exc:
        print(json.dumps({"error": str(exc)}))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    print(json.dumps(figures))
    return EXIT_OK
