"""Verification of AWS Signature Version 4 as botocore signs ECR and ECR Public requests.

Only the ``Authorization`` header form is accepted (the JSON protocols never presign). The
checks run in the order a failure is cheapest to find, and each failure carries the error code,
message and HTTP status the AWS JSON services answer with::

    no Authorization header            MissingAuthenticationTokenException  403
    malformed header, no X-Amz-Date,
    host or a required header
    not signed                         IncompleteSignatureException         400
    wrong terminator or scope date,
    clock skew beyond max_skew,
    scope of another region or
    another service                    InvalidSignatureException            400
    unknown access key id              UnrecognizedClientException          400
    signature mismatch                 InvalidSignatureException            400

Everything but the last line is decided from the headers alone: :func:`check_authorization`
runs before a byte of the body is read, so a request nobody could have signed costs the
server no memory; :func:`verify_signature` then checks the signature over the body received.
:func:`verify_request` does both.

The canonical request follows the SigV4 specification for services other than S3: the path
with dot segments and repeated slashes removed, then URI-encoded (a second time, as every SDK
does); the query parameters decoded, re-encoded and sorted; the signed headers lowercased with
whitespace runs collapsed; and the sha256 of the body actually received (never a client-supplied
``X-Amz-Content-SHA256``), so a tampered body cannot verify.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

__all__ = [
    "Authorization",
    "SignatureError",
    "check_authorization",
    "verify_request",
    "verify_signature",
]

_ALGORITHM = "AWS4-HMAC-SHA256"
_TERMINATOR = "aws4_request"
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_PATTERN = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_DATE_LENGTH = 8
_CREDENTIAL_ELEMENTS = 5
_SECONDS_PER_MINUTE = 60
#: Signing keys derived per (secret, date, region, service); a day's worth of scopes fits.
_SIGNING_KEY_CACHE_SIZE = 64
_REQUIRED_PARAMETERS = ("Credential", "Signature", "SignedHeaders")
#: Characters left unencoded in a canonical path (besides the RFC 3986 unreserved set).
_PATH_SAFE = "/~"
#: Characters left unencoded in canonical query keys and values.
_QUERY_SAFE = "-_.~"

_BAD_REQUEST = 400
_FORBIDDEN = 403
_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


# Not frozen: Python itself assigns ``__traceback__``, ``__cause__`` and ``__notes__`` on an
# exception (contextlib, add_note), which a frozen dataclass refuses. eq=False keeps exceptions
# hashable by identity.
@dataclass(eq=False)
class SignatureError(Exception):
    """A request the service refuses to authenticate, with the service's own answer."""

    #: Error code for the ``__type`` of the JSON error body.
    code: str
    #: Human-readable message for the ``message`` of the JSON error body.
    message: str
    #: HTTP status of the error response.
    status: int

    def __post_init__(self) -> None:
        # Fills ``args`` so the error pickles and prints like any exception.
        Exception.__init__(self, self.code, self.message, self.status)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def body(self) -> dict[str, object]:
        """The JSON document of the service's error response."""
        return {"__type": self.code, "message": self.message}


def _incomplete(message: str) -> SignatureError:
    return SignatureError("IncompleteSignatureException", message, _BAD_REQUEST)


def _invalid(message: str) -> SignatureError:
    return SignatureError("InvalidSignatureException", message, _BAD_REQUEST)


@dataclass(frozen=True)
class Authorization:
    """An ``Authorization`` header that passed every check short of the signature itself."""

    access_key: str
    scope_date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    #: The request's ``X-Amz-Date``.
    amz_date: str = ""
    #: The secret of ``access_key`` (known once the key is).
    secret: str = dataclasses.field(default="", repr=False)

    @property
    def scope(self) -> str:
        """The credential scope, ``date/region/service/aws4_request``."""
        return "/".join((self.scope_date, self.region, self.service, _TERMINATOR))


