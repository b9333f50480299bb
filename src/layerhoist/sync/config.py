"""Read a sync file (``layerhoist sync --config FILE``) into a :class:`SyncConfig`.

The file is YAML with three top-level keys::

    defaults:                       # all optional
      target: ecr:mirror            # destination prefix; + "/" + the source's repository path
      transport: api                # api | oci (ECR destinations), default api
      create_repositories: false
      platforms: all                # or [linux/amd64, linux/arm64/v8]
      endpoint_url: http://127.0.0.1:5000   # and region, profile, registry_id, as copy's options
    registries:                     # per source host, as references name it
      docker.io:
        tls_verify: true
        credentials: {username_env: DOCKERHUB_USER, password_env: DOCKERHUB_TOKEN}
        concurrency: 4              # an integer >= 1
        requests_per_second: 10     # a number > 0
    mappings:                       # at least one
      - from: docker.io/library/alpine  # alpine, docker://HOST/REPO, oci:DIR, docker-archive:F
        to: ecr:mirror/alpine           # no tag; default: defaults.target + "/" + the path
        tags: {include: ['^3\\.\\d+$'], exclude: '-rc', semver: '>=3.18', latest: 5}
        transport: oci                  # also create_repositories, platforms: overrides

Every value is checked before anything runs, and a problem is raised as one
:class:`~layerhoist.errors.ConfigError` line ``FILE:LINE: KEY.PATH: what is wrong`` (of several
found at once, the one on the earliest line). Secrets never come from the file: a registry's
credentials name environment variables, read here from ``environ``; a ``password:`` (or
``token:``…) key anywhere is refused.

Structure and types are checked by pydantic models (unknown keys forbidden, strict types: a
quoted ``"true"`` is not a boolean); the values the models hold are already parsed (patterns
compiled, references parsed). What involves several keys (a mapping's destination from
``defaults.target``, duplicate destinations, the environment) is checked while the models are
turned into :mod:`layerhoist.sync.model`'s dataclasses. Lines come from PyYAML's node tree,
composed rather than constructed so that every key and item keeps its position.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, NamedTuple, TypeVar

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from layerhoist.destinations.base import ECR_TRANSPORTS, EcrTransport
from layerhoist.errors import ConfigError, UsageError
from layerhoist.image import Platform
from layerhoist.oci.credentials import Credentials
from layerhoist.refs import (
    DOCKER_HUB,
    DOCKER_HUB_ALIASES,
    DOCKER_PREFIX,
    OCI_PREFIX,
    REGISTRY_HOST_PATTERN,
    DestinationRef,
    SourceRef,
    parse_destination,
    parse_source,
    split_name_tag,
)
from layerhoist.sync.model import (
    Destination,
    RegistrySettings,
    SyncConfig,
    SyncMapping,
    TagRules,
)

#: Keys that would hold a secret; refused wherever they appear.
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "token",
        "secret",
        "auth",
        "identitytoken",
        "registrytoken",
        "aws_secret_access_key",
        "aws_session_token",
    }
)
#: ``platforms:`` value meaning every platform of an index.
ALL_PLATFORMS = "all"
#: Source prefixes that name a transport; anything else is a registry repository.
_SOURCE_PREFIXES = (DOCKER_PREFIX, OCI_PREFIX, "docker-archive:")
#: ``NAME:/``: a transport prefix (no registry reference has a ``/`` right after a ``:``).
_TRANSPORT_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/")
#: A key that reads well unquoted in a key path (``tags``, ``create_repositories``).
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
#: The tag PyYAML gives a merge key (``<<``).
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: The error type of every problem found by this module's own validators.
_INVALID = "layerhoist_config"

#: Where a value sits in the document: keys and list indexes from the top.
KeyPath = tuple[Any, ...]
_T = TypeVar("_T")


# --- parsed values: each validator takes the raw YAML value and returns the parsed one ---------


def _invalid(reason: str) -> PydanticCustomError:
    # The reason goes in the context, not the template: a pattern's braces must stay literal.
    return PydanticCustomError(_INVALID, "{reason}", {"reason": reason})


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _invalid(f"expected a string, found {_describe(value)}")
    return value


def _pattern(value: object) -> re.Pattern[str]:
    text = _text(value)
    try:
        return re.compile(text)
    except re.error as exc:
        raise _invalid(f"bad regular expression {text!r}: {exc}") from None


def _specifiers(value: object) -> SpecifierSet:
    text = _text(value)
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise _invalid(
            f"bad semver specifier {text!r}: expected version specifiers such as '>=3.18,<4'"
        ) from None


def _transport(value: object) -> EcrTransport:
    text = _text(value)
    for transport in ECR_TRANSPORTS:
        if text == transport:
            return transport
    raise _invalid(f"unknown transport {text!r}: expected {' or '.join(ECR_TRANSPORTS)}")


def _platform(value: object) -> Platform:
    try:
        return Platform.parse(_text(value))
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def _one_or_many(value: object) -> object:
    """``include: '^v'`` is ``include: ['^v']``."""
    return [value] if isinstance(value, str) else value


def _all_or_list(value: object) -> object:
    """``platforms: all`` is the empty list (every platform); a list is checked item by item."""
    if value == ALL_PLATFORMS:
        return []
    if isinstance(value, list) and not value:
        raise _invalid(f"an empty list: write {ALL_PLATFORMS} for every platform")
    if isinstance(value, list):
        return value
    raise _invalid(
        f"expected {ALL_PLATFORMS} or a list of OS/ARCH[/VARIANT], found {_describe(value)}"
    )


class _Source(NamedTuple):
    """A ``from:`` as written and as parsed."""

    text: str
    ref: SourceRef


def _origin(value: object) -> _Source:
    text = _text(value)
    # A bare repository (``alpine``, ``ghcr.io/org/app``) is a registry's, as docker reads it;
    # ``dir:/x`` names a transport, one parse_source refuses by name.
    named = text.startswith(_SOURCE_PREFIXES) or _TRANSPORT_PREFIX.match(text) is not None
    written = text if named else DOCKER_PREFIX + text
    try:
        ref = parse_source(written)
    except UsageError as exc:
        raise _invalid(str(exc)) from None
    if ref.digest is not None:
        raise _invalid(f"{text!r} names a digest: give the repository alone (tags: chooses tags)")
    # A registry reference gets tag "latest" when it names none: ask the text, not the result.
    if ref.transport == "docker":
        named_tag = split_name_tag(written.removeprefix(DOCKER_PREFIX))[0] is not None
    else:
        named_tag = ref.tag is not None
    if named_tag:
        raise _invalid(f"{text!r} names a tag: give the repository alone (tags: chooses tags)")
    return _Source(text, ref)


def _repository(value: object) -> DestinationRef:
    text = _text(value)
    try:
        ref = parse_destination(text)
    except UsageError as exc:
        raise _invalid(str(exc)) from None
    if ref.tag is not None:
        raise _invalid(f"{text!r} names a tag: give the repository alone (each tag keeps its name)")
    return ref


_Pattern = Annotated[re.Pattern[str], PlainValidator(_pattern)]
_Patterns = Annotated[list[_Pattern], BeforeValidator(_one_or_many)]
_Specifiers = Annotated[SpecifierSet, PlainValidator(_specifiers)]
_Transport = Annotated[EcrTransport, PlainValidator(_transport)]
_Platforms = Annotated[
    list[Annotated[Platform, PlainValidator(_platform)]], BeforeValidator(_all_or_list)
]
_From = Annotated[_Source, PlainValidator(_origin)]
_Repository = Annotated[DestinationRef, PlainValidator(_repository)]
#: A string that must not be empty (an environment variable's name, a region).
_Name = Annotated[str, Field(min_length=1)]


# --- the file's shape ---------------------------------------------------------------------------


class _Section(BaseModel):
    """A section of the file (a YAML mapping): its keys are exactly the fields (by alias),
    strictly typed."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: object) -> object:
        # Before the fields: the message lists the keys this section takes, and a secret is
        # refused as such rather than as one more unknown key.
        if not isinstance(data, dict):
            return data
        known = [field.alias or name for name, field in cls.model_fields.items()]
        for key in data:
            if isinstance(key, str) and key.lower() in SECRET_KEYS:
                raise PydanticCustomError(
                    _INVALID,
                    "{reason}",
                    {
                        "key": key,
                        "reason": "secrets do not belong in the sync file: name environment "
                        "variables in registries: HOST: credentials: {username_env, "
                        "password_env}, or use the auth file",
                    },
                )
            if key not in known:
                raise PydanticCustomError(
                    _INVALID,
                    "{reason}",
                    {"key": key, "reason": f"unknown key: expected one of {', '.join(known)}"},
                )
        return data


