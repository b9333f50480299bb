"""Parse the source and destination references a user types.

Sources follow skopeo's transports: ``oci:DIR[:TAG]``, ``docker-archive:FILE[:TAG]`` and
``docker://[HOST/]REPO[:TAG|@DIGEST]``. As in skopeo, a path ends at the first ``:`` after the
transport, so a path cannot contain ``:``. For ``docker-archive`` the part after that colon
selects a ``RepoTags`` entry and may be a full ``NAME:TAG`` (as ``skopeo copy …
docker-archive:FILE:NAME:TAG`` writes it) or just the tag.

A ``docker://`` reference is normalized as Docker does it: a first path component that holds a
``.`` or a ``:``, or is ``localhost``, is the registry host; otherwise the host is Docker Hub
(``docker.io``, served by ``registry-1.docker.io``) and a one-component repository gets the
``library/`` prefix. Without a tag or digest the tag is ``latest``.

Destinations are ``ecr-public:REPO[:TAG]``, ``ecr:REPO[:TAG]`` and the registry names users
already know: ``public.ecr.aws/ALIAS/REPO[:TAG]`` and
``ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG]``; ``oci:DIR[:TAG]``, an OCI image layout to
write (the path ends at the first ``:``, as for sources); and ``docker://HOST/REPO[:TAG]``, any
OCI registry (parsed here; :func:`~layerhoist.destinations.open_destination` says it is not
supported yet).

Every malformed reference raises :class:`~layerhoist.errors.UsageError` with one line that quotes
the text at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from layerhoist.errors import UsageError
from layerhoist.image import DIGEST_PATTERN

SourceTransport = Literal["oci", "docker-archive", "docker"]
DestinationService = Literal["ecr-public", "ecr"]
#: How a destination is written: ECR's layer API (one per service), an OCI image layout on
#: disk, or an OCI registry through the distribution API.
DestinationTransport = Literal["ecr-public", "ecr", "oci", "docker"]

#: A tag as Docker, OCI distribution and ECR all accept it.
TAG_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
#: ECR's repository name pattern (the same for ECR Public).
REPOSITORY_PATTERN = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
REPOSITORY_MIN_LENGTH = 2
REPOSITORY_MAX_LENGTH = 256
#: ECR Public registry alias (``public.ecr.aws/ALIAS/...``).
ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9]+(?:[._-][a-z0-9]+)*")
ALIAS_MAX_LENGTH = 50
ECR_PUBLIC_HOST = "public.ecr.aws"
#: ``ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn]``: the private registry host names.
ECR_HOST_PATTERN = re.compile(
    r"(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z0-9]+)+)"
    r"\.amazonaws\.com(?:\.cn)?"
)
#: A Docker image name (optional ``host[:port]/`` then lowercase path components), used to
#: check a ``NAME:TAG`` selector of a docker-archive source.
DOCKER_NAME_PATTERN = re.compile(
    r"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)

#: Docker Hub as references name it, the names it is also known by, and the host serving its API.
DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
DOCKER_HUB_LIBRARY = "library/"
DEFAULT_TAG = "latest"
DOCKER_PREFIX = "docker://"
OCI_PREFIX = "oci:"
#: A registry host: DNS labels (or an IPv6 address in brackets) and an optional port, as
#: distribution's reference grammar has it.
REGISTRY_HOST_PATTERN = re.compile(
    r"(?:(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
    r"(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*|\[[0-9A-Fa-f:.]+\])"
    r"(?::[0-9]{1,5})?"
)
#: One path component of a repository name in distribution's grammar.
PATH_COMPONENT_PATTERN = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
#: distribution's limit on the length of ``HOST/REPOSITORY``.
NAME_MAX_LENGTH = 255

_SOURCE_FORMS = "oci:DIR[:TAG], docker-archive:FILE[:TAG] or docker://[HOST/]REPO[:TAG|@DIGEST]"
_DESTINATION_FORMS = (
    "ecr-public:REPO[:TAG], ecr:REPO[:TAG], public.ecr.aws/ALIAS/REPO[:TAG] "
    "or ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG]"
)


@dataclass(frozen=True)
class SourceRef:
    """Where images come from.

    For the file transports ``path`` is the layout directory or archive, and ``tag`` is
    ``None`` for "every tagged image". For ``oci`` it is a tag (a
    ``org.opencontainers.image.ref.name``); for ``docker-archive`` it selects a ``RepoTags``
    entry, either ``NAME:TAG`` or just the tag.

    For ``docker`` ``path`` is ``None``; ``host`` is the registry as references name it
    (``docker.io`` for Docker Hub), ``repository`` the normalized repository
    (``library/alpine``), and exactly one of ``tag`` and ``digest`` is set.
    """

    transport: SourceTransport
    path: Path | None
    tag: str | None
    host: str | None = None
    repository: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        if self.transport == "docker":
            reference = f"@{self.digest}" if self.digest is not None else f":{self.tag}"
            return f"{DOCKER_PREFIX}{self.host}/{self.repository}{reference}"
        suffix = f":{self.tag}" if self.tag is not None else ""
        return f"{self.transport}:{self.path}{suffix}"

    @property
    def file_path(self) -> Path:
        """The path of a file transport's layout or archive (``ValueError`` for ``docker``)."""
        if self.path is None:
            raise ValueError(f"{self} is not a file source")
        return self.path

    @property
    def endpoint(self) -> str:
        """The host serving the registry API: ``registry-1.docker.io`` for Docker Hub."""
        if self.host is None:
            raise ValueError(f"{self} is not a registry source")
        return DOCKER_HUB_ENDPOINT if self.host == DOCKER_HUB else self.host


