"""ECR's error table, with the shared cases of the classifier: every error maps to one action,
hint and user-facing exception."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from email.utils import formatdate
from typing import Any

import aiohttp
import botocore.exceptions
import pytest
from botocore.config import Config

from layerhoist.destinations.ecr.errors import SERVICE_ERRORS, EcrErrors, error_code
from layerhoist.errors import (
    CorruptBlobError,
    CredentialsError,
    DestinationError,
    LayerhoistError,
    RepositoryNotFoundError,
    SourceChangedError,
    UsageError,
)
from layerhoist.registry import EmbeddedRegistry
from layerhoist.registry.simulation import SimulationSettings
from layerhoist.transfer.retry import RetriesExhausted
from layerhoist.transfer.verdicts import (
    Action,
    Classifier,
    Rule,
    Verdict,
    fail_rule,
    present_rule,
    requeue_rule,
    retry_rule,
    to_user_error,
)

ClientFactory = Callable[..., AbstractAsyncContextManager[Any]]
RegistryFactory = Callable[..., EmbeddedRegistry]


def classify(
    exc: BaseException, *, operation: str | None = None, wall_clock: Callable[[], float] = time.time
) -> Verdict:
    """The verdict the pipeline reaches for ``exc`` with ECR's table registered."""
    return Classifier((EcrErrors(),), wall_clock=wall_clock)(exc, operation=operation)


SERVER_START_TIMEOUT = 30.0
REPO = "team/app"
#: Every error reaches the test (``max_attempts: 1`` would still allow one botocore retry).
NO_BOTOCORE_RETRIES = Config(retries={"total_max_attempts": 1})


def client_error(
    code: str,
    message: str = "it went wrong",
    *,
    status: int = 400,
    headers: dict[str, str] | None = None,
    operation: str = "UploadLayerPart",
) -> botocore.exceptions.ClientError:
    """A ClientError shaped like the ones botocore raises for a JSON 1.1 service."""
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return botocore.exceptions.ClientError(response, operation)


@pytest.mark.parametrize(
    ("code", "throttled"),
    [
        ("ThrottlingException", True),
        ("LimitExceededException", True),
        ("ServerException", False),
        ("ServiceUnavailable", False),
        ("ServiceUnavailableException", False),
        ("InternalFailure", False),
        ("RequestTimeout", False),
        ("RequestTimeoutException", False),
    ],
)
def test_transient_service_errors_retry_the_part(code: str, throttled: bool) -> None:
    verdict = classify(client_error(code))
    assert verdict.action is Action.RETRY_PART
    assert verdict.throttled is throttled
    assert verdict.code == code


@pytest.mark.parametrize(
    "code",
    [
        "InvalidLayerException",
        "UploadNotFoundException",
        "InvalidLayerPartException",
        "LayerPartTooSmallException",
        "EmptyUploadException",
    ],
)
def test_broken_uploads_requeue_the_layer(code: str) -> None:
    verdict = classify(client_error(code))
    assert verdict.action is Action.REQUEUE_LAYER
    assert not verdict.throttled


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        ("RepositoryNotFoundException", RepositoryNotFoundError),
        ("RegistryNotFoundException", RepositoryNotFoundError),
        ("AccessDenied", CredentialsError),
        ("AccessDeniedException", CredentialsError),
        ("UnrecognizedClientException", CredentialsError),
        ("InvalidSignatureException", CredentialsError),
        ("MissingAuthenticationTokenException", CredentialsError),
        ("ExpiredToken", CredentialsError),
        ("ExpiredTokenException", CredentialsError),
        ("InvalidParameterException", DestinationError),
        ("LayersNotFoundException", DestinationError),
        ("ReferencedImagesNotFoundException", DestinationError),
        ("ImageTagAlreadyExistsException", DestinationError),
        ("ImageDigestDoesNotMatchException", DestinationError),
        ("UnsupportedImageTypeException", DestinationError),
    ],
)
def test_refusals_fail_with_a_hint(code: str, error_class: type[DestinationError]) -> None:
    verdict = classify(client_error(code, "no", status=400))
    assert verdict.action is Action.FAIL
    assert verdict.hint
    assert not verdict.already_present
    error = to_user_error(verdict, subject="ecr:app")
    assert type(error) is error_class
    assert isinstance(error, DestinationError)
    assert error.code == code
    assert error.hint == verdict.hint
    assert str(error) == f"ecr:app: {code}: no ({verdict.hint})"