def _header_display_name(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def _parse_authorization(
    header: str, *, has_date: bool, required_signed_headers: Collection[str]
) -> Authorization:
    algorithm, _, rest = header.strip().partition(" ")
    parameters: dict[str, str] = {}
    if algorithm == _ALGORITHM:
        # The service splits on commas and on whitespace: a stray space inside a value
        # becomes its own (invalid) pair, which is the error AWS reports for it.
        for item in re.split(r"[\s,]+", rest.strip()):
            if not item:
                continue
            key, equals, value = item.partition("=")
            if not equals:
                raise _incomplete(
                    f"'{item}' not a valid key=value pair (missing equal-sign) in "
                    f"Authorization header: '{header}'."
                )
            parameters[key] = value
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in _REQUIRED_PARAMETERS
        if name not in parameters
    ]
    if not has_date:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems:
        raise _incomplete(" ".join([*problems, f"Authorization={header}"]))

    credential = parameters["Credential"]
    elements = credential.split("/")
    if len(elements) != _CREDENTIAL_ELEMENTS:
        raise _incomplete(
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            f"keyid/date/region/service/term, got '{credential}'"
        )
    access_key, scope_date, region, service, terminator = elements
    if terminator != _TERMINATOR:
        raise _invalid(
            f"Credential should be scoped with a valid terminator: '{_TERMINATOR}', "
            f"not '{terminator}'."
        )
    signed_headers = tuple(parameters["SignedHeaders"].split(";"))
    if "host" not in signed_headers and ":authority" not in signed_headers:
        raise _incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    for name in required_signed_headers:
        if name not in signed_headers:
            raise _incomplete(
                f"'{_header_display_name(name)}' must be a 'SignedHeader' in the AWS Authorization."
            )
    return Authorization(
        access_key=access_key,
        scope_date=scope_date,
        region=region,
        service=service,
        signed_headers=signed_headers,
        signature=parameters["Signature"],
    )


def _parse_amz_date(value: str) -> datetime:
    if _AMZ_DATE_PATTERN.fullmatch(value):
        try:
            return datetime.strptime(value, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            pass
    raise _incomplete(
        f"Date must be in ISO-8601 'basic format'. Got '{value}'. "
        "See http://en.wikipedia.org/wiki/ISO_8601"
    )


def _check_skew(request_time: datetime, amz_date: str, *, now: datetime, max_skew: float) -> None:
    skew = timedelta(seconds=max_skew)
    minutes = f"{max_skew / _SECONDS_PER_MINUTE:g}"
    if request_time < now - skew:
        raise _invalid(
            f"Signature expired: {amz_date} is now earlier than "
            f"{(now - skew).strftime(_AMZ_DATE_FORMAT)} "
            f"({now.strftime(_AMZ_DATE_FORMAT)} - {minutes} min.)"
        )
    if request_time > now + skew:
        raise _invalid(
            f"Signature not yet current: {amz_date} is still later than "
            f"{(now + skew).strftime(_AMZ_DATE_FORMAT)} "
            f"({now.strftime(_AMZ_DATE_FORMAT)} + {minutes} min.)"
        )


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal, also dropping empty segments as AWS services do."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    leading = "/" if path.startswith("/") else ""
    trailing = "/" if path.endswith("/") and segments else ""
    return leading + "/".join(segments) + trailing


def _canonical_path(path: str) -> str:
    return quote(_remove_dot_segments(path) if path else "/", safe=_PATH_SAFE)


def _canonical_query(query_string: str) -> str:
    pairs = []
    for item in query_string.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append(
            (quote(unquote(key), safe=_QUERY_SAFE), quote(unquote(value), safe=_QUERY_SAFE))
        )
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def _lowercase_headers(headers: Mapping[str, str]) -> dict[str, str]:
    # Repeated headers (a multidict's items() yields each) are joined with commas, as signers
    # join them.
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        lowered[key] = f"{lowered[key]},{value}" if key in lowered else value
    return lowered


def _canonical_request(
    *,
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    body: bytes | memoryview,
) -> str:
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed_headers
    )
    return "\n".join(
        (
            method.upper(),
            _canonical_path(path),
            _canonical_query(query_string),
            canonical_headers,
            ";".join(signed_headers),
            hashlib.sha256(body).hexdigest(),
        )
    )


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


@functools.lru_cache(maxsize=_SIGNING_KEY_CACHE_SIZE)
def _signing_key(secret: str, scope_date: str, region: str, service: str) -> bytes:
    key = _hmac(f"AWS4{secret}".encode(), scope_date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, _TERMINATOR)


