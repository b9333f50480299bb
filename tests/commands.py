"""Running the ``layerhoist`` command in tests: a real process, its exit code, its one line."""

from __future__ import annotations

import sys
from typing import Any

import anyio

#: Exit codes the CLI promises: users' scripts rely on these numbers, so they are written
#: out here rather than read from the package.
OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


async def layerhoist(env: dict[str, str], *args: str) -> Any:
    """Run ``python -m layerhoist ARGS`` without blocking the loop the registry serves on."""
    return await anyio.run_process(
        [sys.executable, "-m", "layerhoist", *args], check=False, env=env
    )


async def push_cli(
    env: dict[str, str], source: str, destination: str, endpoint: str, *extra: str
) -> Any:
    """``layerhoist push SOURCE DESTINATION --endpoint-url ENDPOINT EXTRA...``."""
    return await layerhoist(env, "push", source, destination, "--endpoint-url", endpoint, *extra)


def one_line_error(completed: Any) -> str:
    """The first ``layerhoist: error:`` line of a finished command (which printed no traceback)."""
    stderr: str = completed.stderr.decode()
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("layerhoist: error:")]
    assert len(errors) >= 1, stderr
    return errors[0]