@pytest.mark.parametrize(
    "code",
    [
        "LayerAlreadyExistsException",
        "ImageAlreadyExistsException",
        "RepositoryAlreadyExistsException",
    ],
)
def test_already_existing_is_flagged_for_the_pipeline(code: str) -> None:
    verdict = classify(client_error(code))
    assert verdict.action is Action.FAIL
    assert verdict.already_present


def test_every_table_hint_formats_without_leftover_placeholders() -> None:
    for code in SERVICE_ERRORS:
        hint = classify(client_error(code), operation="PutImage").hint
        assert hint
        assert "{" not in hint, code


def test_user_error_names_subject_code_message_and_hint() -> None:
    message = "The repository with name 'foo/bar' does not exist in the registry"
    error = to_user_error(
        classify(client_error("RepositoryNotFoundException", message)),
        subject="ecr-public:foo/bar",
    )
    assert isinstance(error, RepositoryNotFoundError)
    assert str(error) == (
        "ecr-public:foo/bar: RepositoryNotFoundException: The repository with name 'foo/bar' "
        "does not exist in the registry (create it, or pass --create-repo)"
    )


def test_access_denied_hint_names_the_operation() -> None:
    assert (
        "InitiateLayerUpload"
        in classify(client_error("AccessDeniedException", operation="InitiateLayerUpload")).hint
    )
    assert "PutImage" in classify(client_error("AccessDenied"), operation="PutImage").hint


def test_namespaced_codes_are_normalized() -> None:
    verdict = classify(client_error("com.amazonaws.ecr#InvalidLayerException"))
    assert verdict.code == "InvalidLayerException"
    assert verdict.action is Action.REQUEUE_LAYER
    assert classify(client_error("ThrottlingException:http://internal/")).throttled


@pytest.mark.parametrize(
    ("status", "action", "throttled", "error_class"),
    [
        (429, Action.RETRY_PART, True, DestinationError),
        (500, Action.RETRY_PART, False, DestinationError),
        (502, Action.RETRY_PART, False, DestinationError),
        (503, Action.RETRY_PART, False, DestinationError),
        (504, Action.RETRY_PART, False, DestinationError),
        (403, Action.FAIL, False, CredentialsError),
        (401, Action.FAIL, False, CredentialsError),
        (400, Action.FAIL, False, DestinationError),
        (404, Action.FAIL, False, DestinationError),
    ],
)
def test_unknown_codes_fall_back_on_http_status(
    status: int, action: Action, throttled: bool, error_class: type[LayerhoistError]
) -> None:
    verdict = classify(client_error("SomethingNewException", status=status))
    assert (verdict.action, verdict.throttled, verdict.status) == (action, throttled, status)
    assert verdict.error_class is error_class


def test_code_less_error_is_named_by_its_status() -> None:
    verdict = classify(client_error("", "Bad Gateway", status=502))
    assert verdict.code == "502"
    assert verdict.action is Action.RETRY_PART


def test_retry_after_seconds_is_honoured() -> None:
    verdict = classify(
        client_error("ThrottlingException", status=429, headers={"retry-after": "3"})
    )
    assert verdict.retry_after == 3.0
    mixed_case = client_error("ServiceUnavailable", status=503, headers={"Retry-After": "1.5"})
    assert classify(mixed_case).retry_after == 1.5


def test_retry_after_http_date_is_relative_to_the_wall_clock() -> None:
    now = 1_700_000_000.0
    headers = {"retry-after": formatdate(now + 7, usegmt=True)}
    verdict = classify(client_error("ThrottlingException", headers=headers), wall_clock=lambda: now)
    assert verdict.retry_after == 7.0