class _CredentialsSection(_Section):
    username_env: _Name
    password_env: _Name


class _RegistrySection(_Section):
    tls_verify: bool = True
    credentials: _CredentialsSection | None = None
    concurrency: Annotated[int, Field(ge=1)] | None = None
    requests_per_second: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class _TagsSection(_Section):
    include: _Patterns = []
    exclude: _Patterns = []
    semver: _Specifiers | None = None
    latest: Annotated[int, Field(ge=1)] | None = None


class _DefaultsSection(_Section):
    target: _Repository | None = None
    transport: _Transport = "api"
    create_repositories: bool = False
    platforms: _Platforms = []
    endpoint_url: _Name | None = None
    region: _Name | None = None
    profile: _Name | None = None
    registry_id: _Name | None = None


class _MappingSection(_Section):
    origin: _From = Field(alias="from")
    to: _Repository | None = None
    tags: _TagsSection | None = None
    transport: _Transport | None = None
    create_repositories: bool | None = None
    platforms: _Platforms | None = None


class _FileSection(_Section):
    # ``defaults:`` or ``registries:`` with every line commented out is YAML's null.
    defaults: _DefaultsSection | None = None
    registries: dict[str, _RegistrySection] | None = None
    # Missing, null or empty: "no mappings", one message for the three.
    mappings: list[_MappingSection] | None = None


