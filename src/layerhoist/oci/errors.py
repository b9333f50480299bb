"""The OCI distribution transport's error table: registry error codes, HTTP statuses, aiohttp.

A registry's refusal is a :class:`RegistryResponseError` (raised by
:class:`~layerhoist.oci.client.RegistryClient` for any answer it does not expect), carrying the
HTTP status, the ``errors`` of the distribution-format JSON body and ``Retry-After``.
:class:`OciErrors` turns it, and aiohttp's own exceptions, into verdicts: the code of the first
error is looked up in the table; a code the table does not list falls back on the status (429
and 5xx retry, 401/403 are credential failures, 404 means the thing is not there, other 4xx
fail), but a :class:`StaleTokenError` (a token refused after it had worked) retries, with a
fresh token. One table serves both sides of a copy: ``role`` picks the error classes (a
missing source image is a :class:`~layerhoist.errors.SourceError`, a missing destination
repository a :class:`~layerhoist.errors.RepositoryNotFoundError`) and the option names the
hints give (``--src-creds`` or ``--dest-creds``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import aiohttp

from layerhoist.errors import (
    CredentialsError,
    DestinationError,
    LayerhoistError,
    RepositoryNotFoundError,
    SourceError,
)
from layerhoist.transfer.verdicts import (
    Classifier,
    Rule,
    Verdict,
    fail_rule,
    parse_retry_after,
    requeue_rule,
    retry_rule,
)

Role = Literal["source", "destination"]

#: Characters of a registry's error message kept in one-line messages (some registries send a
#: whole HTML page as the body of a 5xx).
MAX_MESSAGE_LENGTH = 200
#: HTTP status of "too many requests".
THROTTLED_STATUS = 429
#: HTTP statuses of transient failures.
TRANSIENT_STATUSES: frozenset[int] = frozenset({408, 500, 502, 503, 504})
#: HTTP statuses of authentication and authorization failures.
CREDENTIAL_STATUSES: frozenset[int] = frozenset({401, 403})
NOT_FOUND_STATUS = 404
UNAUTHORIZED_STATUS = 401


class ImageNotFoundError(SourceError):
    """The source registry has no such repository, tag, manifest or blob."""


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of a distribution error body: ``{"code": …, "message": …}``."""

    code: str
    message: str


class RegistryResponseError(Exception):
    """A registry answered ``what`` with an error status.

    ``errors`` are the entries of its JSON error body (empty when it sent none);
    ``retry_after`` is its raw ``Retry-After`` header. The message holds no request header, so
    no credential can reach it.
    """

    def __init__(
        self,
        *,
        what: str,
        status: int,
        errors: tuple[ErrorDetail, ...] = (),
        retry_after: str | None = None,
    ) -> None:
        self.what = what
        self.status = status
        self.errors = errors
        self.retry_after = retry_after
        detail = "; ".join(f"{e.code}: {e.message}" if e.message else e.code for e in errors)
        super().__init__(f"{what}: HTTP {status}" + (f" ({detail})" if detail else ""))

    @property
    def code(self) -> str:
        """The first error code, or the HTTP status when the body named none."""
        return self.errors[0].code if self.errors else str(self.status)

    @property
    def message(self) -> str:
        """``what`` and the registry's messages, for one-line errors."""
        messages = "; ".join(e.message for e in self.errors if e.message)
        return f"{self.what}: {messages}" if messages else f"{self.what}: HTTP {self.status}"


class StaleTokenError(RegistryResponseError):
    """A 401 to a request whose body could not be sent again, refusing a bearer token the
    registry had accepted before (revoked, or expired earlier than announced).

    The token is dropped already: the request, sent again, goes with a fresh one.
    """


def parse_error_body(body: bytes) -> tuple[ErrorDetail, ...]:
    """The ``errors`` of a distribution error body; empty for anything else."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ()
    entries = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return ()
    details = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("code"), str):
            message = entry.get("message")
            text = message if isinstance(message, str) else ""
            details.append(ErrorDetail(entry["code"], " ".join(text.split())[:MAX_MESSAGE_LENGTH]))
    return tuple(details)


def _error_class(role: Role) -> type[LayerhoistError]:
    """What a failure of ``role``'s registry is reported as, unless the rule says better."""
    return SourceError if role == "source" else DestinationError


def _retry(role: Role, *, hint: str, throttled: bool = False) -> Rule:
    """A retry rule whose exhaustion is reported as an error of ``role``'s side."""
    rule = retry_rule(throttled=throttled, hint=hint)
    return dataclasses.replace(rule, error_class=_error_class(role))