@dataclass(frozen=True)
class DestinationRef:
    """Where images go, with an optional tag: a repository of ECR Public or ECR, an OCI image
    layout directory (``oci``) or a repository of an OCI registry (``docker``).

    ``registry_id`` and ``region`` come from an ``ACCOUNT.dkr.ecr.REGION.amazonaws.com`` host
    name, ``alias`` from ``public.ecr.aws/ALIAS/``; all are ``None`` for the ``ecr:`` and
    ``ecr-public:`` forms, where options and the AWS configuration decide. ``path`` is set for
    ``oci`` only (whose ``repository`` is empty), ``host`` for ``docker`` only.
    """

    transport: DestinationTransport
    repository: str
    tag: str | None
    registry_id: str | None = None
    region: str | None = None
    alias: str | None = None
    #: The layout directory of an ``oci:`` destination.
    path: Path | None = None
    #: ``HOST[:PORT]`` of a ``docker://`` destination.
    host: str | None = None

    @property
    def service(self) -> DestinationService:
        """The AWS service of an ECR destination; ``ValueError`` for any other transport."""
        if self.transport == "ecr-public" or self.transport == "ecr":
            return self.transport
        raise ValueError(f"{self} is not an ECR or ECR Public destination")

    def __str__(self) -> str:
        suffix = f":{self.tag}" if self.tag is not None else ""
        if self.transport == "oci":
            return f"{OCI_PREFIX}{self.path}{suffix}"
        if self.transport == "docker":
            return f"{DOCKER_PREFIX}{self.host}/{self.repository}{suffix}"
        if self.alias is not None:
            return f"{ECR_PUBLIC_HOST}/{self.alias}/{self.repository}{suffix}"
        if self.registry_id is not None and self.region is not None:
            host = f"{self.registry_id}.dkr.ecr.{self.region}.amazonaws.com"
            return f"{host}/{self.repository}{suffix}"
        return f"{self.transport}:{self.repository}{suffix}"


def is_valid_tag(text: str) -> bool:
    """Whether ``text`` is a tag Docker, OCI registries and ECR all accept."""
    return TAG_PATTERN.fullmatch(text) is not None


def split_name_tag(text: str) -> tuple[str | None, str]:
    """Split a docker-archive selector into ``(NAME, TAG)``; ``NAME`` is ``None`` for a bare tag.

    The tag is what follows the last ``:`` that comes after the last ``/`` (so a registry port
    such as ``localhost:5000/app`` is part of the name).
    """
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon <= slash:
        return None, text
    return text[:colon], text[colon + 1 :]


def parse_source(text: str) -> SourceRef:
    """Parse ``oci:DIR[:TAG]``, ``docker-archive:FILE[:TAG]`` or ``docker://…`` (see above)."""
    if text.startswith(DOCKER_PREFIX):
        return _parse_docker(text)
    name, sep, rest = text.partition(":")
    if not sep:
        raise UsageError(f"source {text!r} has no transport: expected {_SOURCE_FORMS}")
    transport: SourceTransport
    if name == "oci":
        transport = "oci"
    elif name == "docker-archive":
        transport = "docker-archive"
    else:
        raise UsageError(f"unknown source transport {name!r} in {text!r}: expected {_SOURCE_FORMS}")
    path_text, has_tag, tag = rest.partition(":")
    if not path_text:
        raise UsageError(f"source {text!r} has an empty path: expected {_SOURCE_FORMS}")
    if not has_tag:
        return SourceRef(transport, Path(path_text), None)
    if transport == "oci":
        _check_source_tag(tag, text)
    else:
        _check_archive_selector(tag, text)
    return SourceRef(transport, Path(path_text), tag)