# --- the document and its lines -----------------------------------------------------------------


class _Lines:
    """Each key path's line in ``file`` (the key's own line for a mapping's value), and the
    errors that name them."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.lines: dict[KeyPath, int] = {}

    def line(self, path: KeyPath) -> int:
        """The line of ``path``, or of its nearest ancestor in the file (a missing key's
        mapping)."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return 1

    def error(self, path: KeyPath, message: str, *, line: int | None = None) -> ConfigError:
        """The one-line error ``FILE:LINE: KEY.PATH: message`` (``line``: other than the
        path's)."""
        where = _format_path(path)
        prefix = f"{self.file}:{self.line(path) if line is None else line}: "
        return ConfigError(prefix + (f"{where}: {message}" if where else message))


def _format_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _plain(
    node: yaml.Node,
    path: KeyPath,
    *,
    loader: yaml.SafeLoader,
    lines: _Lines,
    open_nodes: set[int],
) -> object:
    """The value of ``node`` as plain Python, recording every key path's line."""
    lines.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_object(node, deep=True)
    if id(node) in open_nodes:
        raise lines.error(path, "an alias refers to a node that contains it")
    open_nodes.add(id(node))
    try:
        if isinstance(node, yaml.SequenceNode):
            return [
                _plain(item, (*path, index), loader=loader, lines=lines, open_nodes=open_nodes)
                for index, item in enumerate(node.value)
            ]
        assert isinstance(node, yaml.MappingNode)
        result: dict[object, object] = {}
        for key, (key_node, value_node) in _entries(node, path, loader=loader, lines=lines).items():
            child = (*path, key)
            lines.lines[child] = key_node.start_mark.line + 1
            result[key] = _plain(
                value_node, child, loader=loader, lines=lines, open_nodes=open_nodes
            )
        return result
    finally:
        open_nodes.discard(id(node))