@pytest.mark.parametrize("value", ["soon", "nan", "inf"])
def test_unusable_retry_after_is_ignored(value: str) -> None:
    verdict = classify(client_error("ThrottlingException", headers={"retry-after": value}))
    assert verdict.retry_after is None


def test_no_retry_after_header_means_none() -> None:
    assert classify(client_error("ThrottlingException")).retry_after is None


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), "ConnectFailed"),
        (
            botocore.exceptions.ConnectionClosedError(endpoint_url="http://x"),
            "ConnectionClosed",
        ),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), "ReadTimeout"),
        (botocore.exceptions.ConnectTimeoutError(endpoint_url="http://x"), "ConnectTimeout"),
        (botocore.exceptions.ResponseStreamingError(error="eof"), "ResponseStreaming"),
        (botocore.exceptions.HTTPClientError(error="boom"), "HTTPClientError"),
        (aiohttp.ServerDisconnectedError(), "ServerDisconnected"),
        (aiohttp.ClientPayloadError("truncated"), "PayloadError"),
        (aiohttp.ClientConnectionError("gone"), "ConnectionError"),
        (ConnectionResetError(), "ConnectionReset"),
        (BrokenPipeError(), "BrokenPipe"),
        (TimeoutError(), "Timeout"),
        (OSError(errno.ECONNRESET, "Connection reset by peer"), "ConnectionReset"),
        (OSError(errno.EPIPE, "Broken pipe"), "BrokenPipe"),
    ],
)
def test_transport_errors_retry_the_part(exc: BaseException, code: str) -> None:
    verdict = classify(exc)
    assert verdict.action is Action.RETRY_PART
    assert verdict.code == code
    assert verdict.message == str(exc)
    assert not verdict.throttled


def test_tls_failures_fail() -> None:
    exc = botocore.exceptions.SSLError(endpoint_url="https://x", error="certificate verify failed")
    verdict = classify(exc)
    assert verdict.action is Action.FAIL
    assert "CA bundle" in verdict.hint


def test_other_os_errors_fail() -> None:
    verdict = classify(FileNotFoundError(errno.ENOENT, "No such file", "/layout/blobs"))
    assert verdict.action is Action.FAIL


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        (botocore.exceptions.NoCredentialsError(), CredentialsError),
        (
            botocore.exceptions.PartialCredentialsError(provider="env", cred_var="secret"),
            CredentialsError,
        ),
        (botocore.exceptions.NoRegionError(), UsageError),
        (botocore.exceptions.ProfileNotFound(profile="nope"), UsageError),
    ],
)
def test_client_setup_errors_fail_as_credentials_or_usage(
    exc: BaseException, error_class: type[LayerhoistError]
) -> None:
    verdict = classify(exc)
    assert verdict.action is Action.FAIL
    assert verdict.message == str(exc)
    error = to_user_error(verdict, subject="ecr:app")
    assert type(error) is error_class
    assert str(error).startswith(f"ecr:app: {type(exc).__name__}: ")
    assert verdict.hint in str(error)


def test_usage_errors_exit_with_code_two() -> None:
    error = to_user_error(classify(botocore.exceptions.NoRegionError()), subject="ecr:app")
    assert error.exit_code == 2


@pytest.mark.parametrize(
    "error",
    [
        CorruptBlobError("sha256:ab… does not match", digest="sha256:ab"),
        SourceChangedError("sha256:cd changed", digest="sha256:cd"),
        RepositoryNotFoundError("ecr:x missing", code="RepositoryNotFoundException", hint="h"),
    ],
)
def test_layerhoist_errors_fail_carrying_themselves(error: LayerhoistError) -> None:
    verdict = classify(error)
    assert verdict.action is Action.FAIL
    assert verdict.error is error
    assert to_user_error(verdict, subject="anything") is error


def test_destination_error_keeps_its_code() -> None:
    verdict = classify(DestinationError("x", code="KmsException", hint="fix the key"))
    assert (verdict.code, verdict.hint) == ("KmsException", "fix the key")


