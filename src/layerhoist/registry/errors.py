"""The refusals of the embedded registry, in the wire shape of each API it speaks.

::

    EcrError    an ECR / ECR Public JSON 1.1 error: ``{"__type": code, "message": ...}``
                plus any extra modeled fields (``lastValidByteReceived``…); botocore maps
                ``__type`` to the modeled exception class (``client.exceptions.<code>``)
    OciError    an OCI distribution error: ``{"errors": [{"code", "message", "detail"}]}``

Handlers raise these; the server turns them into responses, so a refusal never
escapes as a traceback and the server keeps serving.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Mapping
from enum import StrEnum
from http import HTTPStatus


class Code(StrEnum):
    """Error codes of the ECR and ECR Public services that the registry answers with."""

    EMPTY_UPLOAD = "EmptyUploadException"
    IMAGE_ALREADY_EXISTS = "ImageAlreadyExistsException"
    IMAGE_DIGEST_DOES_NOT_MATCH = "ImageDigestDoesNotMatchException"
    IMAGE_NOT_FOUND = "ImageNotFoundException"
    IMAGE_TAG_ALREADY_EXISTS = "ImageTagAlreadyExistsException"
    INVALID_LAYER = "InvalidLayerException"
    INVALID_LAYER_PART = "InvalidLayerPartException"
    INVALID_PARAMETER = "InvalidParameterException"
    LAYER_ALREADY_EXISTS = "LayerAlreadyExistsException"
    LAYER_PART_TOO_SMALL = "LayerPartTooSmallException"
    LAYERS_NOT_FOUND = "LayersNotFoundException"
    REFERENCED_IMAGES_NOT_FOUND = "ReferencedImagesNotFoundException"
    REGISTRY_NOT_FOUND = "RegistryNotFoundException"
    REPOSITORY_ALREADY_EXISTS = "RepositoryAlreadyExistsException"
    REPOSITORY_NOT_EMPTY = "RepositoryNotEmptyException"
    REPOSITORY_NOT_FOUND = "RepositoryNotFoundException"
    SERIALIZATION = "SerializationException"
    SERVER = "ServerException"
    THROTTLING = "ThrottlingException"
    UNKNOWN_OPERATION = "UnknownOperationException"
    UPLOAD_NOT_FOUND = "UploadNotFoundException"


class EcrError(Exception):
    """A refusal of the ECR JSON API; ``fields`` are extra modeled members of the error shape."""

    def __init__(
        self,
        code: Code | str,
        message: str,
        *,
        status: int = HTTPStatus.BAD_REQUEST,
        fields: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = str(code)
        self.message = message
        self.status = status
        self.fields: Mapping[str, object] = dict(fields or {})

    def body(self) -> dict[str, object]:
        """The JSON document of the response."""
        return {"__type": self.code, "message": self.message, **self.fields}


#: ``errno`` values that mean the data directory's file system has no room left.
_OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_out_of_space(error: BaseException) -> bool:
    """Whether ``error`` says the disk (or the quota) is full: OSError or SQLite's own."""
    if isinstance(error, OSError):
        return error.errno in _OUT_OF_SPACE_ERRNOS
    return isinstance(error, sqlite3.Error) and (
        getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    )


def storage_failure(error: OSError | sqlite3.Error) -> EcrError:
    """The service's answer when the data directory refuses a write: ServerException (500).

    A full disk says so in words a client can show (``out of space (ENOSPC)``); the request
    changed nothing, so the same request may succeed once space returns.
    """
    if is_out_of_space(error):
        message = (
            "The registry is out of space (ENOSPC): its data directory cannot take more "
            "bytes; retry once space is freed"
        )
    else:
        message = f"The registry could not read or write its data: {error}"
    return EcrError(Code.SERVER, message, status=HTTPStatus.INTERNAL_SERVER_ERROR)


class OciCode(StrEnum):
    """Error codes of the OCI distribution specification (and distribution's own)."""

    BLOB_UNKNOWN = "BLOB_UNKNOWN"
    BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
    BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
    DENIED = "DENIED"
    DIGEST_INVALID = "DIGEST_INVALID"
    MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
    MANIFEST_INVALID = "MANIFEST_INVALID"
    MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
    NAME_INVALID = "NAME_INVALID"
    NAME_UNKNOWN = "NAME_UNKNOWN"
    PAGINATION_NUMBER_INVALID = "PAGINATION_NUMBER_INVALID"
    RANGE_INVALID = "RANGE_INVALID"
    SIZE_INVALID = "SIZE_INVALID"
    TAG_INVALID = "TAG_INVALID"
    TOOMANYREQUESTS = "TOOMANYREQUESTS"
    UNAUTHORIZED = "UNAUTHORIZED"
    UNKNOWN = "UNKNOWN"
    UNSUPPORTED = "UNSUPPORTED"


class OciError(Exception):
    """A refusal of the ``/v2/`` API; ``headers`` go on the response (a challenge, a Range)."""

    def __init__(
        self,
        code: OciCode,
        message: str,
        *,
        status: int,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.headers: Mapping[str, str] = dict(headers or {})

    def body(self) -> dict[str, object]:
        """The JSON document of the response."""
        return {"errors": [{"code": str(self.code), "message": self.message, "detail": {}}]}


#: How the ``/v2/`` side answers an ECR refusal raised by code both APIs share.
_OCI_EQUIVALENTS: Mapping[str, tuple[OciCode, int]] = {
    Code.THROTTLING: (OciCode.TOOMANYREQUESTS, HTTPStatus.TOO_MANY_REQUESTS),
    Code.LAYERS_NOT_FOUND: (OciCode.MANIFEST_BLOB_UNKNOWN, HTTPStatus.BAD_REQUEST),
    Code.REFERENCED_IMAGES_NOT_FOUND: (OciCode.MANIFEST_BLOB_UNKNOWN, HTTPStatus.BAD_REQUEST),
    Code.IMAGE_DIGEST_DOES_NOT_MATCH: (OciCode.DIGEST_INVALID, HTTPStatus.BAD_REQUEST),
    Code.IMAGE_TAG_ALREADY_EXISTS: (OciCode.TAG_INVALID, HTTPStatus.BAD_REQUEST),
    Code.INVALID_PARAMETER: (OciCode.MANIFEST_INVALID, HTTPStatus.BAD_REQUEST),
    Code.SERIALIZATION: (OciCode.SIZE_INVALID, HTTPStatus.BAD_REQUEST),
    Code.SERVER: (OciCode.UNKNOWN, HTTPStatus.INTERNAL_SERVER_ERROR),
}


def oci_equivalent(error: EcrError) -> OciError:
    """The ``/v2/`` refusal matching an ECR one (a body over its limit is SIZE_INVALID, 413)."""
    if error.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
        return OciError(OciCode.SIZE_INVALID, error.message, status=error.status)
    code, status = _OCI_EQUIVALENTS.get(error.code, (OciCode.UNKNOWN, error.status))
    return OciError(code, error.message, status=status)
