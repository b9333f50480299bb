"""Reference parsing: every accepted form, and one clear UsageError per kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    ("text", "expected"),
    [
        ("oci:out", DestinationRef("oci", "", None, path=Path("out"))),
        (
            "oci:/tmp/a b/layout:v1.2",
            DestinationRef("oci", "", "v1.2", path=Path("/tmp/a b/layout")),
        ),
        ("oci:dir@x:v1", DestinationRef("oci", "", "v1", path=Path("dir@x"))),
        (
            "docker://localhost:5000/team/app:v1",
            DestinationRef("docker", "team/app", "v1", host="localhost:5000"),
        ),
        ("docker://ghcr.io/org/app", DestinationRef("docker", "org/app", None, host="ghcr.io")),
    ],
)
def test_parse_layout_and_registry_destinations(text: str, expected: DestinationRef) -> None:
    assert parse_destination(text) == expected


def test_service_is_for_ecr_destinations_only() -> None:
    assert parse_destination("public.ecr.aws/abc/app").service == "ecr-public"
    with pytest.raises(ValueError, match="not an ECR"):
        _ = parse_destination("oci:dir").service


@pytest.mark.parametrize(
    "text",
    [
        "ecr-public:team/app:v1",
        "ecr:app",
        "public.ecr.aws/alias/app:v1",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1",
        "oci:/tmp/layout",
        "oci:layout:v1",
        "docker://localhost:5000/team/app:v1",
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
        ("https://public.ecr.aws/alias/app", "unsupported destination"),
        ("oci:", "empty path"),
        ("oci::v1", "empty path"),
        ("oci:dir:.v1", "invalid tag '.v1'"),
        ("oci:dir:a:b", "invalid tag 'a:b'"),
        ("docker://alpine", "names no registry host"),
        ("docker:///app", "names no registry host"),
        ("docker://host/App", "invalid repository 'App'"),
        ("docker://host/", "invalid repository ''"),
        ("docker://host/app:", "invalid tag ''"),
        ("docker://host/app@sha256:" + "c" * 64, "names a digest"),
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


# ---------------------------------------------------------------------------- docker:// sources

DIGEST = "sha256:" + "ab" * 32


def docker(host: str, repository: str, tag: str | None, digest: str | None = None) -> SourceRef:
    return SourceRef("docker", None, tag, host=host, repository=repository, digest=digest)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docker://alpine", docker("docker.io", "library/alpine", "latest")),
        ("docker://alpine:3.20", docker("docker.io", "library/alpine", "3.20")),
        ("docker://bitnami/redis:7", docker("docker.io", "bitnami/redis", "7")),
        ("docker://docker.io/alpine", docker("docker.io", "library/alpine", "latest")),
        ("docker://index.docker.io/a/b", docker("docker.io", "a/b", "latest")),
        ("docker://localhost/app", docker("localhost", "app", "latest")),
        ("docker://localhost:5000/app:dev", docker("localhost:5000", "app", "dev")),
        ("docker://127.0.0.1:5000/a/b/c", docker("127.0.0.1:5000", "a/b/c", "latest")),
        ("docker://ghcr.io/org/app@" + DIGEST, docker("ghcr.io", "org/app", None, DIGEST)),
        ("docker://quay.io/x/y__z-w.v:1", docker("quay.io", "x/y__z-w.v", "1")),
        # Docker's own reading: without a '/', "localhost:5000" is repository and tag.
        ("docker://localhost:5000", docker("docker.io", "library/localhost", "5000")),
    ],
)
def test_parse_docker_sources(text: str, expected: SourceRef) -> None:
    assert parse_source(text) == expected


def test_docker_source_endpoint_and_str() -> None:
    ref = parse_source("docker://alpine")
    assert ref.endpoint == "registry-1.docker.io"
    assert str(ref) == "docker://docker.io/library/alpine:latest"
    assert parse_source("docker://localhost:5000/app").endpoint == "localhost:5000"
    assert str(parse_source("docker://q.io/a@" + DIGEST)) == f"docker://q.io/a@{DIGEST}"
    with pytest.raises(ValueError, match="not a file source"):
        _ = ref.file_path


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("docker://", "has no repository"),
        ("docker://:v1", "has no repository"),
        ("docker://Alpine", "invalid repository 'library/Alpine'"),
        ("docker://quay.io/Org/app", "invalid repository 'Org/app'"),
        ("docker://a//b", "invalid repository"),
        ("docker://app:", "invalid tag ''"),
        ("docker://app:-x", "invalid tag '-x'"),
        ("docker://app@sha256:abc", "invalid digest 'sha256:abc'"),
        ("docker://app@md5:" + "a" * 32, "invalid digest"),
        ("docker://app:v1@" + DIGEST, "both a tag and a digest"),
        ("docker://bad_host.io/app", "invalid registry host 'bad_host.io'"),
        ("docker://host.io:99999999/app", "invalid registry host"),
        ("docker://h.io/" + "a" * 260, "longer than 255"),
    ],
)
def test_parse_docker_source_rejects(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_source(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


_component = st.from_regex(r"[a-z0-9]{1,6}(?:[._-][a-z0-9]{1,4}){0,2}", fullmatch=True)
_hosts = st.sampled_from(["ghcr.io", "localhost:5000", "quay.io", "10.0.0.1:443", "localhost"])
_tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True)


@given(
    host=_hosts,
    path=st.lists(_component, min_size=1, max_size=3),
    tag=st.one_of(st.none(), _tags),
    digest=st.one_of(st.none(), st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True)),
)
def test_docker_sources_round_trip(
    host: str, path: list[str], tag: str | None, digest: str | None
) -> None:
    repository = "/".join(path)
    suffix = f"@{digest}" if digest else (f":{tag}" if tag else "")
    ref = parse_source(f"docker://{host}/{repository}{suffix}")
    assert (ref.host, ref.repository, ref.digest) == (host, repository, digest)
    assert ref.tag == (None if digest else tag or "latest")
    assert parse_source(str(ref)) == ref


@given(st.text(max_size=40))
def test_docker_parser_accepts_or_says_one_line(text: str) -> None:
    try:
        ref = parse_source("docker://" + text)
    except UsageError as exc:
        assert "\n" not in str(exc)
    else:
        assert ref.transport == "docker"
        assert parse_source(str(ref)) == ref


_TAG_RULE = "a tag is 1-128 letters, digits, '_', '.' or '-'"
_SOURCE_TAG_RULE = f"{_TAG_RULE} (no '/' or ':'), not starting with '.' or '-'"
_DESTINATION_TAG_RULE = f"{_TAG_RULE}, not starting with '.' or '-'"
_DOCKER_PATH_RULE = "use lowercase letters and digits separated by '.', '_', '__', '-' or '/'"
_ECR_PATH_RULE = "use lowercase letters and digits separated by '.', '_', '-' or '/'"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("oci:./layout:v@1", "source 'oci:./layout:v@1' names a digest: select the image by tag"),
        (
            "oci:./layout:-bad",
            f"invalid tag '-bad' in source 'oci:./layout:-bad': {_SOURCE_TAG_RULE}",
        ),
        (
            "docker-archive:app.tar:app:-x",
            f"invalid tag '-x' in source 'docker-archive:app.tar:app:-x': {_SOURCE_TAG_RULE}",
        ),
        (
            "docker://Team/App",
            f"invalid repository 'Team/App' in source 'docker://Team/App': {_DOCKER_PATH_RULE}",
        ),
        (
            # the tag's ':' is the last one after the last '/': this one belongs to the path
            "docker://r.io/team:x/app",
            f"invalid repository 'team:x/app' in source 'docker://r.io/team:x/app': "
            f"{_DOCKER_PATH_RULE}",
        ),
    ],
)
def test_source_errors_quote_the_input_and_the_rule(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_source(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ecr:Team", f"invalid repository 'Team' in 'ecr:Team': {_ECR_PATH_RULE}"),
        ("ecr-public:Ab", f"invalid repository 'Ab' in 'ecr-public:Ab': {_ECR_PATH_RULE}"),
        (
            "ecr-public:app:-x",
            f"invalid tag '-x' in destination 'ecr-public:app:-x': {_DESTINATION_TAG_RULE}",
        ),
        (
            "ecr:team/app:-x",
            f"invalid tag '-x' in destination 'ecr:team/app:-x': {_DESTINATION_TAG_RULE}",
        ),
        (
            "public.ecr.aws/A/app",
            "invalid registry alias 'A' in 'public.ecr.aws/A/app': 2-50 lowercase letters and "
            "digits, starting with a letter",
        ),
        (
            "public.ecr.aws/alias/App",
            f"invalid repository 'App' in 'public.ecr.aws/alias/App': {_ECR_PATH_RULE}",
        ),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:a:b",
            "destination '123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:a:b' has more than "
            "one ':' after the repository",
        ),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/Ap",
            "invalid repository 'Ap' in '123456789012.dkr.ecr.eu-west-1.amazonaws.com/Ap': "
            f"{_ECR_PATH_RULE}",
        ),
        (
            "oci:./out:-x",
            f"invalid tag '-x' in destination 'oci:./out:-x': {_DESTINATION_TAG_RULE}",
        ),
        (
            "docker://r.io/App",
            f"invalid repository 'App' in destination 'docker://r.io/App': {_DOCKER_PATH_RULE}",
        ),
    ],
)
def test_destination_errors_quote_the_input_and_the_rule(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_destination(text)
    assert str(caught.value) == message


@pytest.mark.parametrize("role", ["source", "destination"])
def test_a_registry_name_may_be_255_characters_long_with_its_host(role: str) -> None:
    parse = parse_source if role == "source" else parse_destination
    longest = "docker://r.io/" + "a" * 250  # r.io/aaa…: 4 + 1 + 250 = 255
    assert str(parse(longest)).removesuffix(":latest") == longest  # a source gets its tag
    with pytest.raises(UsageError, match=f"^image name in {role} .* is longer than 255$"):
        parse(longest + "a")


def test_an_alias_may_be_50_characters_long() -> None:
    longest = "a" * 50
    assert parse_destination(f"public.ecr.aws/{longest}/app").alias == longest
    with pytest.raises(UsageError, match="invalid registry alias"):
        parse_destination(f"public.ecr.aws/{longest}a/app")


def test_a_private_ecr_destination_is_named_by_its_host_only_with_account_and_region() -> None:
    partial = DestinationRef("ecr", "team/app", "v1", registry_id="123456789012")
    assert str(partial) == "ecr:team/app:v1"
    whole = DestinationRef("ecr", "team/app", None, registry_id="123456789012", region="eu-west-1")
    assert str(whole) == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app"


def test_a_selector_tag_follows_the_last_colon_after_the_last_slash() -> None:
    assert split_name_tag("localhost:5000/team/app:v1") == ("localhost:5000/team/app", "v1")
    assert split_name_tag("a/b:c/d") == (None, "a/b:c/d")
    assert split_name_tag("v1") == (None, "v1")