def test_unknown_exceptions_fail_instead_of_looping() -> None:
    verdict = classify(KeyError("partSize"))
    assert verdict.action is Action.FAIL
    assert verdict.code == "KeyError"
    error = to_user_error(verdict, subject="ecr:app")
    assert type(error) is LayerhoistError
    assert "report it" in str(error)


def _throttled_verdict() -> Verdict:
    return classify(client_error("ThrottlingException", "Rate exceeded", status=400))


def test_exhausted_part_attempts_requeue_the_layer() -> None:
    exc = RetriesExhausted(_throttled_verdict(), (), attempts=4, reason="attempts")
    verdict = classify(exc)
    assert verdict.action is Action.REQUEUE_LAYER
    assert (verdict.code, verdict.message) == ("ThrottlingException", "Rate exceeded")
    assert verdict.throttled


def test_exhausted_budget_fails() -> None:
    exc = RetriesExhausted(_throttled_verdict(), (), attempts=2, reason="budget")
    verdict = classify(exc)
    assert verdict.action is Action.FAIL
    assert "budget" in verdict.hint
    assert "budget" in str(to_user_error(verdict, subject="sha256:ab"))


# --- real errors over HTTP ---------------------------------------------------------------


async def _raised(client: Any, operation: str, **params: Any) -> BaseException:
    """The exception ``operation`` raises over the wire."""
    method = getattr(client, botocore.xform_name(operation))
    with pytest.raises(Exception) as caught:
        await method(**params)
    return caught.value


@pytest.mark.anyio
async def test_real_missing_repository_over_http(
    moto_endpoint: str, ecr_client: ClientFactory
) -> None:
    async with ecr_client(moto_endpoint, "ecr", config=NO_BOTOCORE_RETRIES) as client:
        exc = await _raised(client, "InitiateLayerUpload", repositoryName="missing/repo")
    verdict = classify(exc)
    assert verdict.action is Action.FAIL
    assert verdict.code == "RepositoryNotFoundException"
    assert verdict.status == 400
    error = to_user_error(verdict, subject="ecr:missing/repo")
    assert isinstance(error, RepositoryNotFoundError)
    assert str(error).startswith("ecr:missing/repo: RepositoryNotFoundException: ")
    assert "missing/repo" in verdict.message


@pytest.mark.anyio
async def test_real_existing_repository_is_flagged_present(
    moto_endpoint: str, ecr_client: ClientFactory
) -> None:
    async with ecr_client(moto_endpoint, "ecr", config=NO_BOTOCORE_RETRIES) as client:
        await client.create_repository(repositoryName="twice")
        exc = await _raised(client, "CreateRepository", repositoryName="twice")
    verdict = classify(exc)
    assert verdict.code == "RepositoryAlreadyExistsException"
    assert verdict.already_present


@pytest.mark.anyio
async def test_real_connection_refused_retries_the_part(
    ecr_client: ClientFactory, unused_port: int
) -> None:
    async with ecr_client(
        f"http://127.0.0.1:{unused_port}", "ecr", config=NO_BOTOCORE_RETRIES
    ) as client:
        exc = await _raised(client, "InitiateLayerUpload", repositoryName="any")
    assert isinstance(exc, botocore.exceptions.EndpointConnectionError)
    verdict = classify(exc, operation="InitiateLayerUpload")
    assert verdict.action is Action.RETRY_PART
    assert verdict.code == "ConnectFailed"


