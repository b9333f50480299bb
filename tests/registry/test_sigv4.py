"""Tests of the registry's SigV4 verification against signatures botocore really makes."""

from __future__ import annotations

import json
import pickle
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from layerhoist.registry.sigv4 import SignatureError, verify_request

ACCESS_KEY = "AKIDLAYERHOIST00001"
SECRET = "secret/key+with=odd+characters"
CREDENTIALS = {ACCESS_KEY: SECRET, "AKIDOTHER0000000002": "another secret"}
HOST = "127.0.0.1:5000"
BODY = json.dumps({"repositoryName": "app", "layerDigests": ["sha256:" + "0" * 64]}).encode()
MISMATCH = "The request signature we calculated does not match the signature you provided."


def sign(
    *,
    body: bytes = BODY,
    access_key: str = ACCESS_KEY,
    secret: str = SECRET,
    token: str | None = None,
    service: str = "ecr-public",
    url: str = f"http://{HOST}/",
) -> dict[str, str]:
    """Sign an ECR JSON request with botocore and return the headers an HTTP client sends."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "SpencerFrontendService.BatchCheckLayerAvailability",
        },
    )
    SigV4Auth(Credentials(access_key, secret, token), service, "us-east-1").add_auth(request)
    return {"Host": HOST, **dict(request.headers.items())}


def request_time(headers: Mapping[str, str]) -> datetime:
    return datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def verify(
    headers: Mapping[str, str],
    *,
    body: bytes = BODY,
    path: str = "/",
    query_string: str = "",
    now: datetime | None = None,
) -> str:
    return verify_request(
        method="POST",
        path=path,
        query_string=query_string,
        headers=headers,
        body=body,
        credentials=CREDENTIALS,
        now=request_time(headers) if now is None else now,
    )


def rejection(headers: Mapping[str, str], **kwargs: object) -> SignatureError:
    with pytest.raises(SignatureError) as caught:
        verify(headers, **kwargs)  # type: ignore[arg-type]
    return caught.value


# --- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["ecr-public", "ecr"])
def test_botocore_signature_verifies(service: str) -> None:
    assert verify(sign(service=service)) == ACCESS_KEY


def test_header_names_match_in_any_case() -> None:
    headers = sign()
    now = request_time(headers)
    assert verify({name.upper(): value for name, value in headers.items()}, now=now) == ACCESS_KEY
    assert verify({name.lower(): value for name, value in headers.items()}, now=now) == ACCESS_KEY


def test_session_token_is_signed_and_verifies() -> None:
    headers = sign(token="session-token")
    assert "session-token" in headers["X-Amz-Security-Token"]
    assert verify(headers) == ACCESS_KEY
    headers["X-Amz-Security-Token"] = "another-token"
    assert rejection(headers).code == "InvalidSignatureException"


def test_memoryview_body_verifies() -> None:
    assert verify(sign(), body=memoryview(bytearray(BODY))) == ACCESS_KEY  # type: ignore[arg-type]


def test_path_and_query_are_canonicalised_like_botocore() -> None:
    url = f"http://{HOST}/a%20b/./c/../d?z=1&a=x%2Fy&a=b"
    headers = sign(url=url)
    assert verify(headers, path="/a%20b/./c/../d", query_string="z=1&a=x%2Fy&a=b") == ACCESS_KEY
    assert rejection(headers, path="/a%20b/d/e", query_string="z=1&a=x%2Fy&a=b").code == (
        "InvalidSignatureException"
    )
    assert rejection(headers, path="/a%20b/./c/../d", query_string="z=2&a=x%2Fy&a=b").code == (
        "InvalidSignatureException"
    )


def test_whitespace_in_signed_values_is_collapsed() -> None:
    headers = sign()
    headers["Content-Type"] = "  application/x-amz-json-1.1  "
    assert verify(headers) == ACCESS_KEY


def test_skew_just_inside_the_window_verifies() -> None:
    headers = sign()
    assert verify(headers, now=request_time(headers) + timedelta(seconds=299)) == ACCESS_KEY
    assert verify(headers, now=request_time(headers) - timedelta(seconds=299)) == ACCESS_KEY
    naive = (request_time(headers) + timedelta(seconds=10)).replace(tzinfo=None)
    assert verify(headers, now=naive) == ACCESS_KEY


# --- rejected ---------------------------------------------------------------------------------


def test_wrong_secret_is_an_invalid_signature() -> None:
    error = rejection(sign(secret="not the secret"))
    assert (error.code, error.status) == ("InvalidSignatureException", 400)
    assert error.message.startswith(MISMATCH)


def test_tampered_body_is_an_invalid_signature() -> None:
    error = rejection(sign(), body=BODY.replace(b"app", b"apq"))
    assert (error.code, error.status) == ("InvalidSignatureException", 400)
    assert error.message.startswith(MISMATCH)


def test_tampered_signed_header_is_an_invalid_signature() -> None:
    headers = sign()
    headers["X-Amz-Target"] = "SpencerFrontendService.PutImage"
    assert rejection(headers).code == "InvalidSignatureException"
    headers = sign()
    headers["Host"] = "127.0.0.1:5001"
    assert rejection(headers).code == "InvalidSignatureException"


def test_signed_header_missing_from_request_is_an_invalid_signature() -> None:
    headers = sign()
    del headers["X-Amz-Target"]
    assert rejection(headers).code == "InvalidSignatureException"


def test_unsigned_extra_header_is_ignored() -> None:
    headers = sign()
    headers["User-Agent"] = "something else"
    assert verify(headers) == ACCESS_KEY


def test_tampered_signature_is_an_invalid_signature() -> None:
    headers = sign()
    signature = headers["Authorization"][-64:]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    headers["Authorization"] = headers["Authorization"][:-64] + flipped
    assert rejection(headers).code == "InvalidSignatureException"


def test_missing_authorization_is_a_missing_token() -> None:
    headers = sign()
    del headers["Authorization"]
    error = rejection(headers)
    assert (error.code, error.status, error.message) == (
        "MissingAuthenticationTokenException",
        403,
        "Missing Authentication Token",
    )
    headers["Authorization"] = "  "
    assert rejection(headers).code == "MissingAuthenticationTokenException"


def test_unknown_access_key_is_unrecognized() -> None:
    error = rejection(sign(access_key="AKIDUNKNOWN000000000"))
    assert (error.code, error.status, error.message) == (
        "UnrecognizedClientException",
        400,
        "The security token included in the request is invalid.",
    )


def test_old_date_is_expired() -> None:
    headers = sign()
    error = rejection(headers, now=request_time(headers) + timedelta(minutes=5, seconds=1))
    assert (error.code, error.status) == ("InvalidSignatureException", 400)
    date = headers["X-Amz-Date"]
    assert error.message.startswith(f"Signature expired: {date} is now earlier than ")
    assert error.message.endswith(" - 5 min.)")


def test_future_date_is_not_yet_current() -> None:
    headers = sign()
    error = rejection(headers, now=request_time(headers) - timedelta(minutes=6))
    assert error.code == "InvalidSignatureException"
    assert error.message.startswith(f"Signature not yet current: {headers['X-Amz-Date']} ")


def test_expired_date_is_reported_before_the_signature() -> None:
    headers = sign(secret="wrong")
    error = rejection(headers, now=request_time(headers) + timedelta(hours=1))
    assert error.message.startswith("Signature expired")


def test_missing_date_is_incomplete() -> None:
    headers = sign()
    now = request_time(headers)
    del headers["X-Amz-Date"]
    error = rejection(headers, now=now)
    assert (error.code, error.status) == ("IncompleteSignatureException", 400)
    assert "requires existence of either a 'X-Amz-Date' or a 'Date' header" in error.message


def test_malformed_date_is_incomplete() -> None:
    headers = sign()
    now = request_time(headers)
    headers["X-Amz-Date"] = "2024-01-01T00:00:00Z"
    error = rejection(headers, now=now)
    assert error.code == "IncompleteSignatureException"
    assert "ISO-8601 'basic format'" in error.message
    headers["X-Amz-Date"] = "20241301T000000Z"
    assert rejection(headers, now=now).code == "IncompleteSignatureException"


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [
        ("Bearer abc", "requires 'Credential' parameter"),
        ("AWS4-HMAC-SHA256", "requires 'Signature' parameter"),
        ("AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/ecr/aws4_request", "'SignedHeaders'"),
        (
            "AWS4-HMAC-SHA256 Credential= AKID/20240101/us-east-1/ecr/aws4_request, "
            "SignedHeaders=host, Signature=00",
            "'AKID/20240101/us-east-1/ecr/aws4_request' not a valid key=value pair",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/us-east-1/ecr/aws4_request, "
            "SignedHeaders=host, Signature=00",
            "Credential must have exactly 5 slash-delimited elements",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/ecr/aws4_request, "
            "SignedHeaders=content-type;x-amz-date, Signature=00",
            "'Host' or ':authority' must be a 'SignedHeader'",
        ),
    ],
)
def test_malformed_authorization_is_incomplete(authorization: str, fragment: str) -> None:
    headers = sign()
    headers["Authorization"] = authorization
    error = rejection(headers)
    assert (error.code, error.status) == ("IncompleteSignatureException", 400)
    assert fragment in error.message


def test_wrong_terminator_or_scope_date_is_invalid() -> None:
    headers = sign()
    original = headers["Authorization"]
    headers["Authorization"] = original.replace("/aws4_request", "/aws5_request")
    error = rejection(headers)
    assert error.code == "InvalidSignatureException"
    assert "valid terminator: 'aws4_request', not 'aws5_request'" in error.message
    date = headers["X-Amz-Date"][:8]
    headers["Authorization"] = original.replace(f"/{date}/", "/19990101/")
    error = rejection(headers)
    assert error.code == "InvalidSignatureException"
    assert "Date in Credential scope does not match" in error.message


def test_signature_error_is_a_plain_exception() -> None:
    error = SignatureError("InvalidSignatureException", "nope", 400)
    assert str(error) == "InvalidSignatureException: nope"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.message, copy.status) == (error.code, error.message, error.status)
    # Python assigns these on exceptions it re-raises (contextlib) or annotates.
    error.add_note("while verifying")
    error.__traceback__ = None
    assert {error: 1}[error] == 1


# --- a real client over HTTP ------------------------------------------------------------------


async def verifying_handler(request: web.Request) -> web.Response:
    """Answer like ECR: an empty result when the signature verifies, the error otherwise."""
    try:
        verify_request(
            method=request.method,
            path=request.rel_url.raw_path,
            query_string=request.rel_url.raw_query_string,
            headers=request.headers,
            body=await request.read(),
            credentials=CREDENTIALS,
            now=datetime.now(UTC),
        )
    except SignatureError as error:
        return web.json_response(
            {"__type": error.code, "message": error.message},
            status=error.status,
            content_type="application/x-amz-json-1.1",
        )
    return web.json_response({"repositories": []}, content_type="application/x-amz-json-1.1")


@pytest.fixture
async def endpoint() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/", verifying_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def describe(
    ecr_client: Callable[..., Any], endpoint: str, service: str, *, access_key: str, secret: str
) -> Any:
    async with ecr_client(
        endpoint, service, aws_access_key_id=access_key, aws_secret_access_key=secret
    ) as client:
        return await client.describe_repositories()


@pytest.mark.anyio
@pytest.mark.parametrize("service", ["ecr-public", "ecr"])
async def test_aioboto3_client_is_accepted(
    ecr_client: Callable[..., Any], endpoint: str, service: str
) -> None:
    response = await describe(ecr_client, endpoint, service, access_key=ACCESS_KEY, secret=SECRET)
    assert response["repositories"] == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("access_key", "secret", "code"),
    [
        (ACCESS_KEY, "wrong secret", "InvalidSignatureException"),
        ("AKIDUNKNOWN000000000", SECRET, "UnrecognizedClientException"),
    ],
)
async def test_aioboto3_client_sees_the_service_errors(
    ecr_client: Callable[..., Any], endpoint: str, access_key: str, secret: str, code: str
) -> None:
    with pytest.raises(ClientError) as caught:
        await describe(ecr_client, endpoint, "ecr-public", access_key=access_key, secret=secret)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
