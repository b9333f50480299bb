"""What the kernel says things cost: every ``/proc``, ``wait4`` and ``getrusage`` reader.

The bench, its cells and the scripts under ``benchmarks/`` read CPU time and peak RSS from
here and nowhere else:

- a finished child process: :func:`measure_child` (``os.wait4``, so the figures are that
  child's alone, never a sum over other children);
- a running process or one of its threads: :func:`process_cpu` and :func:`peak_rss`
  (``/proc/PID/stat`` and ``/proc/PID/status``);
- this process: :func:`own_cpu_seconds` and :func:`own_peak_rss` (``getrusage``);
- the machine: :func:`machine_busy_seconds`, :func:`cpu_model`, :func:`memory_total` and
  :func:`load_average`.

The ``/proc`` readers return ``None`` where there is no ``/proc`` (off Linux) or the process
has gone.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import anyio

#: Bytes per unit of ``ru_maxrss`` and of the ``kB`` figures of ``/proc`` on Linux.
KIB = 1024
PROC = Path("/proc")
#: Fields of ``/proc/PID/stat`` after the command name: utime and stime (in clock ticks).
_UTIME_FIELD, _STIME_FIELD = 11, 12
#: Columns of the ``cpu`` line of ``/proc/stat``: idle, iowait, and guest time (already counted
#: in user time, so the sum stops before it).
_IDLE, _IOWAIT, _GUEST = 3, 4, 8


@dataclass(frozen=True, kw_only=True)
class ProcessUsage:
    """What a finished child process cost: the kernel's figures (``os.wait4``) and wall time."""

    #: Seconds from its start to its end, as the parent saw them.
    wall_seconds: float
    #: User plus system CPU seconds of the process and every thread it ran.
    cpu_seconds: float
    peak_rss_bytes: int
    exit_code: int


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds a process (or thread) has spent so far, in user and in system mode."""

    user: float
    system: float

    @property
    def total(self) -> float:
        """User plus system seconds."""
        return self.user + self.system


def _wait_child(
    command: Sequence[str],
    env: Mapping[str, str],
    stdin: bytes,
    stderr_on_failure: bool,
    started: list[subprocess.Popen[bytes]],
) -> tuple[bytes, ProcessUsage]:
    # Held-back stderr goes to a file, not a pipe: reading two pipes in turn could block on
    # a full one, and Popen.communicate would reap the child before wait4 could.
    with ExitStack() as stack:
        errors = stack.enter_context(tempfile.TemporaryFile()) if stderr_on_failure else None
        begun = time.monotonic()
        child = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=dict(env)
        )
        started.append(child)
        assert child.stdin is not None and child.stdout is not None
        with child.stdin:
            child.stdin.write(stdin)
        output = child.stdout.read()
        child.stdout.close()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - begun
        child.returncode = os.waitstatus_to_exitcode(status)
        if errors is not None and child.returncode != 0:
            errors.seek(0)
            sys.stderr.buffer.write(errors.read())
            sys.stderr.flush()
    return output, ProcessUsage(
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=usage.ru_maxrss * KIB,
        exit_code=child.returncode,
    )


async def measure_child(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    stdin: bytes = b"",
    stderr_on_failure: bool = False,
) -> tuple[bytes, ProcessUsage]:
    """Run ``command`` to the end; return its stdout and what it cost.

    Its stderr passes through, or with ``stderr_on_failure`` is shown only if it exits with
    an error. If the caller is cancelled the child is terminated.
    """
    started: list[subprocess.Popen[bytes]] = []
    try:
        return await anyio.to_thread.run_sync(
            _wait_child, command, env, stdin, stderr_on_failure, started, abandon_on_cancel=True
        )
    except BaseException:
        for child in started:
            child.terminate()
        raise


def process_cpu(pid: int, *, thread: int | None = None) -> CpuTimes | None:
    """CPU time of process ``pid`` (all its threads), or of its thread ``thread`` alone."""
    stat = PROC / str(pid) / "stat" if thread is None else PROC / f"{pid}/task/{thread}/stat"
    try:
        # The command name (field 2) is in parentheses and may itself hold spaces and ")".
        fields = stat.read_text().rpartition(")")[2].split()
        user, system = int(fields[_UTIME_FIELD]), int(fields[_STIME_FIELD])
    except (OSError, ValueError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return CpuTimes(user / ticks, system / ticks)


def peak_rss(pid: int) -> int | None:
    """The peak resident set of running process ``pid`` so far, in bytes (``VmHWM``)."""
    return _kib_field(PROC / str(pid) / "status", "VmHWM:")


def own_cpu_seconds() -> float:
    """User plus system CPU seconds this process has spent so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def own_peak_rss(*, children: bool = False) -> int:
    """The peak resident set of this process in bytes (with ``children``: of the largest
    child it has waited for)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss * KIB


def machine_busy_seconds() -> float | None:
    """CPU seconds every core of the machine has been busy since boot.

    Busy is everything but idle and I/O wait, whoever ran: the difference over a push shows
    whether other work on the machine competed with it.
    """
    try:
        with (PROC / "stat").open() as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[_IDLE] + fields[_IOWAIT]
    return (sum(fields[:_GUEST]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``, else what :mod:`platform` knows)."""
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_total() -> int | None:
    """The machine's memory in bytes (``MemTotal`` of ``/proc/meminfo``)."""
    return _kib_field(PROC / "meminfo", "MemTotal:")


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the system keeps them."""
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except OSError:
        return None


def _kib_field(path: Path, name: str) -> int | None:
    """The ``NAME: N kB`` line of a ``/proc`` file, in bytes."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1]) * KIB
    except (OSError, ValueError, IndexError):
        pass
    return None