@pytest.mark.anyio
async def test_real_invalid_layer_requeues_the_layer(
    registry: EmbeddedRegistry, ecr_client: ClientFactory
) -> None:
    async with ecr_client(registry.endpoint_url, config=NO_BOTOCORE_RETRIES) as client:
        await client.create_repository(repositoryName=REPO)
        upload_id = (await client.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        await client.upload_layer_part(
            repositoryName=REPO,
            uploadId=upload_id,
            partFirstByte=0,
            partLastByte=6,
            layerPartBlob=b"payload",
        )
        wrong = "sha256:" + "0" * 64
        exc = await _raised(
            client,
            "CompleteLayerUpload",
            repositoryName=REPO,
            uploadId=upload_id,
            layerDigests=[wrong],
        )
    verdict = classify(exc)
    assert (verdict.action, verdict.code) == (Action.REQUEUE_LAYER, "InvalidLayerException")


@pytest.mark.anyio
async def test_real_throttling_retries_the_part_and_slows_down(
    make_registry: RegistryFactory, ecr_client: ClientFactory
) -> None:
    simulation = SimulationSettings(quotas={"InitiateLayerUpload": 1.0})
    async with (
        make_registry(simulation=simulation) as registry,
        ecr_client(registry.endpoint_url, config=NO_BOTOCORE_RETRIES) as client,
    ):
        await client.create_repository(repositoryName=REPO)
        await client.initiate_layer_upload(repositoryName=REPO)
        exc = await _raised(client, "InitiateLayerUpload", repositoryName=REPO)
    verdict = classify(exc)
    assert (verdict.action, verdict.code, verdict.throttled) == (
        Action.RETRY_PART,
        "ThrottlingException",
        True,
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("simulation", "codes"),
    [
        (SimulationSettings(fault_rate=1.0), {"ServerException"}),
        (SimulationSettings(drop_rate=1.0), {"ConnectionClosed", "ServerDisconnected"}),
    ],
)
async def test_real_faults_and_dropped_connections_retry_the_part(
    make_registry: RegistryFactory,
    ecr_client: ClientFactory,
    simulation: SimulationSettings,
    codes: set[str],
) -> None:
    async with (
        make_registry(simulation=simulation) as registry,
        ecr_client(registry.endpoint_url, config=NO_BOTOCORE_RETRIES) as client,
    ):
        exc = await _raised(client, "DescribeRepositories")
    verdict = classify(exc)
    assert verdict.action is Action.RETRY_PART
    assert verdict.code in codes


def test_a_group_of_transient_errors_retries() -> None:
    group = ExceptionGroup("upload", [ConnectionResetError("reset"), TimeoutError()])
    verdict = classify(group)
    assert (verdict.action, verdict.code) == (Action.RETRY_PART, "ConnectionReset")


def test_a_group_takes_its_most_severe_verdict() -> None:
    corrupt = CorruptBlobError("sha256:ab is corrupt", digest="sha256:ab")
    nested = ExceptionGroup("read-ahead", [client_error("InvalidLayerException"), corrupt])
    verdict = classify(ExceptionGroup("upload", [ConnectionResetError(), nested]))
    assert verdict.action is Action.FAIL
    assert verdict.error is corrupt
    requeue = classify(
        ExceptionGroup("upload", [ConnectionResetError(), client_error("UploadNotFoundException")])
    )
    assert (requeue.action, requeue.code) == (Action.REQUEUE_LAYER, "UploadNotFoundException")


# --- the shared cases: errno fallback, exhausted retries, hints, groups -------------------


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (errno.ENETUNREACH, "NetworkUnreachable"),
        (errno.EHOSTUNREACH, "HostUnreachable"),
        (errno.ENETDOWN, "NetworkDown"),
        (errno.ETIMEDOUT, "Timeout"),
        (errno.ECONNABORTED, "ConnectionAborted"),
        (errno.ECONNREFUSED, "ConnectionRefused"),
    ],
)
def test_network_errnos_retry_the_part_with_their_code(number: int, code: str) -> None:
    exc = OSError(number, "no route", "203.0.113.7")
    verdict = classify(exc, operation="UploadLayerPart")
    assert (verdict.action, verdict.code, verdict.throttled) == (Action.RETRY_PART, code, False)
    assert verdict.message == str(exc)
    assert "check the network" in verdict.hint
    assert verdict.hint in str(to_user_error(verdict, subject="sha256:ab"))


def test_an_os_error_without_errno_fails() -> None:
    verdict = classify(OSError("weird"))
    assert (verdict.action, verdict.code, verdict.message) == (Action.FAIL, "OSError", "weird")


