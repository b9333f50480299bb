"""The sync file: the issue's example read into the expected SyncConfig, the defaults and the
overrides, and each way a file can be wrong as one ``FILE:LINE: KEY.PATH: message`` line."""

from __future__ import annotations

import re
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet

from layerhoist.errors import ConfigError
from layerhoist.exits import EXIT_USAGE
from layerhoist.image import Platform
from layerhoist.oci.credentials import Credentials
from layerhoist.refs import DestinationRef, SourceRef
from layerhoist.sync.config import load_config
from layerhoist.sync.model import (
    Destination,
    RegistrySettings,
    SyncConfig,
    SyncMapping,
    TagRules,
)

#: The issue's example, as a user would write it.
ISSUE_EXAMPLE = r"""
defaults:
  target: ecr:mirror            # destination prefix + the source repository's path (no host)
  transport: api                # api | oci, for ECR destinations
  create_repositories: true
  platforms: all                # or a list: [linux/amd64, linux/arm64]
registries:                     # per host: TLS, credentials, concurrency, request rate
  docker.io:
    credentials: {username_env: DOCKERHUB_USER, password_env: DOCKERHUB_TOKEN}
  127.0.0.1:5000:
    tls_verify: false
mappings:
  - from: docker.io/library/alpine
    tags:
      include: ['^3\.\d+$', latest]   # regular expressions, whole-tag match
      exclude: ['-rc']
      semver: '>=3.18'                # only tags that parse as versions (a leading v allowed)
      latest: 5                       # after the other filters: the newest N by version
  - from: ghcr.io/org/app
    to: ecr-public:org/app            # an explicit destination instead of target + path
  - from: oci:/data/layout            # local sources work too
    to: ecr:local/app
"""
HUB_ENV = {"DOCKERHUB_USER": "mirror-bot", "DOCKERHUB_TOKEN": "token-never-shown"}