def _parse_docker(text: str) -> SourceRef:
    """Parse and normalize ``docker://[HOST/]REPO[:TAG|@DIGEST]`` as Docker does."""
    host, path, tag, digest = _registry_name(text, role="source", explicit_host=False)
    if digest is None and tag is None:
        tag = DEFAULT_TAG
    return SourceRef("docker", None, tag, host=host, repository=path, digest=digest)


def _registry_name(
    text: str, *, role: str, explicit_host: bool
) -> tuple[str, str, str | None, str | None]:
    """``docker://[HOST/]REPO[:TAG|@DIGEST]`` as Docker normalizes it: host, path, tag, digest.

    ``role`` (source or destination) names the reference in messages. With ``explicit_host``
    the first component is the host and must be there (``docker://HOST/REPO``); without, it
    is a host only when it looks like one, as Docker reads it.
    """
    rest = text.removeprefix(DOCKER_PREFIX)
    name, at, digest = rest.partition("@")
    if at and DIGEST_PATTERN.fullmatch(digest) is None:
        raise UsageError(
            f"invalid digest {digest!r} in {role} {text!r}: expected sha256:<64 lowercase hex>"
        )
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag: str | None = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if at:
            raise UsageError(f"{role} {text!r} names both a tag and a digest: give one of them")
        if not is_valid_tag(tag):
            raise UsageError(f"invalid tag {tag!r} in {role} {text!r}")
    if not name:
        raise UsageError(f"{role} {text!r} has no repository: expected docker://[HOST/]REPO[:TAG]")
    first, has_path, path = name.partition("/")
    if explicit_host and (not has_path or not first):
        raise UsageError(f"{role} {text!r} names no registry host: expected docker://HOST/REPO")
    if has_path and (explicit_host or "." in first or ":" in first or first == "localhost"):
        host = first
        if REGISTRY_HOST_PATTERN.fullmatch(host) is None:
            raise UsageError(f"invalid registry host {host!r} in {role} {text!r}")
    else:
        host, path = DOCKER_HUB, name
    if host in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
        if "/" not in path:
            path = DOCKER_HUB_LIBRARY + path
    for component in path.split("/"):
        if PATH_COMPONENT_PATTERN.fullmatch(component) is None:
            raise UsageError(
                f"invalid repository {path!r} in {role} {text!r}: use lowercase letters and "
                "digits separated by '.', '_', '__', '-' or '/'"
            )
    if len(host) + 1 + len(path) > NAME_MAX_LENGTH:
        raise UsageError(f"image name in {role} {text!r} is longer than {NAME_MAX_LENGTH}")
    return host, path, tag, digest or None


def _check_source_tag(tag: str, text: str) -> None:
    if "@" in tag:
        raise UsageError(f"source {text!r} names a digest: select the image by tag")
    if not is_valid_tag(tag):
        raise UsageError(
            f"invalid tag {tag!r} in source {text!r}: a tag is 1-128 letters, digits, '_', '.' "
            "or '-' (no '/' or ':'), not starting with '.' or '-'"
        )


def _check_archive_selector(selector: str, text: str) -> None:
    if selector.startswith("@"):
        raise UsageError(
            f"source {text!r} selects an image by index: select it by tag (NAME:TAG or TAG)"
        )
    name, tag = split_name_tag(selector)
    if name is not None and DOCKER_NAME_PATTERN.fullmatch(name) is None:
        raise UsageError(f"invalid image name {name!r} in source {text!r}")
    _check_source_tag(tag, text)