@pytest.mark.parametrize(
    ("code", "status", "throttled"), [("ThrottlingException", 400, True), ("", 503, False)]
)
def test_exhausted_attempts_requeue_keeping_what_the_server_said(
    code: str, status: int, throttled: bool
) -> None:
    last = classify(client_error(code, "slow down", status=status, headers={"Retry-After": "3"}))
    verdict = classify(RetriesExhausted(last, (), attempts=5, reason="attempts"))
    assert verdict.action is Action.REQUEUE_LAYER
    assert (verdict.retry_after, verdict.status, verdict.throttled) == (3.0, status, throttled)
    assert (verdict.code, verdict.message, verdict.hint) == (last.code, "slow down", last.hint)


def test_an_exhausted_budget_fails_with_the_budget_hint_and_no_wait() -> None:
    last = classify(
        client_error("ServerException", "busy", status=500, headers={"Retry-After": "9"})
    )
    exc = RetriesExhausted(last, (), attempts=2, reason="budget")
    verdict = classify(exc)
    assert (verdict.action, verdict.retry_after, verdict.status) == (Action.FAIL, None, 500)
    assert verdict.hint.startswith("the run's retry budget is spent")
    error = to_user_error(verdict, subject="sha256:ab")
    assert isinstance(error, DestinationError)
    assert (error.code, error.hint) == ("ServerException", verdict.hint)
    assert str(error) == f"sha256:ab: ServerException: busy ({verdict.hint})"
    assert str(exc) == "ServerException: busy (gave up after 2 attempts)"


def test_throttling_hints_say_to_slow_down_and_other_retries_do_not() -> None:
    throttled = classify(client_error("ThrottlingException", status=400))
    assert "lower --concurrency" in throttled.hint
    assert "request-rate quota" in throttled.hint
    for transient in (client_error("ServerException", status=500), ConnectionResetError()):
        verdict = classify(transient)
        assert not verdict.throttled
        assert "--concurrency" not in verdict.hint


def test_an_out_of_space_message_turns_a_retry_hint_into_the_cause() -> None:
    full = classify(client_error("InternalServerError", "Disk Out Of Space", status=500))
    assert full.action is Action.RETRY_PART
    assert "out of space" in full.hint
    refused = classify(client_error("InvalidParameterException", "out of space", status=400))
    assert refused.action is Action.FAIL
    assert "out of space" not in refused.hint


def test_the_operation_is_named_inside_exception_groups() -> None:
    denied = client_error("AccessDeniedException", operation="InitiateLayerUpload")
    nested = ExceptionGroup("blob", [ConnectionResetError(), ExceptionGroup("part", [denied])])
    assert "call PutImage:" in classify(nested, operation="PutImage").hint
    assert "call InitiateLayerUpload:" in classify(nested).hint
    nameless = client_error("AccessDeniedException", operation="")
    assert "call this operation:" in classify(ExceptionGroup("blob", [nameless])).hint


def test_a_group_of_equally_severe_errors_takes_the_first() -> None:
    group = ExceptionGroup("parts", [TimeoutError(), ConnectionResetError(), BrokenPipeError()])
    assert classify(group).code == "Timeout"
    fails = ExceptionGroup("parts", [KeyError("a"), client_error("AccessDenied")])
    assert classify(fails).code == "KeyError"


@pytest.mark.parametrize(
    ("value", "seconds"), [("-5", 0.0), ("0", 0.0), ("2.5", 2.5), ("past", 0.0)]
)
def test_retry_after_is_never_negative(value: str, seconds: float) -> None:
    now = 1_700_000_000.0
    header = formatdate(now - 60, usegmt=True) if value == "past" else value
    error = client_error("ThrottlingException", headers={"Retry-After": header})
    assert classify(error, wall_clock=lambda: now).retry_after == seconds