def _rules(role: Role) -> Mapping[str, Rule]:
    """Registry error code -> rule, with the error classes and option names of ``role``."""
    side = "src" if role == "source" else "dest"
    missing: type[LayerhoistError] = ImageNotFoundError if role == "source" else DestinationError
    missing_repository: type[LayerhoistError] = (
        ImageNotFoundError if role == "source" else RepositoryNotFoundError
    )
    refused = _error_class(role)
    credentials = (
        f"the registry refused access: pass --{side}-creds USER[:PASS] or log in "
        "(--authfile, REGISTRY_AUTH_FILE, ~/.docker/config.json)"
    )
    throttled = _retry(
        role,
        throttled=True,
        hint="the registry kept throttling (a pull limit?); retries ran out: wait, lower "
        "--concurrency, or log in for a higher limit",
    )
    transient = _retry(role, hint="the registry kept failing this request; retries ran out")
    requeue = dataclasses.replace(requeue_rule(), error_class=refused)
    return MappingProxyType(
        {
            "TOOMANYREQUESTS": throttled,
            "UNAVAILABLE": transient,
            "UNAUTHORIZED": fail_rule(credentials, CredentialsError),
            "DENIED": fail_rule(
                f"the credentials in use may not do this: check --{side}-creds and the "
                "repository's permissions",
                CredentialsError,
            ),
            "NAME_UNKNOWN": fail_rule("check the repository name", missing_repository),
            "MANIFEST_UNKNOWN": fail_rule("check the tag or digest", missing),
            "BLOB_UNKNOWN": fail_rule("the registry lost a blob its manifest names", missing),
            "MANIFEST_BLOB_UNKNOWN": fail_rule(
                "a blob the manifest references is missing from the repository", refused
            ),
            "NAME_INVALID": fail_rule("check the repository name", refused),
            "TAG_INVALID": fail_rule("check the tag", refused),
            "MANIFEST_INVALID": fail_rule("the registry refused the manifest", refused),
            "UNSUPPORTED": fail_rule("the registry does not support this operation", refused),
            # An upload session the registry lost or refused: start the blob over.
            "BLOB_UPLOAD_UNKNOWN": requeue,
            "BLOB_UPLOAD_INVALID": requeue,
            "DIGEST_INVALID": requeue,
            "SIZE_INVALID": requeue,
        }
    )


def _status_rule(status: int, role: Role, rules: Mapping[str, Rule]) -> Rule:
    if status == THROTTLED_STATUS:
        return rules["TOOMANYREQUESTS"]
    if status in TRANSIENT_STATUSES:
        return rules["UNAVAILABLE"]
    if status in CREDENTIAL_STATUSES:
        return rules["UNAUTHORIZED" if status == UNAUTHORIZED_STATUS else "DENIED"]
    if status == NOT_FOUND_STATUS:
        return rules["MANIFEST_UNKNOWN"]
    return fail_rule("the registry refused the request", _error_class(role))


def _transport_errors(role: Role) -> tuple[tuple[type[BaseException], str, Rule], ...]:
    """aiohttp's exceptions, matched in order with ``isinstance`` (subclasses first)."""
    side = "src" if role == "source" else "dest"
    error_class = _error_class(role)
    network = _retry(
        role,
        hint="the connection to the registry kept failing: check the network and the host name",
    )
    tls = fail_rule(
        "TLS verification failed: check the host name and the CA certificates, or pass "
        f"--{side}-tls-verify=false for a registry without a trusted certificate or without TLS",
        error_class,
    )
    return (
        (aiohttp.ClientConnectorCertificateError, "TLSCertificate", tls),
        (aiohttp.ClientSSLError, "TLSError", tls),
        (
            aiohttp.ClientConnectorDNSError,
            "UnknownHost",
            fail_rule("the registry's host name does not resolve: check it", error_class),
        ),
        (aiohttp.ServerDisconnectedError, "ServerDisconnected", network),
        (aiohttp.ServerTimeoutError, "ReadTimeout", network),
        (aiohttp.ClientConnectorError, "ConnectFailed", network),
        (aiohttp.ClientPayloadError, "PayloadError", network),
        (aiohttp.ClientConnectionError, "ConnectionError", network),
        (
            aiohttp.InvalidURL,
            "InvalidURL",
            fail_rule("the registry sent an unusable URL", error_class),
        ),
    )


class OciErrors:
    """The :class:`~layerhoist.transfer.verdicts.ErrorTable` of the OCI distribution API."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self._rules = _rules(role)
        self._transport = _transport_errors(role)
        self._stale = _retry(
            role, hint="the registry kept refusing tokens it had issued; retries ran out"
        )

    def classify(
        self, exc: BaseException, *, operation: str | None, wall_clock: Callable[[], float]
    ) -> Verdict | None:
        """The verdict of a registry refusal or an aiohttp exception; ``None`` otherwise."""
        if isinstance(exc, RegistryResponseError):
            if isinstance(exc, StaleTokenError):
                rule = self._stale
            else:
                rule = self._rules.get(exc.code) or _status_rule(exc.status, self.role, self._rules)
            headers = {} if exc.retry_after is None else {"Retry-After": exc.retry_after}
            return rule.verdict(
                code=exc.code,
                message=exc.message,
                operation=operation,
                retry_after=parse_retry_after(headers, wall_clock=wall_clock),
                status=exc.status,
            )
        for transport_type, code, rule in self._transport:
            if isinstance(exc, transport_type):
                return rule.verdict(code=code, message=_one_line(exc), operation=operation)
        return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:MAX_MESSAGE_LENGTH] or type(exc).__name__


def classifier(role: Role) -> Classifier:
    """The classifier of requests to a registry on ``role``'s side of a copy."""
    return Classifier((OciErrors(role),))
