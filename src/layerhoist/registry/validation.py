"""Validation of request parameters: names, digests, tags and upload ids.

Everything that later becomes a file name or a database key passes through here,
so a hostile value is refused with ``InvalidParameterException`` before it can
reach the disk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from layerhoist.registry.errors import Code, EcrError

#: The repository name pattern of the ECR API model.
REPOSITORY_NAME_RE = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
MIN_REPOSITORY_NAME = 2
MAX_REPOSITORY_NAME = 256
#: The only digest algorithm the registry stores (ECR accepts nothing else for layers).
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
#: Any well-formed digest, of any algorithm (the API model's pattern).
ANY_DIGEST_RE = re.compile(r"[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+")
#: A tag must also be a valid OCI tag, or the read side could never serve it.
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,299}")
UPLOAD_ID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
ACCOUNT_ID_RE = re.compile(r"[0-9]{12}")
#: An AWS region name (``us-east-1``, ``eu-west-3``…): lower-case words joined by hyphens.
REGION_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+){1,4}")


def invalid(field: str, problem: str) -> EcrError:
    """The service's refusal of one parameter."""
    return EcrError(Code.INVALID_PARAMETER, f"Invalid parameter at '{field}' failed: {problem}")


def is_repository_name(value: str) -> bool:
    """Whether ``value`` is an acceptable repository name."""
    return (
        MIN_REPOSITORY_NAME <= len(value) <= MAX_REPOSITORY_NAME
        and REPOSITORY_NAME_RE.fullmatch(value) is not None
    )


def is_digest(value: str) -> bool:
    """Whether ``value`` is a well-formed sha256 digest (lower-case hex)."""
    return DIGEST_RE.fullmatch(value) is not None


def is_tag(value: str) -> bool:
    """Whether ``value`` is an acceptable image tag."""
    return TAG_RE.fullmatch(value) is not None


def required_str(params: Mapping[str, object], field: str) -> str:
    """A mandatory string parameter."""
    value = params.get(field)
    if value is None:
        raise invalid(field, "a value is required")
    if not isinstance(value, str):
        raise invalid(field, "must be a string")
    return value


def optional_str(params: Mapping[str, object], field: str) -> str | None:
    """An optional string parameter (``None`` when absent)."""
    if params.get(field) is None:
        return None
    return required_str(params, field)


def required_int(params: Mapping[str, object], field: str) -> int:
    """A mandatory non-negative integer parameter."""
    value = params.get(field)
    if value is None:
        raise invalid(field, "a value is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, "must be an integer")
    if value < 0:
        raise invalid(field, "must be at least 0")
    return value


def optional_list(params: Mapping[str, object], field: str) -> list[object] | None:
    """An optional list parameter (``None`` when absent)."""
    value = params.get(field)
    if value is None:
        return None
    if not isinstance(value, list):
        raise invalid(field, "must be a list")
    return value


def required_list(params: Mapping[str, object], field: str) -> list[object]:
    """A mandatory list parameter."""
    value = optional_list(params, field)
    if value is None:
        raise invalid(field, "a value is required")
    return value


def repository_name(params: Mapping[str, object], field: str = "repositoryName") -> str:
    """The repository name parameter, checked against the ECR name rules."""
    value = required_str(params, field)
    if not is_repository_name(value):
        raise invalid(
            field,
            f"must be {MIN_REPOSITORY_NAME}-{MAX_REPOSITORY_NAME} characters and satisfy "
            f"regular expression '{REPOSITORY_NAME_RE.pattern}'",
        )
    return value


def digest(value: object, field: str) -> str:
    """A sha256 digest value, refused when malformed."""
    if not isinstance(value, str) or not is_digest(value):
        raise invalid(field, "must be a digest of the form 'sha256:<64 lower-case hex>'")
    return value


def tag(value: object, field: str = "imageTag") -> str:
    """An image tag, refused when it could not be served over the OCI read side."""
    if not isinstance(value, str) or not is_tag(value):
        raise invalid(field, f"must satisfy regular expression '{TAG_RE.pattern}'")
    return value


def upload_id(params: Mapping[str, object]) -> str:
    """The upload id parameter, a UUID (upload files are named after it)."""
    value = required_str(params, "uploadId")
    if UPLOAD_ID_RE.fullmatch(value) is None:
        raise invalid("uploadId", "must be a UUID")
    return value.lower()