def write(tmp_path: Path, text: str, name: str = "sync.yaml") -> Path:
    """``text`` (dedented, its first line being line 1) as a file in ``tmp_path``."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_the_issue_example_is_read_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, ISSUE_EXAMPLE)
    config = load_config(path, environ=HUB_ENV)
    assert config == SyncConfig(
        path=path,
        mappings=(
            SyncMapping(
                index=0,
                line=12,
                origin="docker.io/library/alpine",
                source=SourceRef(
                    "docker", None, "latest", host="docker.io", repository="library/alpine"
                ),
                destination=DestinationRef("ecr", "mirror/library/alpine", None),
                tags=TagRules(
                    include=(re.compile(r"^3\.\d+$"), re.compile("latest")),
                    exclude=(re.compile("-rc"),),
                    semver=SpecifierSet(">=3.18"),
                    latest=5,
                ),
                transport="api",
                create_repositories=True,
                platforms=(),
            ),
            SyncMapping(
                index=1,
                line=18,
                origin="ghcr.io/org/app",
                source=SourceRef("docker", None, "latest", host="ghcr.io", repository="org/app"),
                destination=DestinationRef("ecr-public", "org/app", None),
                tags=None,
                transport="api",
                create_repositories=True,
            ),
            SyncMapping(
                index=2,
                line=20,
                origin="oci:/data/layout",
                source=SourceRef("oci", Path("/data/layout"), None),
                destination=DestinationRef("ecr", "local/app", None),
                tags=None,
                transport="api",
                create_repositories=True,
            ),
        ),
        registries={
            "docker.io": RegistrySettings(
                credentials=Credentials("mirror-bot", "token-never-shown")
            ),
            "127.0.0.1:5000": RegistrySettings(tls_verify=False),
        },
        destination=Destination(),
    )
    assert "token-never-shown" not in repr(config)


def test_defaults_mapping_overrides_and_registry_settings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults:
          target: docker://127.0.0.1:5000/mirror
          transport: oci
          platforms: [linux/amd64, linux/arm64/v8]
          endpoint_url: http://127.0.0.1:5000
          region: eu-west-1
          profile: mirror
          registry_id: "123456789012"
        registries:
          index.docker.io:
            concurrency: 4
            requests_per_second: 10
          ghcr.io: {requests_per_second: 0.5}
        mappings:
          - from: alpine
            tags: {include: '3\\.\\d+'}
          - from: docker://ghcr.io/org/app
            transport: api
            create_repositories: true
            platforms: all
          - from: 127.0.0.1:5000/team/app
            to: oci:/data/out
        """,
    )
    config = load_config(path, environ={})
    first, second, third = config.mappings
    assert (first.origin, first.source.host, first.source.repository) == (
        "alpine",
        "docker.io",
        "library/alpine",
    )
    assert str(first.destination) == "docker://127.0.0.1:5000/mirror/library/alpine"
    assert first.tags == TagRules(include=(re.compile(r"3\.\d+"),))
    assert (first.transport, first.create_repositories) == ("oci", False)
    assert first.platforms == (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"))
    assert str(second.destination) == "docker://127.0.0.1:5000/mirror/org/app"
    assert (second.transport, second.create_repositories, second.platforms) == ("api", True, ())
    assert (third.source.host, third.source.repository) == ("127.0.0.1:5000", "team/app")
    assert third.destination == DestinationRef("oci", "", None, path=Path("/data/out"))
    assert [m.line for m in config.mappings] == [15, 17, 21]
    assert config.destination == Destination(
        endpoint_url="http://127.0.0.1:5000",
        region="eu-west-1",
        profile="mirror",
        registry_id="123456789012",
    )
    # Docker Hub under the name references give it, whatever the file calls it.
    assert config.registry("docker.io") == RegistrySettings(concurrency=4, requests_per_second=10)
    assert config.registry("ghcr.io").requests_per_second == 0.5
    assert config.registry("quay.io") == RegistrySettings()


@pytest.mark.parametrize(
    ("target", "destination"),
    [
        ("ecr:mirror", "ecr:mirror/library/alpine"),
        ("ecr-public:mirror", "ecr-public:mirror/library/alpine"),
        ("public.ecr.aws/myalias/mirror", "public.ecr.aws/myalias/mirror/library/alpine"),
        ("oci:/data/out", "oci:/data/out/library/alpine"),
    ],
)
def test_the_target_is_joined_with_the_source_path(
    tmp_path: Path, target: str, destination: str
) -> None:
    path = write(tmp_path, f"defaults: {{target: '{target}'}}\nmappings: [{{from: alpine}}]\n")
    assert str(load_config(path, environ={}).mappings[0].destination) == destination


def test_credentials_come_from_the_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_TEST_USER", "alice")
    monkeypatch.setenv("SYNC_TEST_PASS", "s3cret")
    path = write(
        tmp_path,
        """
        registries:
          ghcr.io: {credentials: {username_env: SYNC_TEST_USER, password_env: SYNC_TEST_PASS}}
        mappings: [{from: ghcr.io/org/app, to: "ecr:org/app"}]
        """,
    )
    assert load_config(path).registry("ghcr.io").credentials == Credentials("alice", "s3cret")


def test_empty_sections_and_merge_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        defaults:
        registries:
        mappings:
          - &base {from: alpine, to: "ecr:a/alpine", transport: oci}
          - <<: *base
            from: busybox
            to: ecr:a/busybox
          - &other {from: ghcr.io/o/x, to: "ecr:a/x", transport: api, create_repositories: true}
          - <<: [*base, *other]
            to: ecr:a/y
        """,
    )
    config = load_config(path, environ={})
    assert (config.registries, config.destination) == ({}, Destination())
    second = config.mappings[1]
    # Keys written in the mapping win over the merged ones; the others come from the anchor.
    assert (second.origin, str(second.destination), second.transport) == (
        "busybox",
        "ecr:a/busybox",
        "oci",
    )
    # Of several merged mappings, the earlier one's keys win.
    fourth = config.mappings[3]
    assert (fourth.origin, fourth.transport, fourth.create_repositories) == ("alpine", "oci", True)


MINIMAL = "mappings: [{from: alpine, to: 'ecr:m/alpine'}]\n"

#: (file, line, key path, what the message says): one case per way a file can be wrong.
BAD_FILES = [
    pytest.param("a: [1, 2\nb: 3\n", 2, "", "not YAML: ", id="not-yaml"),
    pytest.param(
        "mappings:\n  - from: al\x07pine\n",
        2,
        "",
        "not YAML: character U+0007 is not allowed",
        id="control-character",
    ),
    pytest.param("- from: alpine\n", 1, "", "the top level must be a mapping", id="top-list"),
    pytest.param("just text\n", 1, "", "the top level must be a mapping", id="top-scalar"),
    pytest.param("", 1, "", "the file is empty", id="empty"),
    pytest.param(
        MINIMAL + "mapings: []\n",
        2,
        "mapings",
        "unknown key: expected one of defaults, registries, mappings",
        id="unknown-top-key",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    tag: {latest: 1}\n",
        4,
        "mappings[0].tag",
        "unknown key: expected one of from, to, tags, transport",
        id="unknown-mapping-key",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    tags:\n      newest: 3\n",
        5,
        "mappings[0].tags.newest",
        "unknown key: expected one of include, exclude, semver, latest",
        id="unknown-tags-key",
    ),
    pytest.param(
        "defaults:\n  target: ecr:m\n  verify: true\n" + MINIMAL,
        3,
        "defaults.verify",
        "unknown key",
        id="unknown-defaults-key",
    ),
    pytest.param(
        "registries:\n  ghcr.io:\n    tls-verify: false\n" + MINIMAL,
        3,
        "registries['ghcr.io'].tls-verify",
        "unknown key: expected one of tls_verify, credentials, concurrency",
        id="unknown-registry-key",
    ),
    pytest.param(
        "registries:\n  ghcr.io:\n    credentials: {username: bob, password_env: P}\n" + MINIMAL,
        3,
        "registries['ghcr.io'].credentials.username",
        "unknown key: expected one of username_env, password_env",
        id="unknown-credentials-key",
    ),
    pytest.param(
        "registries:\n  ghcr.io:\n    credentials:\n      username_env: U\n"
        "      password: hunter2\n" + MINIMAL,
        5,
        "registries['ghcr.io'].credentials.password",
        "secrets do not belong in the sync file",
        id="secret-password",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    token: abc\n",
        4,
        "mappings[0].token",
        "secrets do not belong in the sync file",
        id="secret-token",
    ),
    pytest.param(
        "registries:\n  ghcr.io: {credentials: {username_env: U}}\n" + MINIMAL,
        2,
        "registries['ghcr.io'].credentials.password_env",
        "missing: this key is required",
        id="credentials-without-password-env",
    ),
    pytest.param(
        "registries:\n  ghcr.io:\n    tls_verify: 'false'\n" + MINIMAL,
        3,
        "registries['ghcr.io'].tls_verify",
        "expected true or false, found a string 'false'",
        id="quoted-boolean",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    tags: {latest: '5'}\n",
        4,
        "mappings[0].tags.latest",
        "expected an integer, found a string '5'",
        id="latest-string",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    tags:\n      include: [3.18]\n",
        5,
        "mappings[0].tags.include[0]",
        "expected a string, found a number 3.18",
        id="include-number",
    ),
    pytest.param(
        "mappings:\n  from: alpine\n",
        1,
        "mappings",
        "expected a list, found a mapping",
        id="mappings-not-a-list",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    tags: latest\n",
        4,
        "mappings[0].tags",
        "expected a mapping, found a string 'latest'",
        id="tags-not-a-mapping",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    create_repositories: 1\n",
        4,
        "mappings[0].create_repositories",
        "expected true or false, found an integer 1",
        id="create-repositories-integer",
    ),
    pytest.param(
        "\nmappings:\n  - from: alpine\n    to: ecr:m/alpine\n    tags:\n"
        "      include: ['^3', '(']\n",
        6,
        "mappings[0].tags.include[1]",
        "bad regular expression '(': missing ), unterminated subpattern at position 0",
        id="bad-include-regex",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    tags: {exclude: '[a-'}\n",
        4,
        "mappings[0].tags.exclude[0]",
        "bad regular expression '[a-': unterminated character set",
        id="bad-exclude-regex",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    tags: {semver: '^3.18'}\n",
        4,
        "mappings[0].tags.semver",
        "bad semver specifier '^3.18'",
        id="bad-semver",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    tags: {latest: 0}\n",
        4,
        "mappings[0].tags.latest",
        "must be at least 1, found an integer 0",
        id="latest-zero",
    ),
    pytest.param(
        "defaults:\n  transport: s3\n" + MINIMAL,
        2,
        "defaults.transport",
        "unknown transport 's3': expected api or oci",
        id="unknown-default-transport",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    transport: OCI\n",
        4,
        "mappings[0].transport",
        "unknown transport 'OCI': expected api or oci",
        id="unknown-mapping-transport",
    ),
    pytest.param(
        "defaults:\n  platforms: [linux/amd64, linux]\n" + MINIMAL,
        2,
        "defaults.platforms[1]",
        "platform 'linux' is not OS/ARCH[/VARIANT]",
        id="bad-platform",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    platforms: every\n",
        4,
        "mappings[0].platforms",
        "expected all or a list of OS/ARCH[/VARIANT], found a string 'every'",
        id="platforms-not-all",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    platforms: []\n",
        4,
        "mappings[0].platforms",
        "an empty list: write all for every platform",
        id="platforms-empty",
    ),
    pytest.param(
        "mappings:\n  - to: ecr:m/alpine\n",
        2,
        "mappings[0].from",
        "missing: this key is required",
        id="no-from",
    ),
    pytest.param(
        "mappings:\n  - from: Alpine\n    to: ecr:m/alpine\n",
        2,
        "mappings[0].from",
        "invalid repository 'library/Alpine' in source 'docker://Alpine'",
        id="bad-from",
    ),
    pytest.param(
        "mappings:\n  - from: tar:/data/app.tar\n    to: ecr:m/app\n",
        2,
        "mappings[0].from",
        "unknown source transport 'tar' in 'tar:/data/app.tar'",
        id="from-unknown-transport",
    ),
    pytest.param(
        "mappings:\n  - from: 'docker-archive:'\n    to: ecr:m/app\n",
        2,
        "mappings[0].from",
        "source 'docker-archive:' has an empty path",
        id="bad-file-from",
    ),
    pytest.param(
        "mappings:\n  - from: alpine:3.20\n    to: ecr:m/alpine\n",
        2,
        "mappings[0].from",
        "'alpine:3.20' names a tag: give the repository alone",
        id="from-with-tag",
    ),
    pytest.param(
        "mappings:\n  - from: oci:/data/layout:v1\n    to: ecr:m/app\n",
        2,
        "mappings[0].from",
        "'oci:/data/layout:v1' names a tag",
        id="oci-from-with-tag",
    ),
    pytest.param(
        "mappings:\n  - from: docker://ghcr.io/org/app@sha256:" + "a" * 64 + "\n"
        "    to: ecr:m/app\n",
        2,
        "mappings[0].from",
        "names a digest: give the repository alone",
        id="from-with-digest",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine:3\n",
        3,
        "mappings[0].to",
        "'ecr:m/alpine:3' names a tag: give the repository alone",
        id="to-with-tag",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: s3://bucket/alpine\n",
        3,
        "mappings[0].to",
        "unsupported destination 's3://bucket/alpine'",
        id="bad-to",
    ),
    pytest.param(
        "defaults:\n  target: ecr:mirror:v1\nmappings: [{from: alpine}]\n",
        2,
        "defaults.target",
        "'ecr:mirror:v1' names a tag",
        id="target-with-tag",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n",
        2,
        "mappings[0]",
        "no to: and no defaults.target: say where its tags go",
        id="no-to-no-target",
    ),
    pytest.param(
        "defaults: {target: 'ecr:mirror'}\nmappings:\n  - from: oci:/data/layout\n",
        3,
        "mappings[0]",
        "'oci:/data/layout' has no repository path to add to defaults.target: give it to:",
        id="oci-source-without-to",
    ),
    pytest.param(
        "defaults: {target: 'ecr:mirror'}\nmappings:\n  - from: docker-archive:/a.tar\n",
        3,
        "mappings[0]",
        "has no repository path",
        id="archive-source-without-to",
    ),
    pytest.param(
        "defaults: {target: 'ecr:"
        + "m" * 20
        + "'}\nmappings:\n  - from: ghcr.io/"
        + "a" * 247
        + "\n",
        3,
        "mappings[0]",
        "defaults.target + its repository: repository",
        id="joined-destination-too-long",
    ),
    pytest.param("mappings: []\n", 1, "mappings", "no mappings: nothing to sync", id="empty-list"),
    pytest.param("mappings:\n", 1, "mappings", "no mappings", id="null-mappings"),
    pytest.param(
        "# nothing to do\ndefaults: {}\n", 2, "mappings", "no mappings", id="no-mappings-key"
    ),
    pytest.param(
        "mappings:\n  - {from: alpine, to: 'ecr:m/alpine'}\n"
        "  - {from: ghcr.io/o/a, to: 'ecr:x/a'}\n"
        "  - from: docker.io/library/alpine\n    to: ecr:m/alpine\n",
        4,
        "mappings[2]",
        "copies into ecr:m/alpine, as mappings[0] (line 2) does",
        id="duplicate-destination",
    ),
    pytest.param(
        "defaults: {target: 'ecr:mirror'}\nmappings:\n  - from: alpine\n"
        "  - {from: ghcr.io/org/app, to: 'ecr:mirror/library/alpine'}\n",
        4,
        "mappings[1]",
        "copies into ecr:mirror/library/alpine, as mappings[0] (line 3) does",
        id="duplicate-joined-destination",
    ),
    pytest.param(
        "base: &b [1]\nmappings:\n  - <<: *b\n    from: alpine\n",
        3,
        "mappings[0]",
        "a merge key (<<) takes a mapping or a list of them",
        id="merge-of-a-list",
    ),
    pytest.param(
        "mappings:\n  - &m\n    <<: *m\n    from: alpine\n",
        3,
        "mappings[0]",
        "a merge key (<<) takes a mapping",
        id="merge-of-itself",
    ),
    pytest.param(
        MINIMAL + "mappings: []\n",
        2,
        "mappings",
        "duplicate key (first on line 1)",
        id="duplicate-yaml-key",
    ),
    pytest.param(
        "registries:\n  https://ghcr.io: {tls_verify: false}\n" + MINIMAL,
        2,
        "registries['https://ghcr.io']",
        "not a registry host",
        id="registry-not-a-host",
    ),
    pytest.param(
        "registries:\n  docker.io: {}\n  index.docker.io: {}\n" + MINIMAL,
        3,
        "registries['index.docker.io']",
        "the same registry as 'docker.io'",
        id="registry-twice",
    ),
    pytest.param(
        "registries:\n  ghcr.io: {concurrency: 0}\n" + MINIMAL,
        2,
        "registries['ghcr.io'].concurrency",
        "must be at least 1, found an integer 0",
        id="concurrency-zero",
    ),
    pytest.param(
        "registries:\n  ghcr.io: {requests_per_second: -1}\n" + MINIMAL,
        2,
        "registries['ghcr.io'].requests_per_second",
        "must be greater than 0, found an integer -1",
        id="rate-negative",
    ),
    pytest.param(
        "registries:\n  ghcr.io: {requests_per_second: .inf}\n" + MINIMAL,
        2,
        "registries['ghcr.io'].requests_per_second",
        "finite number",
        id="rate-infinite",
    ),
    pytest.param(
        "registries:\n  ghcr.io:\n    credentials: {username_env: '', password_env: P}\n" + MINIMAL,
        3,
        "registries['ghcr.io'].credentials.username_env",
        "must not be empty",
        id="empty-variable-name",
    ),
    pytest.param(
        "registries:\n  ghcr.io:\n    credentials:\n      username_env: SYNC_USER\n"
        "      password_env: SYNC_UNSET\n" + MINIMAL,
        5,
        "registries['ghcr.io'].credentials.password_env",
        "environment variable SYNC_UNSET is not set",
        id="missing-variable",
    ),
    pytest.param(
        "registries:\n  ghcr.io:\n    credentials:\n      username_env: SYNC_EMPTY\n"
        "      password_env: SYNC_PASS\n" + MINIMAL,
        4,
        "registries['ghcr.io'].credentials.username_env",
        "environment variable SYNC_EMPTY is empty",
        id="empty-variable",
    ),
    pytest.param(
        "mappings: &loop\n  - *loop\n",
        1,
        "mappings[0]",
        "an alias refers to a node that contains it",
        id="recursive-alias",
    ),
    pytest.param(
        "mappings:\n  - from: alpine\n    to: ecr:m/alpine\n    tags: {latest: 0}\n"
        "  - {from: ghcr.io/org/app, to: 'ecr:m/app', tags: {semver: '~=x'}, pasword: 1}\n"
        "defaults: {transport: ftp}\n",
        4,
        "mappings[0].tags.latest",
        "must be at least 1",
        id="the-earliest-of-several",
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "message"), BAD_FILES)
def test_a_bad_file_is_one_line_naming_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, message: str
) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"SYNC_USER": "u", "SYNC_PASS": "p", "SYNC_EMPTY": ""})
    text_of_error = str(caught.value)
    assert caught.value.exit_code == EXIT_USAGE
    assert "\n" not in text_of_error
    where = f"{path}:{line}: {key}: " if key else f"{path}:{line}: "
    assert text_of_error.startswith(where), text_of_error
    assert message in text_of_error.removeprefix(where), text_of_error


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == f"{path}: cannot read the sync file: No such file or directory"
    assert caught.value.exit_code == EXIT_USAGE


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, environ={})
    assert str(caught.value) == f"{tmp_path}: cannot read the sync file: Is a directory"


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_bytes(b"mappings:\n  - from: alp\xffine\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == f"{path}:2: not UTF-8 text"


def test_a_secret_never_reaches_the_message(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        registries:
          ghcr.io:
            credentials: {username_env: U, password_env: P}
            password: hunter2-never-shown
        mappings: [{from: alpine, to: "ecr:m/alpine"}]
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"U": "u", "P": "p"})
    assert "hunter2-never-shown" not in str(caught.value)


_yaml_pieces = st.sampled_from(
    [
        "mappings:",
        "defaults:",
        "registries:",
        "  - from: alpine",
        "    to: ecr:m/alpine",
        "    tags: {latest: 0}",
        "  docker.io: {concurrency: x}",
        "  target: ecr:mirror",
        "- ",
        ": ",
        "&a ",
        "*a",
        "<<: ",
        "[",
        "{",
        "'",
        "\t",
        "\x07",
        "!!binary ",
        "%YAML 1.1",
        "---",
    ]
)


@given(st.lists(st.one_of(_yaml_pieces, st.text(max_size=8)), max_size=12))
def test_any_text_is_a_config_or_one_line(pieces: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "sync.yaml"
        path.write_text("\n".join(pieces), encoding="utf-8", errors="surrogatepass")
        try:
            load_config(path, environ={})
        except ConfigError as exc:
            assert "\n" not in str(exc)
            assert str(exc).startswith(f"{path}:")