def check_authorization(
    *,
    headers: Mapping[str, str],
    credentials: Mapping[str, str],
    now: datetime,
    max_skew: float = 300.0,
    service: str | None = None,
    region: str | None = None,
    required_signed_headers: Collection[str] = (),
) -> Authorization:
    """Check everything about a request's SigV4 ``Authorization`` that needs no body.

    The header must be well formed, its date within ``max_skew`` seconds of ``now`` (a naive
    value is taken as UTC), its scope the given ``service`` and ``region`` (``None`` accepts
    any) and its access key one of ``credentials`` (access key id -> secret); ``host`` and
    every name in ``required_signed_headers`` (lower case) must be signed. Returns the parsed
    header, secret included, for :func:`verify_signature`; raises :class:`SignatureError` with
    the service's code, message and status.
    """
    lowered = _lowercase_headers(headers)
    header = lowered.get("authorization", "")
    if not header.strip():
        raise SignatureError(
            "MissingAuthenticationTokenException", "Missing Authentication Token", _FORBIDDEN
        )
    authorization = _parse_authorization(
        header,
        has_date="x-amz-date" in lowered,
        required_signed_headers=required_signed_headers,
    )
    amz_date = lowered["x-amz-date"]
    request_time = _parse_amz_date(amz_date)
    if authorization.scope_date != amz_date[:_SCOPE_DATE_LENGTH]:
        raise _invalid(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{authorization.scope_date}' != '{amz_date[:_SCOPE_DATE_LENGTH]}', "
            f"from '{amz_date}'."
        )
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    _check_skew(request_time, amz_date, now=now, max_skew=max_skew)
    if region is not None and authorization.region != region:
        raise _invalid(
            f"Credential should be scoped to a valid region, not '{authorization.region}'."
        )
    if service is not None and authorization.service != service:
        raise _invalid(f"Credential should be scoped to correct service: '{service}'.")

    secret = credentials.get(authorization.access_key)
    if secret is None:
        raise SignatureError(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            _BAD_REQUEST,
        )
    return dataclasses.replace(authorization, amz_date=amz_date, secret=secret)


def verify_signature(
    authorization: Authorization,
    *,
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    body: bytes | memoryview,
) -> str:
    """Verify the signature of a request :func:`check_authorization` passed; its access key id.

    ``path`` is the path exactly as sent on the request line (still percent-encoded, without
    the query), ``query_string`` the raw query (aiohttp: ``request.rel_url.raw_path`` and
    ``request.rel_url.raw_query_string``). Raises :class:`SignatureError` on a mismatch.
    """
    canonical = _canonical_request(
        method=method,
        path=path,
        query_string=query_string,
        headers=_lowercase_headers(headers),
        signed_headers=authorization.signed_headers,
        body=body,
    )
    string_to_sign = "\n".join(
        (
            _ALGORITHM,
            authorization.amz_date,
            authorization.scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        )
    )
    key = _signing_key(
        authorization.secret,
        authorization.scope_date,
        authorization.region,
        authorization.service,
    )
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), authorization.signature.encode()):
        raise _invalid(_MISMATCH_MESSAGE)
    return authorization.access_key


def verify_request(
    *,
    method: str,
    path: str,
    query_string: str,
    headers: Mapping[str, str],
    body: bytes | memoryview,
    credentials: Mapping[str, str],
    now: datetime,
    max_skew: float = 300.0,
    service: str | None = None,
    region: str | None = None,
    required_signed_headers: Collection[str] = (),
) -> str:
    """Verify the SigV4 ``Authorization`` of a request and return its access key id.

    :func:`check_authorization` then :func:`verify_signature`, with their parameters. Header
    names are matched case-insensitively. Raises :class:`SignatureError` with the service's
    code, message and status.
    """
    authorization = check_authorization(
        headers=headers,
        credentials=credentials,
        now=now,
        max_skew=max_skew,
        service=service,
        region=region,
        required_signed_headers=required_signed_headers,
    )
    return verify_signature(
        authorization,
        method=method,
        path=path,
        query_string=query_string,
        headers=headers,
        body=body,
    )
