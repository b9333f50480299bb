"""Registry credentials: given on the command line, or found where Docker and podman keep them.

Lookup order for a registry (as skopeo and docker do):

1. explicit credentials (``--src-creds USER[:PASS]``);
2. the auth file: ``--authfile``, else ``REGISTRY_AUTH_FILE``, else
   ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``. In it:
   ``credHelpers[REGISTRY]`` (run ``docker-credential-NAME get``), then an ``auths`` entry
   (base64 ``auth`` of ``USER:PASS``, or ``username`` and ``password``), then ``credsStore``.

``auths`` keys are matched with or without a scheme and Docker Hub's ``/v1/`` suffix, and the
most specific ``HOST/NAMESPACE`` key (as podman writes them) wins over the bare host. Nothing
found means anonymous access. No password or token is ever part of a ``repr``, a log line or
an error message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from layerhoist.errors import CredentialsError, UsageError
from layerhoist.refs import DOCKER_HUB, DOCKER_HUB_ALIASES

AUTH_FILE_ENV = "REGISTRY_AUTH_FILE"
DOCKER_CONFIG_ENV = "DOCKER_CONFIG"
DOCKER_CONFIG_FILE = "config.json"
#: The server URL Docker's credential helpers know Docker Hub by.
DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"
HELPER_PREFIX = "docker-credential-"
#: A helper that takes longer than this is stuck (waiting for a keychain prompt, say).
HELPER_TIMEOUT = 30.0
#: What a credential helper prints when it has nothing for the server.
_HELPER_NOT_FOUND = "credentials not found"


@dataclass(frozen=True)
class Credentials:
    """A user name and its password (or token); the password never shows in a ``repr``."""

    username: str
    password: str = field(repr=False)


def parse_credentials(text: str) -> Credentials:
    """Parse ``USER[:PASS]`` (``--src-creds``); without ``:PASS`` the password is empty."""
    username, _, password = text.partition(":")
    if not username:
        raise UsageError("credentials need a user name: expected USER[:PASS]")
    return Credentials(username, password)


def default_auth_file(environ: Mapping[str, str] | None = None) -> Path:
    """The auth file used without ``--authfile``: ``REGISTRY_AUTH_FILE``, then Docker's."""
    env = os.environ if environ is None else environ
    if env.get(AUTH_FILE_ENV):
        return Path(env[AUTH_FILE_ENV])
    if env.get(DOCKER_CONFIG_ENV):
        return Path(env[DOCKER_CONFIG_ENV]) / DOCKER_CONFIG_FILE
    return Path.home() / ".docker" / DOCKER_CONFIG_FILE


async def find_credentials(
    registry: str,
    repository: str,
    *,
    auth_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials | None:
    """Credentials for ``registry`` (as references name it) from the auth file, if any.

    An ``auth_file`` given explicitly must exist; the default ones may be absent.
    """
    path = auth_file if auth_file is not None else default_auth_file(environ)
    apath = anyio.Path(path)
    if not await apath.is_file():
        if auth_file is not None:
            raise UsageError(f"auth file {path} does not exist")
        return None
    try:
        document = json.loads(await apath.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CredentialsError(f"auth file {path} is not readable JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise CredentialsError(f"auth file {path} is not a JSON object")
    keys = _lookup_keys(registry, repository)
    helpers = _section(document, "credHelpers")
    for key, helper in _matches(helpers, keys):
        if isinstance(helper, str) and helper:
            return await _run_helper(helper, key)
    auths = _section(document, "auths")
    for key, entry in _matches(auths, keys):
        found = _auth_entry(entry, where=f"auth file {path}: entry {key!r}")
        if found is not None:
            return found
    store = document.get("credsStore")
    if isinstance(store, str) and store:
        server = DOCKER_HUB_SERVER_URL if registry == DOCKER_HUB else registry
        return await _run_helper(store, server)
    return None


def _section(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = document.get(name)
    return value if isinstance(value, dict) else {}


def _normalize_key(key: str) -> str:
    """An auth file key as ``HOST[/PATH]``: no scheme, no Docker Hub ``/v1/``, no trailing ``/``."""
    text = key.split("://", 1)[-1].rstrip("/")
    host, _, path = text.partition("/")
    if path in {"v1", "v2"}:
        path = ""
    if host in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    return f"{host}/{path}" if path else host


def _lookup_keys(registry: str, repository: str) -> list[str]:
    """``HOST/A/B``, ``HOST/A``, ``HOST``: most specific first."""
    parts = repository.split("/")
    return [f"{registry}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)] + [registry]


def _matches(section: Mapping[str, Any], keys: list[str]) -> list[tuple[str, Any]]:
    """Entries of ``section`` whose normalized key is one of ``keys``, in the order of ``keys``."""
    by_key = {_normalize_key(key): (key, value) for key, value in section.items()}
    return [by_key[key] for key in keys if key in by_key]


def _auth_entry(entry: object, *, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise CredentialsError(f"{where}: 'auth' is not base64 of USER:PASS") from exc
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise CredentialsError(f"{where}: 'auth' is not base64 of USER:PASS")
        return Credentials(username, password)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and user and isinstance(secret, str):
        return Credentials(user, secret)
    return None


async def _run_helper(name: str, server: str) -> Credentials | None:
    """``docker-credential-NAME get`` for ``server``; ``None`` when it has nothing for it."""
    program = HELPER_PREFIX + name
    try:
        with anyio.fail_after(HELPER_TIMEOUT):
            result = await anyio.run_process(
                [program, "get"], input=server.encode(), check=False, stderr=subprocess.PIPE
            )
    except FileNotFoundError as exc:
        raise CredentialsError(
            f"credential helper {program} (named in the auth file) is not installed"
        ) from exc
    except TimeoutError as exc:
        raise CredentialsError(
            f"credential helper {program} did not answer within {HELPER_TIMEOUT:g} s"
        ) from exc
    output = (result.stdout + result.stderr).decode(errors="replace")
    if result.returncode != 0:
        if _HELPER_NOT_FOUND in output.lower():
            return None
        # The helper's first line only: its output is never echoed in full, in case it holds
        # a secret.
        first = output.strip().splitlines()[0][:100] if output.strip() else ""
        raise CredentialsError(
            f"credential helper {program} failed for {server} (exit {result.returncode}: {first})"
        )
    try:
        answer = json.loads(result.stdout)
        username, secret = answer["Username"], answer["Secret"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CredentialsError(
            f"credential helper {program} answered for {server} without Username and Secret"
        ) from exc
    if not isinstance(username, str) or not isinstance(secret, str):
        raise CredentialsError(f"credential helper {program} answered with non-string values")
    return Credentials(username, secret)
