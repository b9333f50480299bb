"""ECR's error table: its service codes, botocore's exceptions and aiohttp's, as verdicts.

Registered with the retry layer by :class:`~layerhoist.destinations.ecr.destination.EcrDestination`
(its ``errors``). Service error codes are looked up in :data:`SERVICE_ERRORS`; a code not listed
there falls back on its HTTP status (429 and 5xx retry the part, 401/403 are credential failures,
other 4xx fail). Client-side exceptions are matched by type in :data:`TRANSPORT_ERRORS` and
:data:`CLIENT_SETUP_ERRORS`. ``LayerAlreadyExistsException``, ``ImageAlreadyExistsException``
and ``RepositoryAlreadyExistsException`` are "already present" verdicts: success.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import aiohttp
import botocore.exceptions

from layerhoist.errors import CredentialsError, RepositoryNotFoundError, UsageError
from layerhoist.transfer.verdicts import (
    NETWORK_RULE,
    Action,
    Classifier,
    Rule,
    Verdict,
    fail_rule,
    parse_retry_after,
    present_rule,
    requeue_rule,
    retry_rule,
)

_THROTTLED = retry_rule(
    throttled=True,
    hint="the destination kept throttling; retries ran out: lower --concurrency or "
    "ask AWS to raise the request-rate quota",
)
_TRANSIENT = retry_rule()
#: A service error whose message says the registry's storage is full (the embedded registry
#: says so; space may come back, so it is retried, and the hint names the cause).
_OUT_OF_SPACE = retry_rule(
    hint="the destination is out of space: free space on its storage, then run the push again"
)
_OUT_OF_SPACE_WORDS = "out of space"
_CREDENTIALS_HINT = "configure AWS credentials (environment, --profile, SSO or instance role)"

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
        "ThrottlingException": _THROTTLED,
        "Throttling": _THROTTLED,
        "ThrottledException": _THROTTLED,
        "TooManyRequestsException": _THROTTLED,
        "RequestLimitExceeded": _THROTTLED,
        "RequestThrottled": _THROTTLED,
        "RequestThrottledException": _THROTTLED,
        "SlowDown": _THROTTLED,
        # ECR's modeled rate-limit error (PutImage at 10/s meets it first).
        "LimitExceededException": _THROTTLED,
        # Transient service failures.
        "ServerException": _TRANSIENT,
        "ServiceUnavailable": _TRANSIENT,
        "ServiceUnavailableException": _TRANSIENT,
        "InternalFailure": _TRANSIENT,
        "InternalError": _TRANSIENT,
        "InternalServerError": _TRANSIENT,
        "InternalServerException": _TRANSIENT,
        "RequestTimeout": _TRANSIENT,
        "RequestTimeoutException": _TRANSIENT,
        "PriorRequestNotComplete": _TRANSIENT,
        # The upload id or the bytes it received are unusable: start the layer over.
        "InvalidLayerException": requeue_rule(),
        "UploadNotFoundException": requeue_rule(),
        "InvalidLayerPartException": requeue_rule(),
        "LayerPartTooSmallException": requeue_rule(),
        "EmptyUploadException": requeue_rule(),
        # Already there: success for the pipeline, which checks before classifying.
        "LayerAlreadyExistsException": present_rule("the layer is already in the repository"),
        "ImageAlreadyExistsException": present_rule("the image is already in the repository"),
        "RepositoryAlreadyExistsException": present_rule("the repository exists already"),
        # The destination refuses for good.
        "RepositoryNotFoundException": fail_rule(
            "create it, or pass --create-repo", RepositoryNotFoundError
        ),
        "RegistryNotFoundException": fail_rule(
            "check --registry-id, --region and --endpoint-url", RepositoryNotFoundError
        ),
        "AccessDenied": fail_rule(_DENIED_HINT, CredentialsError),
        "AccessDeniedException": fail_rule(_DENIED_HINT, CredentialsError),
        "UnrecognizedClientException": fail_rule(_UNKNOWN_KEY_HINT, CredentialsError),
        "InvalidClientTokenId": fail_rule(_UNKNOWN_KEY_HINT, CredentialsError),
        "InvalidSignatureException": fail_rule(_SIGNATURE_HINT, CredentialsError),
        "SignatureDoesNotMatch": fail_rule(_SIGNATURE_HINT, CredentialsError),
        "MissingAuthenticationTokenException": fail_rule(_CREDENTIALS_HINT, CredentialsError),
        "ExpiredToken": fail_rule(_EXPIRED_HINT, CredentialsError),
        "ExpiredTokenException": fail_rule(_EXPIRED_HINT, CredentialsError),
        "InvalidParameterException": fail_rule(_PARAMETER_HINT),
        "ValidationException": fail_rule(_PARAMETER_HINT),
        "LayersNotFoundException": fail_rule(
            "a blob the manifest references is missing from the repository: run the push again"
        ),
        "ReferencedImagesNotFoundException": fail_rule(
            "a manifest the index references is missing from the repository: run the push again"
        ),
        "ImageTagAlreadyExistsException": fail_rule(
            "the repository's tags are immutable: push under a new tag"
        ),
        "ImageDigestDoesNotMatchException": fail_rule(
            "the manifest bytes do not hash to the digest sent: the source manifest is corrupt"
        ),
        "UnsupportedImageTypeException": fail_rule(
            "the destination does not accept this manifest media type"
        ),
        "ImageNotFoundException": fail_rule("the image is not in the repository"),
        "KmsException": fail_rule("the repository's KMS key refused the request: check its policy"),
    }
)

#: HTTP status codes of transient failures, for service codes not in :data:`SERVICE_ERRORS`.
TRANSIENT_STATUSES: frozenset[int] = frozenset({500, 502, 503, 504})
#: HTTP status of "too many requests".
THROTTLED_STATUS = 429
#: HTTP statuses of authentication and authorization failures.
CREDENTIAL_STATUSES: frozenset[int] = frozenset({401, 403})

_SSL_HINT = "TLS verification failed: check --endpoint-url and the CA bundle (AWS_CA_BUNDLE)"

#: Transport errors, matched in order with ``isinstance`` (subclasses before their bases):
#: type -> (code, rule). botocore wraps aiohttp errors raised inside a request; raw
#: aiohttp errors appear when a body stream breaks instead.
TRANSPORT_ERRORS: tuple[tuple[type[BaseException], str, Rule], ...] = (
    (botocore.exceptions.SSLError, "SSLError", fail_rule(_SSL_HINT)),
    (aiohttp.ClientSSLError, "SSLError", fail_rule(_SSL_HINT)),
    (botocore.exceptions.ConnectTimeoutError, "ConnectTimeout", NETWORK_RULE),
    (botocore.exceptions.ReadTimeoutError, "ReadTimeout", NETWORK_RULE),
    (botocore.exceptions.ProxyConnectionError, "ProxyConnectFailed", NETWORK_RULE),
    (botocore.exceptions.EndpointConnectionError, "ConnectFailed", NETWORK_RULE),
    (botocore.exceptions.ConnectionClosedError, "ConnectionClosed", NETWORK_RULE),
    (botocore.exceptions.ResponseStreamingError, "ResponseStreaming", NETWORK_RULE),
    (botocore.exceptions.ConnectionError, "ConnectFailed", NETWORK_RULE),
    (botocore.exceptions.HTTPClientError, "HTTPClientError", NETWORK_RULE),
    (aiohttp.ServerDisconnectedError, "ServerDisconnected", NETWORK_RULE),
    (aiohttp.ServerTimeoutError, "ReadTimeout", NETWORK_RULE),
    (aiohttp.ClientConnectorError, "ConnectFailed", NETWORK_RULE),
    (aiohttp.ClientPayloadError, "PayloadError", NETWORK_RULE),
    (aiohttp.ClientConnectionError, "ConnectionError", NETWORK_RULE),
)

#: botocore errors raised before any request is sent: configuration, not the service.
CLIENT_SETUP_ERRORS: tuple[tuple[type[BaseException], Rule], ...] = (
    (botocore.exceptions.NoCredentialsError, fail_rule(_CREDENTIALS_HINT, CredentialsError)),
    (botocore.exceptions.PartialCredentialsError, fail_rule(_CREDENTIALS_HINT, CredentialsError)),
    (
        botocore.exceptions.CredentialRetrievalError,
        fail_rule(
            "the credential provider failed: check the profile's configuration", CredentialsError
        ),
    ),
    (
        botocore.exceptions.TokenRetrievalError,
        fail_rule(_SSO_HINT, CredentialsError),
    ),
    (
        botocore.exceptions.UnauthorizedSSOTokenError,
        fail_rule(_SSO_HINT, CredentialsError),
    ),
    (botocore.exceptions.ProfileNotFound, fail_rule("check --profile and AWS_PROFILE", UsageError)),
    (botocore.exceptions.NoRegionError, fail_rule("pass --region or set AWS_REGION", UsageError)),
    (
        botocore.exceptions.ParamValidationError,
        fail_rule("check the repository name and tag", UsageError),
    ),
)


class EcrErrors:
    """The :class:`~layerhoist.transfer.verdicts.ErrorTable` of the ECR and ECR Public layer API."""

    def classify(
        self, exc: BaseException, *, operation: str | None, wall_clock: Callable[[], float]
    ) -> Verdict | None:
        """The verdict of a botocore or aiohttp exception; ``None`` for anything else."""
        if isinstance(exc, botocore.exceptions.ClientError):
            return _service_error(exc, operation=operation, wall_clock=wall_clock)
        for setup_type, rule in CLIENT_SETUP_ERRORS:
            if isinstance(exc, setup_type):
                return rule.verdict(code=type(exc).__name__, message=str(exc), operation=operation)
        for transport_type, code, rule in TRANSPORT_ERRORS:
            if isinstance(exc, transport_type):
                return rule.verdict(code=code, message=str(exc), operation=operation)
        return None


#: The classifier of a push to ECR: the shared cases, then this table.
classify = Classifier((EcrErrors(),))


def error_code(exc: botocore.exceptions.ClientError) -> str:
    """The service's error code of ``exc`` (``""`` when the answer had none)."""
    error: Mapping[str, Any] = exc.response.get("Error", {})
    return str(error.get("Code", ""))


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
    retry_after = parse_retry_after(headers, wall_clock=wall_clock)
    rule = SERVICE_ERRORS.get(code) or _status_rule(status)
    if rule.action is Action.RETRY_PART and _OUT_OF_SPACE_WORDS in message.lower():
        rule = _OUT_OF_SPACE
    return rule.verdict(
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
        return _THROTTLED
    if status in TRANSIENT_STATUSES:
        return _TRANSIENT
    if status in CREDENTIAL_STATUSES:
        return fail_rule(_DENIED_HINT, CredentialsError)
    return fail_rule("the destination refused the request")