def parse_destination(text: str) -> DestinationRef:
    """Parse one of the destination forms (see the module docstring)."""
    # Before the digest check: a directory name may hold an '@', and the tag check refuses
    # one after the path.
    if text.startswith(OCI_PREFIX):
        return _parse_layout_destination(text)
    if "@" in text:
        raise UsageError(
            f"destination {text!r} names a digest: layerhoist pushes to a repository and tag"
        )
    if text.startswith("ecr-public:"):
        repository, tag = _split_repository_tag(text.removeprefix("ecr-public:"), text)
        return DestinationRef("ecr-public", repository, tag)
    if text.startswith("ecr:"):
        repository, tag = _split_repository_tag(text.removeprefix("ecr:"), text)
        return DestinationRef("ecr", repository, tag)
    host, slash, path = text.partition("/")
    if host == ECR_PUBLIC_HOST:
        alias, slash, path = path.partition("/")
        if not slash:
            raise UsageError(
                f"destination {text!r} lacks a repository: expected "
                f"{ECR_PUBLIC_HOST}/ALIAS/REPO[:TAG]"
            )
        _check_alias(alias, text)
        repository, tag = _split_repository_tag(path, text)
        return DestinationRef("ecr-public", repository, tag, alias=alias)
    host_match = ECR_HOST_PATTERN.fullmatch(host)
    if host_match is not None:
        if not slash:
            raise UsageError(f"destination {text!r} lacks a repository after the host name")
        repository, tag = _split_repository_tag(path, text)
        return DestinationRef(
            "ecr",
            repository,
            tag,
            registry_id=host_match["account"],
            region=host_match["region"],
        )
    if text.startswith(DOCKER_PREFIX):
        return _parse_registry_destination(text)
    if "://" in text:
        raise UsageError(f"unsupported destination {text!r}: expected {_DESTINATION_FORMS}")
    if slash and ("." in host or ":" in host or host == "localhost"):
        raise UsageError(
            f"destination host {host!r} in {text!r} is not an ECR registry: expected "
            f"{_DESTINATION_FORMS} (use ecr:/ecr-public: with --endpoint-url for other endpoints)"
        )
    raise UsageError(f"unrecognised destination {text!r}: expected {_DESTINATION_FORMS}")


def _parse_layout_destination(text: str) -> DestinationRef:
    path_text, has_tag, tag = text.removeprefix(OCI_PREFIX).partition(":")
    if not path_text:
        raise UsageError(f"destination {text!r} has an empty path: expected oci:DIR[:TAG]")
    if has_tag:
        _check_destination_tag(tag, text)
    return DestinationRef("oci", "", tag if has_tag else None, path=Path(path_text))


def _parse_registry_destination(text: str) -> DestinationRef:
    host, repository, tag, digest = _registry_name(text, role="destination", explicit_host=True)
    if digest is not None:
        raise UsageError(f"destination {text!r} names a digest: name a tag, or none")
    return DestinationRef("docker", repository, tag, host=host)


def _split_repository_tag(text: str, whole: str) -> tuple[str, str | None]:
    repository, has_tag, tag = text.partition(":")
    if has_tag:
        if ":" in tag:
            raise UsageError(f"destination {whole!r} has more than one ':' after the repository")
        _check_destination_tag(tag, whole)
    _check_repository(repository, whole)
    return repository, (tag if has_tag else None)


def _check_destination_tag(tag: str, whole: str) -> None:
    if not is_valid_tag(tag):
        raise UsageError(
            f"invalid tag {tag!r} in destination {whole!r}: a tag is 1-128 letters, digits, "
            "'_', '.' or '-', not starting with '.' or '-'"
        )


def _check_repository(repository: str, whole: str) -> None:
    if not repository:
        raise UsageError(f"destination {whole!r} has an empty repository name")
    if not REPOSITORY_MIN_LENGTH <= len(repository) <= REPOSITORY_MAX_LENGTH:
        raise UsageError(
            f"repository {repository!r} in {whole!r} must be {REPOSITORY_MIN_LENGTH}-"
            f"{REPOSITORY_MAX_LENGTH} characters long"
        )
    if REPOSITORY_PATTERN.fullmatch(repository) is None:
        raise UsageError(
            f"invalid repository {repository!r} in {whole!r}: use lowercase letters and digits "
            "separated by '.', '_', '-' or '/'"
        )


def _check_alias(alias: str, whole: str) -> None:
    if len(alias) > ALIAS_MAX_LENGTH or ALIAS_PATTERN.fullmatch(alias) is None:
        raise UsageError(
            f"invalid registry alias {alias!r} in {whole!r}: 2-{ALIAS_MAX_LENGTH} lowercase "
            "letters and digits, starting with a letter"
        )
