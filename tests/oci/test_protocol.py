"""The OCI client's pure parts: challenges, credentials lookup, the error table, links, limits."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import pytest

from layerhoist.errors import CredentialsError, RepositoryNotFoundError, SourceError, UsageError
from layerhoist.oci.auth import parse_challenge
from layerhoist.oci.credentials import (
    Credentials,
    default_auth_file,
    find_credentials,
    parse_credentials,
)
from layerhoist.oci.errors import (
    ErrorDetail,
    ImageNotFoundError,
    RegistryResponseError,
    classifier,
    parse_error_body,
)
from layerhoist.oci.manifest import check_media_type
from layerhoist.oci.ratelimit import RateLimit, parse_rate_limit
from layerhoist.oci.tag import next_link
from layerhoist.transfer.verdicts import Action, to_user_error

pytestmark = pytest.mark.anyio


def test_bearer_challenge() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    assert challenge is not None
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.params["service"] == "registry.docker.io"
    assert challenge.params["scope"] == "repository:library/alpine:pull"


def test_basic_challenge_and_escapes() -> None:
    challenge = parse_challenge('Basic realm="a \\"quoted\\" realm", charset=UTF-8')
    assert challenge is not None
    assert (challenge.scheme, challenge.realm) == ("basic", 'a "quoted" realm')
    assert challenge.params["charset"] == "UTF-8"
    assert parse_challenge("") is None


def test_credentials_never_show_their_password() -> None:
    credentials = parse_credentials("alice:s3cret:with:colons")
    assert credentials == Credentials("alice", "s3cret:with:colons")
    assert "s3cret" not in repr(credentials)
    assert parse_credentials("bob") == Credentials("bob", "")
    with pytest.raises(UsageError):
        parse_credentials(":pw")


def test_default_auth_file_order(tmp_path: Path) -> None:
    assert default_auth_file({"REGISTRY_AUTH_FILE": "/a.json"}) == Path("/a.json")
    assert default_auth_file({"DOCKER_CONFIG": "/d"}) == Path("/d/config.json")
    assert default_auth_file({}).name == "config.json"


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(document))
    return path


def _auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_auth_file_keys_are_normalized_and_the_most_specific_wins(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "auths": {
                "https://index.docker.io/v1/": _auth("hub", "1"),
                "quay.io": {"username": "q", "password": "2"},
                "quay.io/team": _auth("team", "3"),
            }
        },
    )
    found = await find_credentials("docker.io", "library/alpine", auth_file=path)
    assert found == Credentials("hub", "1")
    assert await find_credentials("quay.io", "other/app", auth_file=path) == Credentials("q", "2")
    assert await find_credentials("quay.io", "team/app", auth_file=path) == Credentials("team", "3")
    assert await find_credentials("ghcr.io", "x/y", auth_file=path) is None


async def test_auth_file_problems_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        await find_credentials("q.io", "a", auth_file=tmp_path / "missing.json")
    assert await find_credentials("q.io", "a", environ={"DOCKER_CONFIG": str(tmp_path)}) is None
    bad = _write(tmp_path, {"auths": {"q.io": {"auth": "!!!"}}})
    with pytest.raises(CredentialsError, match="not base64"):
        await find_credentials("q.io", "a", auth_file=bad)
    helper = _write(tmp_path, {"credHelpers": {"q.io": "no-such-helper-here"}})
    with pytest.raises(CredentialsError, match="docker-credential-no-such-helper-here"):
        await find_credentials("q.io", "a", auth_file=helper)


def test_error_bodies() -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest\\nunknown","detail":{}}]}'
    assert parse_error_body(body) == (ErrorDetail("MANIFEST_UNKNOWN", "manifest unknown"),)
    assert parse_error_body(b"<html>oops</html>") == ()
    assert parse_error_body(b'{"errors": "no"}') == ()


def _refusal(status: int, code: str | None = None, retry_after: str | None = None) -> Exception:
    errors = (ErrorDetail(code, "said the registry"),) if code else ()
    return RegistryResponseError(
        what="docker://r.io/app:v1", status=status, errors=errors, retry_after=retry_after
    )


@pytest.mark.parametrize(
    ("exc", "action", "error_class"),
    [
        (_refusal(404, "MANIFEST_UNKNOWN"), Action.FAIL, ImageNotFoundError),
        (_refusal(404, "NAME_UNKNOWN"), Action.FAIL, ImageNotFoundError),
        (_refusal(404), Action.FAIL, ImageNotFoundError),
        (_refusal(401, "UNAUTHORIZED"), Action.FAIL, CredentialsError),
        (_refusal(403), Action.FAIL, CredentialsError),
        (_refusal(429, "TOOMANYREQUESTS"), Action.RETRY_PART, SourceError),
        (_refusal(503), Action.RETRY_PART, SourceError),
        (_refusal(400, "BLOB_UPLOAD_INVALID"), Action.REQUEUE_LAYER, SourceError),
        (_refusal(418), Action.FAIL, SourceError),
        (aiohttp.ServerDisconnectedError(), Action.RETRY_PART, SourceError),
        (aiohttp.ClientPayloadError("cut"), Action.RETRY_PART, SourceError),
    ],
)
def test_source_error_table(exc: Exception, action: Action, error_class: type) -> None:
    verdict = classifier("source")(exc)
    assert verdict.action is action
    if action is Action.FAIL:
        assert type(to_user_error(verdict, subject="docker://r.io/app:v1")) is error_class
    else:
        assert verdict.error_class is error_class


def test_destination_side_names_its_options_and_errors() -> None:
    verdict = classifier("destination")(_refusal(404, "NAME_UNKNOWN"))
    assert verdict.error_class is RepositoryNotFoundError
    verdict = classifier("destination")(_refusal(401))
    assert "--dest-creds" in verdict.hint


def test_retry_after_is_honoured() -> None:
    verdict = classifier("source")(_refusal(429, "TOOMANYREQUESTS", retry_after="7"))
    assert verdict.throttled
    assert verdict.retry_after == 7.0


def test_next_link() -> None:
    header = '</v2/app/tags/list?n=2&last=v2>; rel="next"'
    assert next_link(header) == "/v2/app/tags/list?n=2&last=v2"
    assert next_link(None) is None
    assert next_link('<https://x/y>; rel="prev"') is None


def test_rate_limit_headers() -> None:
    headers = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}
    assert parse_rate_limit(headers) == RateLimit(remaining=76, limit=100, window=21600)
    assert parse_rate_limit({"ratelimit-remaining": "5"}) == RateLimit(remaining=5)
    assert parse_rate_limit({}) is None


def test_manifest_media_types() -> None:
    assert check_media_type("application/vnd.oci.image.manifest.v1+json; charset=utf-8", where="m")
    with pytest.raises(SourceError, match="schema 1"):
        check_media_type("application/vnd.docker.distribution.manifest.v1+json", where="m")
    with pytest.raises(SourceError, match="unsupported media type 'none'"):
        check_media_type(None, where="m")
