"""Debian's docker-registry (the CNCF distribution registry) as a process of its own.

The tests and the benchmarks run it as an independent OCI registry: a source seeded by
skopeo, a destination skopeo reads back, optionally behind htpasswd Basic auth.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from layerhoist.registry.launcher import free_port

#: Seconds docker-registry may take to listen on its port.
DISTRIBUTION_START_TIMEOUT = 15.0
#: How often a starting process's port is tried.
POLL_SECONDS = 0.05
#: The bcrypt cost of htpasswd entries: the lowest bcrypt allows, so logins stay fast.
HTPASSWD_BCRYPT_ROUNDS = 4


def wait_listening(
    process: subprocess.Popen[bytes], port: int, *, name: str, timeout: float
) -> None:
    """Wait until ``process`` listens on local ``port``; RuntimeError if it exits or is slow."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start listening within {timeout} s") from exc
            time.sleep(POLL_SECONDS)


@dataclass(frozen=True)
class Distribution:
    """A running ``docker-registry serve`` on ``host`` (``127.0.0.1:PORT``), plain HTTP.

    ``users`` are its htpasswd accounts (empty: no auth). :meth:`seed` pushes images into it
    with skopeo.
    """

    host: str
    root: Path
    users: dict[str, str]
    skopeo: str

    def seed(self, layout: Path, tag: str, destination: str, *, all_platforms: bool = False) -> str:
        """``skopeo copy oci:LAYOUT:TAG docker://HOST/DESTINATION``; returns the manifest digest.

        Digests are preserved (skopeo would otherwise compress the layout's tar layers).
        """
        digest_file = self.root.parent / f"digest-{os.getpid()}-{time.monotonic_ns()}"
        command = [
            self.skopeo,
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--digestfile",
            str(digest_file),
        ]
        if all_platforms:
            command.append("--all")
        if self.users:
            user, password = next(iter(self.users.items()))
            command += ["--dest-creds", f"{user}:{password}"]
        command += [f"oci:{layout}:{tag}", f"docker://{self.host}/{destination}"]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        return digest_file.read_text().strip()

    def manifest_path(self, repository: str) -> Path:
        """Where distribution keeps the revisions of ``repository``'s manifests."""
        return self.root / "docker/registry/v2/repositories" / repository / "_manifests"


def htpasswd(users: Mapping[str, str]) -> str:
    """htpasswd lines (bcrypt) for ``users``; bcrypt is a development dependency."""
    import bcrypt

    """htpasswd lines with bcrypt hashes, the only kind distribution accepts."""
    lines = []
    for user, password in users.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(HTPASSWD_BCRYPT_ROUNDS))
        lines.append(f"{user}:{hashed.decode()}\n")
    return "".join(lines)


@contextmanager
def distribution_process(
    directory: Path, *, binary: str, skopeo: str, users: Mapping[str, str] | None = None
) -> Iterator[Distribution]:
    """Run ``docker-registry serve`` with its storage and config under ``directory``.

    ``users`` (name -> password) turn on htpasswd Basic auth. The registry listens on a free
    local port, plain HTTP, and is stopped when the context ends.
    """
    users = dict(users or {})
    port = free_port()
    root = directory / "storage"
    lines = [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
    ]
    if users:
        htpasswd_file = directory / "htpasswd"
        htpasswd_file.write_text(htpasswd(users))
        lines += [
            "auth:",
            "  htpasswd:",
            "    realm: layerhoist-test",
            f"    path: {htpasswd_file}",
        ]
    config = directory / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(process, port, name="docker-registry", timeout=DISTRIBUTION_START_TIMEOUT)
        yield Distribution(f"127.0.0.1:{port}", root, users, skopeo)
    finally:
        process.terminate()
        process.wait()
