"""Run the embedded registry in a process of its own, from async code.

The demo, the benchmarks and ``layerhoist bench`` keep the registry out of the
client's process so that client and server never share one event loop or one core's
worth of interpreter lock, and so their CPU time can be measured apart.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import Process

#: The line ``python -m layerhoist.registry`` prints once it accepts requests.
READY_PREFIX = "listening on "
#: How long a starting registry may take to print its ready line.
START_TIMEOUT = 30.0
#: How long a registry may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
#: Keys for clients of a registry started without ``--credentials`` (it checks no signature).
CLIENT_ACCESS_KEY = "AKIDLAYERHOISTLOCAL"
CLIENT_SECRET_KEY = "layerhoist-local"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at the time of asking, for a registry on a fixed port."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def client_env() -> dict[str, str]:
    """This process's environment for a client of such a registry: fixed dummy AWS keys.

    Every ``AWS_*`` variable of the machine is left out and the AWS configuration files are
    empty, so real credentials, profiles and session tokens never reach the local registry.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=CLIENT_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=CLIENT_SECRET_KEY,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


class RegistryProcess:
    """``async with RegistryProcess(data_dir=..., args=[...]) as reg: reg.endpoint_url``."""

    def __init__(
        self, *, data_dir: Path, args: Sequence[str] = (), host: str = "127.0.0.1"
    ) -> None:
        self._command = [
            sys.executable,
            "-m",
            "layerhoist.registry",
            "--host",
            host,
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            *args,
        ]
        self._process: Process | None = None
        self.endpoint_url = ""

    @property
    def pid(self) -> int:
        """The registry's process id (to read its CPU time)."""
        assert self._process is not None
        return self._process.pid

    async def __aenter__(self) -> Self:
        self._process = await anyio.open_process(self._command, stdout=subprocess.PIPE, stderr=None)
        assert self._process.stdout is not None
        line = b""
        with anyio.fail_after(START_TIMEOUT):
            async for chunk in self._process.stdout:
                line += chunk
                if b"\n" in line:
                    break
        text = line.decode("utf-8", "replace").strip()
        if not text.startswith(READY_PREFIX):
            await self._stop()
            raise RuntimeError(f"embedded registry did not start: {text or 'no output'}")
        self.endpoint_url = text[len(READY_PREFIX) :]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with anyio.CancelScope(shield=True):
            process.terminate()
            with anyio.move_on_after(STOP_TIMEOUT):
                await process.wait()
                return
            process.kill()
            await process.wait()
