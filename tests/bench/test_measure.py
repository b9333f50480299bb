"""The kernel's figures: child processes measured with ``wait4``, running ones from ``/proc``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from layerhoist.bench.measure import (
    cpu_model,
    load_average,
    machine_busy_seconds,
    measure_child,
    memory_total,
    own_cpu_seconds,
    own_peak_rss,
    peak_rss,
    process_cpu,
)
from layerhoist.units import MiB

pytestmark = pytest.mark.anyio

#: What the busy child holds at once: far above an idle interpreter's resident set.
HELD = 64 * MiB
#: CPU seconds the busy child spends in its one thread.
SPIN = 0.2
#: Echoes stdin, holds ``HELD`` bytes, spins the CPU a little and exits with its argument.
CHILD = f"""
import sys, time
data = sys.stdin.buffer.read()
held = bytearray({HELD})
held[::4096] = b"x" * len(held[::4096])
until = time.process_time() + {SPIN}
while time.process_time() < until:
    pass
sys.stdout.buffer.write(data)
sys.stderr.write("said on stderr\\n")
sys.exit(int(sys.argv[1]))
"""
#: Writes its process id to the file its argument names, then sleeps far longer than a test.
SLEEPER = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"
#: Seconds a child is given to start or to stop before the test fails.
PATIENCE = 10.0
#: Seconds between two looks at what a child did.
POLL = 0.01


async def test_a_child_is_measured_alone(capfd: pytest.CaptureFixture[str]) -> None:
    output, usage = await measure_child(
        [sys.executable, "-c", CHILD, "3"], env=os.environ, stdin=b"hello"
    )
    assert output == b"hello"
    assert usage.exit_code == 3
    assert usage.wall_seconds >= usage.cpu_seconds >= SPIN
    assert HELD <= usage.peak_rss_bytes < 4 * HELD
    assert capfd.readouterr().err == "said on stderr\n"


@pytest.mark.parametrize(("code", "shown"), [(0, ""), (1, "said on stderr\n")])
async def test_stderr_can_be_held_back_unless_the_child_fails(
    capfd: pytest.CaptureFixture[str], code: int, shown: str
) -> None:
    _, usage = await measure_child(
        [sys.executable, "-c", CHILD, str(code)], env=os.environ, stderr_on_failure=True
    )
    assert usage.exit_code == code
    assert capfd.readouterr().err == shown


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(POLL)


async def test_a_cancelled_measure_terminates_its_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    async def measure() -> None:
        await measure_child([sys.executable, "-c", SLEEPER, str(pid_file)], env=os.environ)

    async with anyio.create_task_group() as group:
        group.start_soon(measure)
        await anyio.to_thread.run_sync(
            _wait_until, lambda: pid_file.exists() and pid_file.stat().st_size > 0
        )
        group.cancel_scope.cancel()
    # Terminated, then reaped by the wait4 of the abandoned thread.
    proc = Path("/proc", pid_file.read_text())
    await anyio.to_thread.run_sync(_wait_until, lambda: not proc.exists())


def test_running_processes_and_threads_are_read_from_proc(tmp_path: Path) -> None:
    # The command name in /proc/PID/stat is the executable's: one with ") " in it must not
    # shift the fields that follow.
    odd = tmp_path / "odd) name 1"
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "import time; time.sleep(60)"])
    try:
        times = process_cpu(child.pid)
        assert times is not None and times.total >= 0
        assert (peak_rss(child.pid) or 0) > 0
    finally:
        child.kill()
        child.wait()
    assert process_cpu(child.pid) is None
    assert peak_rss(child.pid) is None
    own = process_cpu(os.getpid())
    main_thread = process_cpu(os.getpid(), thread=threading.get_native_id())
    assert own is not None and main_thread is not None
    assert 0 < main_thread.total <= own.total <= own_cpu_seconds() + 0.1


def test_this_process_and_the_machine() -> None:
    # The same counter, in the same unit (kernels keep it in kB).
    assert peak_rss(os.getpid()) == pytest.approx(own_peak_rss(), rel=0.01)
    busy = machine_busy_seconds()
    assert busy is not None and busy > 0
    assert cpu_model()
    assert (memory_total() or 0) > own_peak_rss()
    averages = load_average()
    assert averages is not None and len(averages) == 3