def test_an_answer_without_status_or_code_fails_as_a_client_error() -> None:
    exc = botocore.exceptions.ClientError({"Error": {"Message": "odd"}}, "PutImage")
    verdict = classify(exc)
    assert (verdict.action, verdict.code, verdict.status) == (Action.FAIL, "ClientError", None)
    assert error_code(exc) == ""
    assert error_code(client_error("ThrottlingException")) == "ThrottlingException"
    error = to_user_error(verdict, subject="ecr:app")
    assert isinstance(error, DestinationError)
    assert error.hint == "the destination refused the request"


def test_an_error_class_without_code_reads_subject_code_message_and_hint() -> None:
    plain = Verdict(Action.FAIL, "Boom", "", "try again", error_class=LayerhoistError)
    assert str(to_user_error(plain, subject="ecr:app")) == "ecr:app: Boom (try again)"
    bare = Verdict(Action.FAIL, "Boom", "it broke", "", error_class=LayerhoistError)
    assert str(to_user_error(bare, subject="ecr:app")) == "ecr:app: Boom: it broke"


def test_the_rule_helpers_build_the_verdicts_a_transport_table_needs() -> None:
    def verdict_of(rule: Rule) -> Verdict:
        return rule.verdict(code="E", message="m", operation="PutImage")

    retry = verdict_of(retry_rule())
    assert (retry.action, retry.throttled, retry.already_present) == (
        Action.RETRY_PART,
        False,
        False,
    )
    assert "retries ran out" in retry.hint
    assert "--concurrency" not in retry.hint
    throttled = verdict_of(retry_rule(throttled=True))
    assert (throttled.action, throttled.throttled) == (Action.RETRY_PART, True)
    assert "lower --concurrency" in throttled.hint
    own_hint = verdict_of(retry_rule(throttled=True, hint="wait for {operation}"))
    assert (own_hint.hint, own_hint.throttled) == ("wait for PutImage", True)
    requeue = verdict_of(requeue_rule())
    assert (requeue.action, requeue.throttled) == (Action.REQUEUE_LAYER, False)
    assert "uploads of it ran out" in requeue.hint
    assert verdict_of(requeue_rule("again")).hint == "again"
    present = verdict_of(present_rule("there already"))
    assert (present.action, present.hint, present.already_present) == (
        Action.FAIL,
        "there already",
        True,
    )
    denied = verdict_of(fail_rule("no {operation}", CredentialsError))
    assert (denied.action, denied.hint, denied.error_class) == (
        Action.FAIL,
        "no PutImage",
        CredentialsError,
    )
    assert (denied.code, denied.message, denied.already_present) == ("E", "m", False)


def test_a_layerhoist_error_of_its_own_class_carries_its_name_and_message() -> None:
    corrupt = CorruptBlobError("sha256:ab is corrupt", digest="sha256:ab")
    verdict = classify(corrupt)
    assert (verdict.code, verdict.message, verdict.hint) == (
        "CorruptBlobError",
        "sha256:ab is corrupt",
        "",
    )
    assert verdict.error_class is CorruptBlobError
    nameless = classify(DestinationError("refused", code="", hint="h"))
    assert (nameless.code, nameless.hint) == ("DestinationError", "h")


def test_odd_service_answers_keep_what_can_be_read() -> None:
    bare = botocore.exceptions.ClientError({}, "PutImage")
    assert error_code(bare) == ""
    assert (classify(bare).code, classify(bare).message) == ("ClientError", "")
    user_error = str(to_user_error(classify(bare), subject="ecr:app"))
    assert user_error == "ecr:app: ClientError (the destination refused the request)"
    odd_status: Any = {
        "Error": {"Code": "SomethingNew"},
        "ResponseMetadata": {"HTTPStatusCode": "503"},
    }
    verdict = classify(botocore.exceptions.ClientError(odd_status, "PutImage"))
    assert (verdict.action, verdict.status) == (Action.FAIL, None)
    doubly = classify(client_error("aws#com.amazonaws.ecr#ThrottlingException:http://x:1"))
    assert (doubly.code, doubly.throttled) == ("ThrottlingException", True)