def _entries(
    node: yaml.MappingNode,
    path: KeyPath,
    *,
    loader: yaml.SafeLoader,
    lines: _Lines,
    merging: frozenset[int] = frozenset(),
) -> dict[object, tuple[yaml.Node, yaml.Node]]:
    """The keys of a mapping node and their key and value nodes, merge keys (``<<: *base``)
    followed: a key written in the mapping wins over a merged one, an earlier merged mapping
    over a later one, and a key written twice is an error."""
    merged: dict[object, tuple[yaml.Node, yaml.Node]] = {}
    written: dict[object, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if key_node.tag == _MERGE_TAG:
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                if not isinstance(source, yaml.MappingNode) or id(source) in merging | {id(node)}:
                    raise lines.error(
                        path, "a merge key (<<) takes a mapping or a list of them", line=key_line
                    )
                inner = _entries(
                    source, path, loader=loader, lines=lines, merging=merging | {id(node)}
                )
                for key, pair in inner.items():
                    merged.setdefault(key, pair)
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            raise lines.error(path, "a key must be a single value", line=key_line)
        key = loader.construct_object(key_node, deep=True)
        if key in written:
            first = written[key][0].start_mark.line + 1
            raise lines.error((*path, key), f"duplicate key (first on line {first})", line=key_line)
        written[key] = (key_node, value_node)
    return merged | written


def _read_document(path: Path, lines: _Lines) -> object:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the sync file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None
    try:
        return _compose(text, path, lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "unreadable"
        raise ConfigError(f"{path}{where}: not YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{path}:{line}: not YAML: character U+{exc.character:04X} is not allowed"
        ) from None


def _compose(text: str, path: Path, lines: _Lines) -> object:
    """The document in ``text`` as plain Python (PyYAML's errors pass through)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError(f"{path}:1: the file is empty: it needs a mappings: list")
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError(
                f"{path}:{root.start_mark.line + 1}: the top level must be a mapping "
                f"(defaults, registries, mappings), found {_node_kind(root)}"
            )
        return _plain(root, (), loader=loader, lines=lines, open_nodes=set())
    finally:
        loader.dispose()


def _node_kind(node: yaml.Node) -> str:
    return "a list" if isinstance(node, yaml.SequenceNode) else "a single value"


# --- messages -----------------------------------------------------------------------------------


def _describe(value: object) -> str:
    """``value`` as the YAML reader sees it: ``an integer 5``, ``a list``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"an integer {value}"
    if isinstance(value, float):
        return f"a number {value}"
    if isinstance(value, str):
        return f"a string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} {value}"


#: Pydantic's error types this module words itself; the rest keep pydantic's message.
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _bound(number: float) -> str:
    """A limit as the file would write it: ``0``, not ``0.0``."""
    return str(int(number)) if float(number).is_integer() else str(number)


def _problem(error: ErrorDetails) -> tuple[KeyPath, str]:
    """The key path and the message of one of pydantic's errors."""
    path: KeyPath = tuple(error["loc"])
    kind = error["type"]
    context = error.get("ctx") or {}
    value = error.get("input")
    if kind == _INVALID and "key" in context:
        path = (*path, context["key"])
    if kind in _EXPECTED:
        return path, f"expected {_EXPECTED[kind]}, found {_describe(value)}"
    if kind == "missing":
        return path, "missing: this key is required"
    if kind == "greater_than_equal":
        return path, f"must be at least {_bound(context['ge'])}, found {_describe(value)}"
    if kind == "greater_than":
        return path, f"must be greater than {_bound(context['gt'])}, found {_describe(value)}"
    if kind == "string_too_short":
        return path, "must not be empty"
    return path, error["msg"]


# --- from the models to the configuration -------------------------------------------------------


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> SyncConfig:
    """Read, validate and resolve the sync file at ``path``.

    ``environ`` (default :data:`os.environ`) supplies the credentials the file names by
    variable. Raises :class:`~layerhoist.errors.ConfigError` for the first problem in the file.
    """
    env = os.environ if environ is None else environ
    lines = _Lines(path)
    document = _read_document(path, lines)
    try:
        parsed = _FileSection.model_validate(document)
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors()]
        where, message = min(problems, key=lambda problem: lines.line(problem[0]))
        raise lines.error(where, message) from None
    defaults = parsed.defaults or _DefaultsSection()
    return SyncConfig(
        path=path,
        registries=_registries(parsed.registries or {}, lines, env),
        mappings=_mappings(parsed.mappings or [], defaults, lines),
        destination=Destination(
            endpoint_url=defaults.endpoint_url,
            region=defaults.region,
            profile=defaults.profile,
            registry_id=defaults.registry_id,
        ),
    )


def _registries(
    sections: Mapping[str, _RegistrySection], lines: _Lines, environ: Mapping[str, str]
) -> dict[str, RegistrySettings]:
    settings: dict[str, RegistrySettings] = {}
    named_as: dict[str, str] = {}
    for host, section in sections.items():
        where: KeyPath = ("registries", host)
        if REGISTRY_HOST_PATTERN.fullmatch(host) is None:
            raise lines.error(
                where, "not a registry host: name it as references do (docker.io, 127.0.0.1:5000)"
            )
        # References call Docker Hub docker.io whatever its user typed.
        name = DOCKER_HUB if host in DOCKER_HUB_ALIASES else host
        if name in named_as:
            raise lines.error(where, f"the same registry as {named_as[name]!r}: merge them")
        named_as[name] = host
        credentials = None
        if section.credentials is not None:
            credentials = Credentials(
                _variable(
                    section.credentials.username_env,
                    (*where, "credentials", "username_env"),
                    lines,
                    environ,
                ),
                _variable(
                    section.credentials.password_env,
                    (*where, "credentials", "password_env"),
                    lines,
                    environ,
                ),
            )
        settings[name] = RegistrySettings(
            tls_verify=section.tls_verify,
            credentials=credentials,
            concurrency=section.concurrency,
            requests_per_second=section.requests_per_second,
        )
    return settings


def _variable(name: str, where: KeyPath, lines: _Lines, environ: Mapping[str, str]) -> str:
    value = environ.get(name)
    if value is None:
        raise lines.error(where, f"environment variable {name} is not set")
    if not value:
        raise lines.error(where, f"environment variable {name} is empty")
    return value


def _mappings(
    sections: list[_MappingSection], defaults: _DefaultsSection, lines: _Lines
) -> tuple[SyncMapping, ...]:
    if not sections:
        raise lines.error(("mappings",), "no mappings: nothing to sync")
    mappings: list[SyncMapping] = []
    taken: dict[str, int] = {}
    for index, section in enumerate(sections):
        where: KeyPath = ("mappings", index)
        destination = _destination(section, defaults.target, where, lines)
        key = str(destination)
        if key in taken:
            other = taken[key]
            raise lines.error(
                where,
                f"copies into {key}, as mappings[{other}] (line "
                f"{lines.line(('mappings', other))}) does: give each its own destination",
            )
        taken[key] = index
        mappings.append(
            SyncMapping(
                index=index,
                line=lines.line(where),
                origin=section.origin.text,
                source=section.origin.ref,
                destination=destination,
                tags=_tag_rules(section.tags),
                transport=_either(section.transport, defaults.transport),
                create_repositories=_either(
                    section.create_repositories, defaults.create_repositories
                ),
                platforms=tuple(_either(section.platforms, defaults.platforms)),
            )
        )
    return tuple(mappings)


def _either(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _destination(
    section: _MappingSection, target: DestinationRef | None, where: KeyPath, lines: _Lines
) -> DestinationRef:
    if section.to is not None:
        return section.to
    source = section.origin.ref
    if source.repository is None:
        raise lines.error(
            where,
            f"{section.origin.text!r} has no repository path to add to defaults.target: "
            "give it to:",
        )
    if target is None:
        raise lines.error(where, "no to: and no defaults.target: say where its tags go")
    joined = f"{target}/{source.repository}"
    try:
        return parse_destination(joined)
    except UsageError as exc:
        raise lines.error(where, f"defaults.target + its repository: {exc}") from None


def _tag_rules(section: _TagsSection | None) -> TagRules | None:
    if section is None:
        return None
    return TagRules(
        include=tuple(section.include),
        exclude=tuple(section.exclude),
        semver=section.semver,
        latest=section.latest,
    )
