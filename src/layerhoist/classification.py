"""The one table that decides what happens to every error a push can meet.

Each exception the service, the network, the credential chain or layerhoist itself raises is
classified into a :class:`Verdict` whose :class:`Action` is one of:

- ``RETRY_PART``: send the same request again after a backoff (throttling, 5xx, timeouts,
  dropped connections). ``throttled`` marks the verdicts that should slow the pacer down.
- ``REQUEUE_LAYER``: abandon the upload id and upload the whole layer again later
  (InvalidLayerException, UploadNotFoundException, … and a part whose retries ran out).
- ``FAIL``: no retry can help; :func:`to_user_error` turns the verdict into the
  :mod:`layerhoist.errors` exception to report, with a hint saying what the user can do.

Service error codes are looked up in :data:`SERVICE_ERRORS`; a code not listed there falls back
on its HTTP status (429 and 5xx retry the part, 401/403 are credential failures, other 4xx
fail). Transport errors are matched by type in :data:`TRANSPORT_ERRORS`. Anything else is a
FAIL, so a bug never turns into an endless retry loop. An exception group (from a task
group) takes the most severe verdict of its members.

``LayerAlreadyExistsException``, ``ImageAlreadyExistsException`` and
``RepositoryAlreadyExistsException`` are FAIL verdicts with ``already_present=True``: the
thing the request wanted to create is there already, which the pipeline counts as success
before it ever classifies. The flag lets any other caller do the same without knowing the codes.
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import botocore.exceptions

from layerhoist.errors import (
    CredentialsError,
    DestinationError,
    LayerhoistError,
    RepositoryNotFoundError,
    UsageError,
)

if TYPE_CHECKING:
    from layerhoist.scheduler import RetryEvent


class Action(Enum):
    """What the caller does with a failed request."""

    #: Send the same request (the same part of the same upload) again after a backoff.
    RETRY_PART = "retry-part"
    #: Give up this upload id and upload the whole layer again from its first byte.
    REQUEUE_LAYER = "requeue-layer"
    #: Stop: report :func:`to_user_error` of the verdict for the item.
    FAIL = "fail"


@dataclass(frozen=True)
class Verdict:
    """The classification of one exception.

    ``code`` is the service's error code, or a short name for a transport error
    (``ConnectionReset``, ``ReadTimeout``…). ``message`` is the service's message or
    ``str(exc)``. ``hint`` says what the user can do when the verdict ends the item (for
    retryable verdicts: when retries run out). ``retry_after`` is the server's
    ``Retry-After`` in seconds, when it sent one.
    """

    action: Action
    code: str
    message: str
    hint: str
    throttled: bool = False
    retry_after: float | None = None
    #: HTTP status of the service's answer, when there was one.
    status: int | None = None
    #: The :mod:`layerhoist.errors` class :func:`to_user_error` builds for this verdict.
    error_class: type[LayerhoistError] = DestinationError
    #: The request wanted to create something that already exists (success for the pipeline).
    already_present: bool = False
    #: A layerhoist error classified as itself: :func:`to_user_error` returns it unchanged.
    error: LayerhoistError | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Rule:
    """One row of the classification table."""

    action: Action
    hint: str
    throttled: bool = False
    error_class: type[LayerhoistError] = DestinationError
    already_present: bool = False


class RetriesExhausted(Exception):
    """Part retries ran out: raised by :func:`layerhoist.scheduler.retry_call` from the last error.

    ``verdict`` is the last error's verdict (RETRY_PART), ``events`` the retries that were
    made, and ``reason`` says whether the per-call ``attempts`` or the run-wide retry budget
    ran out. :func:`classify` maps it to REQUEUE_LAYER (attempts: a fresh upload may succeed
    where the same upload id kept failing) or FAIL (budget: the run allows no more retries).
    """

    def __init__(
        self,
        verdict: Verdict,
        events: tuple[RetryEvent, ...],
        *,
        attempts: int,
        reason: Literal["attempts", "budget"],
    ) -> None:
        super().__init__(f"{verdict.code}: {verdict.message} (gave up after {attempts} attempts)")
        self.verdict = verdict
        self.events = events
        self.attempts = attempts
        self.reason = reason


#: Order of actions from least to most severe, for errors that arrive together.
_SEVERITY: Mapping[Action, int] = MappingProxyType(
    {Action.RETRY_PART: 0, Action.REQUEUE_LAYER: 1, Action.FAIL: 2}
)

_RETRY_HINT = "the destination kept failing this request; retries ran out, run the push again"
_THROTTLE_HINT = (
    "the destination kept throttling; retries ran out: lower --concurrency or "
    "ask AWS to raise the request-rate quota"
)
_REQUEUE_HINT = "the destination kept rejecting the uploaded layer; uploads of it ran out"
_NETWORK_HINT = "the connection to the destination kept failing: check the network and endpoint"
_CREDENTIALS_HINT = "configure AWS credentials (environment, --profile, SSO or instance role)"
_BUDGET_HINT = "the run's retry budget is spent: run the push again once the destination recovers"
_BUG_HINT = "an unexpected error: please report it with the command line that caused it"


def _retry(*, throttled: bool = False) -> Rule:
    return Rule(Action.RETRY_PART, _THROTTLE_HINT if throttled else _RETRY_HINT, throttled)


def _requeue() -> Rule:
    return Rule(Action.REQUEUE_LAYER, _REQUEUE_HINT)


def _fail(hint: str, error_class: type[LayerhoistError] = DestinationError) -> Rule:
    return Rule(Action.FAIL, hint, error_class=error_class)


def _present(hint: str) -> Rule:
    return Rule(Action.FAIL, hint, already_present=True)


_DENIED_HINT = "the credentials in use are not allowed to call {operation}: check their IAM policy"
_SIGNATURE_HINT = "the secret key does not match the access key (or the system clock is off)"
_UNKNOWN_KEY_HINT = "the access key is not known to AWS: check the credentials"
_EXPIRED_HINT = "the session credentials expired: refresh them (e.g. aws sso login)"
_SSO_HINT = "the SSO session expired: run aws sso login"
_PARAMETER_HINT = "the destination rejected a parameter of {operation}: check the repository name"

#: Service error code -> rule. Hints may name ``{operation}`` (the API operation that failed).
SERVICE_ERRORS: Mapping[str, Rule] = MappingProxyType(
    {
        # Throttling: slow down (the pacer), then send the same part again.
        "ThrottlingException": _retry(throttled=True),
        "Throttling": _retry(throttled=True),
        "ThrottledException": _retry(throttled=True),
        "TooManyRequestsException": _retry(throttled=True),
        "RequestLimitExceeded": _retry(throttled=True),
        "RequestThrottled": _retry(throttled=True),
        "RequestThrottledException": _retry(throttled=True),
        "SlowDown": _retry(throttled=True),
        # ECR's modeled rate-limit error (PutImage at 10/s meets it first).
        "LimitExceededException": _retry(throttled=True),
        # Transient service failures.
        "ServerException": _retry(),
        "ServiceUnavailable": _retry(),
        "ServiceUnavailableException": _retry(),
        "InternalFailure": _retry(),
        "InternalError": _retry(),
        "InternalServerError": _retry(),
        "InternalServerException": _retry(),
        "RequestTimeout": _retry(),
        "RequestTimeoutException": _retry(),
        "PriorRequestNotComplete": _retry(),
        # The upload id or the bytes it received are unusable: start the layer over.
        "InvalidLayerException": _requeue(),
        "UploadNotFoundException": _requeue(),
        "InvalidLayerPartException": _requeue(),
        "LayerPartTooSmallException": _requeue(),
        "EmptyUploadException": _requeue(),
        # Already there: success for the pipeline, which checks before classifying.
        "LayerAlreadyExistsException": _present("the layer is already in the repository"),
        "ImageAlreadyExistsException": _present("the image is already in the repository"),
        "RepositoryAlreadyExistsException": _present("the repository exists already"),
        # The destination refuses for good.
        "RepositoryNotFoundException": _fail(
            "create it, or pass --create-repo", RepositoryNotFoundError
        ),
        "RegistryNotFoundException": _fail(
            "check --registry-id, --region and --endpoint-url", RepositoryNotFoundError
        ),
        "AccessDenied": _fail(_DENIED_HINT, CredentialsError),
        "AccessDeniedException": _fail(_DENIED_HINT, CredentialsError),
        "UnrecognizedClientException": _fail(_UNKNOWN_KEY_HINT, CredentialsError),
        "InvalidClientTokenId": _fail(_UNKNOWN_KEY_HINT, CredentialsError),
        "InvalidSignatureException": _fail(_SIGNATURE_HINT, CredentialsError),
        "SignatureDoesNotMatch": _fail(_SIGNATURE_HINT, CredentialsError),
        "MissingAuthenticationTokenException": _fail(_CREDENTIALS_HINT, CredentialsError),
        "ExpiredToken": _fail(_EXPIRED_HINT, CredentialsError),
        "ExpiredTokenException": _fail(_EXPIRED_HINT, CredentialsError),
        "InvalidParameterException": _fail(_PARAMETER_HINT),
        "ValidationException": _fail(_PARAMETER_HINT),
        "LayersNotFoundException": _fail(
            "a blob the manifest references is missing from the repository: run the push again"
        ),
        "ReferencedImagesNotFoundException": _fail(
            "a manifest the index references is missing from the repository: run the push again"
        ),
        "ImageTagAlreadyExistsException": _fail(
            "the repository's tags are immutable: push under a new tag"
        ),
        "ImageDigestDoesNotMatchException": _fail(
            "the manifest bytes do not hash to the digest sent: the source manifest is corrupt"
        ),
        "UnsupportedImageTypeException": _fail(
            "the destination does not accept this manifest media type"
        ),
        "ImageNotFoundException": _fail("the image is not in the repository"),
        "KmsException": _fail("the repository's KMS key refused the request: check its policy"),
    }
)

#: HTTP status codes of transient failures, for service codes not in :data:`SERVICE_ERRORS`.
TRANSIENT_STATUSES: frozenset[int] = frozenset({500, 502, 503, 504})
#: HTTP status of "too many requests".
THROTTLED_STATUS = 429
#: HTTP statuses of authentication and authorization failures.
CREDENTIAL_STATUSES: frozenset[int] = frozenset({401, 403})

_NETWORK = Rule(Action.RETRY_PART, _NETWORK_HINT)
_SSL_HINT = "TLS verification failed: check --endpoint-url and the CA bundle (AWS_CA_BUNDLE)"

#: Transport errors, matched in order with ``isinstance`` (subclasses before their bases):
#: type -> (code, rule). botocore wraps aiohttp errors raised inside a request; the raw
#: aiohttp and OS errors appear when a source or a body stream breaks instead.
TRANSPORT_ERRORS: tuple[tuple[type[BaseException], str, Rule], ...] = (
    (botocore.exceptions.SSLError, "SSLError", _fail(_SSL_HINT)),
    (aiohttp.ClientSSLError, "SSLError", _fail(_SSL_HINT)),
    (botocore.exceptions.ConnectTimeoutError, "ConnectTimeout", _NETWORK),
    (botocore.exceptions.ReadTimeoutError, "ReadTimeout", _NETWORK),
    (botocore.exceptions.ProxyConnectionError, "ProxyConnectFailed", _NETWORK),
    (botocore.exceptions.EndpointConnectionError, "ConnectFailed", _NETWORK),
    (botocore.exceptions.ConnectionClosedError, "ConnectionClosed", _NETWORK),
    (botocore.exceptions.ResponseStreamingError, "ResponseStreaming", _NETWORK),
    (botocore.exceptions.ConnectionError, "ConnectFailed", _NETWORK),
    (botocore.exceptions.HTTPClientError, "HTTPClientError", _NETWORK),
    (aiohttp.ServerDisconnectedError, "ServerDisconnected", _NETWORK),
    (aiohttp.ServerTimeoutError, "ReadTimeout", _NETWORK),
    (aiohttp.ClientConnectorError, "ConnectFailed", _NETWORK),
    (aiohttp.ClientPayloadError, "PayloadError", _NETWORK),
    (aiohttp.ClientConnectionError, "ConnectionError", _NETWORK),
    (ConnectionResetError, "ConnectionReset", _NETWORK),
    (BrokenPipeError, "BrokenPipe", _NETWORK),
    (ConnectionAbortedError, "ConnectionAborted", _NETWORK),
    (ConnectionRefusedError, "ConnectionRefused", _NETWORK),
    (TimeoutError, "Timeout", _NETWORK),
)

#: ``OSError.errno`` values of a broken connection (an ``OSError`` with another errno, such as
#: a missing source file, is a FAIL).
TRANSIENT_ERRNOS: Mapping[int, str] = MappingProxyType(
    {
        errno.ECONNRESET: "ConnectionReset",
        errno.EPIPE: "BrokenPipe",
        errno.ECONNABORTED: "ConnectionAborted",
        errno.ECONNREFUSED: "ConnectionRefused",
        errno.ETIMEDOUT: "Timeout",
        errno.ENETUNREACH: "NetworkUnreachable",
        errno.EHOSTUNREACH: "HostUnreachable",
        errno.ENETDOWN: "NetworkDown",
    }
)

#: botocore errors raised before any request is sent: configuration, not the service.
CLIENT_SETUP_ERRORS: tuple[tuple[type[BaseException], Rule], ...] = (
    (botocore.exceptions.NoCredentialsError, _fail(_CREDENTIALS_HINT, CredentialsError)),
    (botocore.exceptions.PartialCredentialsError, _fail(_CREDENTIALS_HINT, CredentialsError)),
    (
        botocore.exceptions.CredentialRetrievalError,
        _fail(
            "the credential provider failed: check the profile's configuration", CredentialsError
        ),
    ),
    (
        botocore.exceptions.TokenRetrievalError,
        _fail(_SSO_HINT, CredentialsError),
    ),
    (
        botocore.exceptions.UnauthorizedSSOTokenError,
        _fail(_SSO_HINT, CredentialsError),
    ),
    (botocore.exceptions.ProfileNotFound, _fail("check --profile and AWS_PROFILE", UsageError)),
    (botocore.exceptions.NoRegionError, _fail("pass --region or set AWS_REGION", UsageError)),
    (
        botocore.exceptions.ParamValidationError,
        _fail("check the repository name and tag", UsageError),
    ),
)


def classify(
    exc: BaseException,
    *,
    operation: str | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> Verdict:
    """Classify ``exc`` raised while calling ``operation`` (the API operation, for hints).

    ``wall_clock`` (seconds since the epoch) is only read to turn a ``Retry-After`` given as
    an HTTP date into seconds.
    """
    if isinstance(exc, BaseExceptionGroup):
        return _group(exc, operation=operation, wall_clock=wall_clock)
    if isinstance(exc, LayerhoistError):
        return _own_error(exc)
    if isinstance(exc, RetriesExhausted):
        return _exhausted(exc)
    if isinstance(exc, botocore.exceptions.ClientError):
        return _service_error(exc, operation=operation, wall_clock=wall_clock)
    for setup_type, rule in CLIENT_SETUP_ERRORS:
        if isinstance(exc, setup_type):
            return _verdict(rule, code=type(exc).__name__, message=str(exc), operation=operation)
    for transport_type, code, rule in TRANSPORT_ERRORS:
        if isinstance(exc, transport_type):
            return _verdict(rule, code=code, message=str(exc), operation=operation)
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in TRANSIENT_ERRNOS:
        return _verdict(
            _NETWORK, code=TRANSIENT_ERRNOS[exc.errno], message=str(exc), operation=operation
        )
    return Verdict(
        Action.FAIL, type(exc).__name__, str(exc), _BUG_HINT, error_class=LayerhoistError
    )


def to_user_error(verdict: Verdict, *, subject: str) -> LayerhoistError:
    """The :mod:`layerhoist.errors` exception reporting ``verdict`` for ``subject``.

    ``subject`` names what failed (``ecr-public:foo/bar``, a blob digest…); the message reads
    ``SUBJECT: CODE: MESSAGE (HINT)``. A verdict that classified a layerhoist error returns
    that error itself.
    """
    if verdict.error is not None:
        return verdict.error
    text = f"{subject}: {verdict.code}"
    if verdict.message:
        text = f"{text}: {verdict.message}"
    if issubclass(verdict.error_class, DestinationError):
        return verdict.error_class(text, code=verdict.code, hint=verdict.hint)
    return verdict.error_class(f"{text} ({verdict.hint})" if verdict.hint else text)


def _verdict(
    rule: Rule, *, code: str, message: str, operation: str | None, **extra: Any
) -> Verdict:
    return Verdict(
        rule.action,
        code,
        message,
        rule.hint.format(operation=operation or "this operation"),
        throttled=rule.throttled,
        error_class=rule.error_class,
        already_present=rule.already_present,
        **extra,
    )


def _group(
    group: BaseExceptionGroup[BaseException],
    *,
    operation: str | None,
    wall_clock: Callable[[], float],
) -> Verdict:
    """The most severe verdict among a task group's errors (the first of equals).

    A group is retryable only if every error in it is: one fatal error among transient
    ones fails the item.
    """
    verdicts = [
        classify(inner, operation=operation, wall_clock=wall_clock) for inner in group.exceptions
    ]
    return max(verdicts, key=lambda verdict: _SEVERITY[verdict.action])


def _own_error(exc: LayerhoistError) -> Verdict:
    code = exc.code if isinstance(exc, DestinationError) and exc.code else type(exc).__name__
    hint = exc.hint if isinstance(exc, DestinationError) else ""
    return Verdict(Action.FAIL, code, exc.message, hint, error_class=type(exc), error=exc)


def _exhausted(exc: RetriesExhausted) -> Verdict:
    last = exc.verdict
    if exc.reason == "budget":
        return Verdict(
            Action.FAIL,
            last.code,
            last.message,
            _BUDGET_HINT,
            throttled=last.throttled,
            status=last.status,
            error_class=last.error_class,
        )
    return Verdict(
        Action.REQUEUE_LAYER,
        last.code,
        last.message,
        last.hint,
        throttled=last.throttled,
        retry_after=last.retry_after,
        status=last.status,
        error_class=last.error_class,
    )


def _service_error(
    exc: botocore.exceptions.ClientError,
    *,
    operation: str | None,
    wall_clock: Callable[[], float],
) -> Verdict:
    response: Mapping[str, Any] = exc.response or {}
    error: Mapping[str, Any] = response.get("Error") or {}
    metadata: Mapping[str, Any] = response.get("ResponseMetadata") or {}
    code = _normalize_code(str(error.get("Code") or ""))
    message = str(error.get("Message") or "")
    status = metadata.get("HTTPStatusCode")
    status = status if isinstance(status, int) else None
    headers: Mapping[str, Any] = metadata.get("HTTPHeaders") or {}
    retry_after = _retry_after(headers, wall_clock=wall_clock)
    rule = SERVICE_ERRORS.get(code) or _status_rule(status)
    return _verdict(
        rule,
        code=code or (str(status) if status is not None else "ClientError"),
        message=message,
        operation=operation or exc.operation_name,
        retry_after=retry_after,
        status=status,
    )


def _normalize_code(code: str) -> str:
    """Strip the namespace (``com.amazonaws.ecr#X``) and URL suffix (``X:http://…``) of a code."""
    return code.rsplit("#", 1)[-1].split(":", 1)[0]


def _status_rule(status: int | None) -> Rule:
    if status == THROTTLED_STATUS:
        return _retry(throttled=True)
    if status in TRANSIENT_STATUSES:
        return _retry()
    if status in CREDENTIAL_STATUSES:
        return _fail(_DENIED_HINT, CredentialsError)
    return _fail("the destination refused the request")


def _retry_after(headers: Mapping[str, Any], *, wall_clock: Callable[[], float]) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), if present and valid."""
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if value is None:
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - wall_clock()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None
