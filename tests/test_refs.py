"""Reference parsing: every accepted form, and one clear UsageError per kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from layerhoist.errors import UsageError
from layerhoist.refs import (
    DestinationRef,
    SourceRef,
    parse_destination,
    parse_source,
    split_name_tag,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci:layout", SourceRef("oci", Path("layout"), None)),
        ("oci:/tmp/x/layout:v1.2", SourceRef("oci", Path("/tmp/x/layout"), "v1.2")),
        ("oci:./rel:latest", SourceRef("oci", Path("rel"), "latest")),
        ("docker-archive:img.tar", SourceRef("docker-archive", Path("img.tar"), None)),
        ("docker-archive:img.tar:1.0", SourceRef("docker-archive", Path("img.tar"), "1.0")),
        (
            "docker-archive:/a/img.tar:library/app:1.0",
            SourceRef("docker-archive", Path("/a/img.tar"), "library/app:1.0"),
        ),
        (
            "docker-archive:img.tar:localhost:5000/app:dev",
            SourceRef("docker-archive", Path("img.tar"), "localhost:5000/app:dev"),
        ),
    ],
)
def test_parse_source_forms(text: str, expected: SourceRef) -> None:
    assert parse_source(text) == expected


@pytest.mark.parametrize(
    "text",
    ["oci:/tmp/layout:v1", "oci:layout", "docker-archive:/a/b.tar:app:1.0"],
)
def test_source_str_round_trips(text: str) -> None:
    assert str(parse_source(text)) == text
    assert parse_source(str(parse_source(text))) == parse_source(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("layout", "has no transport"),
        ("docker:alpine:3", "unknown source transport 'docker'"),
        ("dir:/tmp/x", "unknown source transport 'dir'"),
        ("oci:", "empty path"),
        ("oci::v1", "empty path"),
        ("oci:layout:", "invalid tag ''"),
        ("oci:layout:a:b", "invalid tag 'a:b'"),
        ("oci:layout:a/b", "invalid tag 'a/b'"),
        ("oci:layout:.hidden", "invalid tag '.hidden'"),
        ("oci:layout:" + "x" * 129, "invalid tag"),
        ("oci:layout:app@sha256:" + "a" * 64, "names a digest"),
        ("docker-archive:a.tar:@0", "by index"),
        ("docker-archive:a.tar:App:1", "invalid image name 'App'"),
        ("docker-archive:a.tar:app:", "invalid tag ''"),
        ("docker-archive:a.tar:app:-x", "invalid tag '-x'"),
    ],
)
def test_parse_source_rejects(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_source(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ecr-public:app", DestinationRef("ecr-public", "app", None)),
        ("ecr-public:team/app:v1", DestinationRef("ecr-public", "team/app", "v1")),
        ("ecr:my-app:1.0_rc", DestinationRef("ecr", "my-app", "1.0_rc")),
        ("ecr:a.b/c_d/e-f", DestinationRef("ecr", "a.b/c_d/e-f", None)),
        (
            "public.ecr.aws/my-alias/team/app:v2",
            DestinationRef("ecr-public", "team/app", "v2", alias="my-alias"),
        ),
        ("public.ecr.aws/abc/app", DestinationRef("ecr-public", "app", None, alias="abc")),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:latest",
            DestinationRef("ecr", "app", "latest", registry_id="123456789012", region="eu-west-1"),
        ),
        (
            "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com/ns/app",
            DestinationRef(
                "ecr", "ns/app", None, registry_id="123456789012", region="us-gov-west-1"
            ),
        ),
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app",
            DestinationRef("ecr", "app", None, registry_id="123456789012", region="cn-north-1"),
        ),
    ],
)
def test_parse_destination_forms(text: str, expected: DestinationRef) -> None:
    assert parse_destination(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ecr-public:team/app:v1",
        "ecr:app",
        "public.ecr.aws/alias/app:v1",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1",
    ],
)
def test_destination_str_round_trips(text: str) -> None:
    assert str(parse_destination(text)) == text


def test_repository_length_limits() -> None:
    assert parse_destination("ecr:ab").repository == "ab"
    assert parse_destination("ecr:" + "a" * 256).repository == "a" * 256
    with pytest.raises(UsageError, match="2-256 characters"):
        parse_destination("ecr:a")
    with pytest.raises(UsageError, match="2-256 characters"):
        parse_destination("ecr:" + "a" * 257)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ecr:app@sha256:" + "a" * 64, "names a digest"),
        ("public.ecr.aws/alias/app@sha256:" + "b" * 64, "names a digest"),
        ("ecr:", "empty repository"),
        ("ecr::v1", "empty repository"),
        ("ecr:App", "invalid repository 'App'"),
        ("ecr:app//x", "invalid repository"),
        ("ecr:app/", "invalid repository"),
        ("ecr-public:-app", "invalid repository"),
        ("ecr:app:v1:v2", "more than one ':'"),
        ("ecr:app:", "invalid tag ''"),
        ("ecr:app:.v1", "invalid tag '.v1'"),
        ("ecr:app:" + "t" * 129, "invalid tag"),
        ("public.ecr.aws/alias", "lacks a repository"),
        ("public.ecr.aws/Alias/app", "invalid registry alias 'Alias'"),
        ("public.ecr.aws/1abc/app", "invalid registry alias '1abc'"),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", "lacks a repository"),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/", "empty repository"),
        ("docker.io/library/alpine:3", "host 'docker.io'"),
        ("localhost:5000/app", "host 'localhost:5000'"),
        ("localhost/app", "host 'localhost'"),
        ("12345.dkr.ecr.eu-west-1.amazonaws.com/app", "is not an ECR registry"),
        ("docker://public.ecr.aws/alias/app", "unsupported destination"),
        ("app:v1", "unrecognised destination"),
        ("team/app", "unrecognised destination"),
    ],
)
def test_parse_destination_rejects(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_destination(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v1", (None, "v1")),
        ("app:v1", ("app", "v1")),
        ("localhost:5000/app:v1", ("localhost:5000/app", "v1")),
        ("localhost:5000/app", (None, "localhost:5000/app")),
    ],
)
def test_split_name_tag(text: str, expected: tuple[str | None, str]) -> None:
    assert split_name_tag(text) == expected
