"""layerhoist: copy container images into ECR, ECR Public or an OCI layout, streamed and verified.

The library in a nutshell::

    import layerhoist

    result = await layerhoist.copy(
        "oci:./layout",
        "public.ecr.aws/alias/app",
        config=layerhoist.PushConfig(blob_concurrency=16),
        options=layerhoist.DestinationOptions(create_repository=True),
    )
    print(result.summary())

:func:`copy_sync` is the same for scripts without an event loop; :func:`push` and
:func:`push_sync` are their former names. Errors that stop a run are :class:`LayerhoistError`
subclasses (see :mod:`layerhoist.errors`); images that fail are reported in the
:class:`PushResult`.

The names are imported on first use, so ``import layerhoist.cli`` (the command) does not pay
for the whole push machinery before it has parsed its arguments.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from layerhoist.version import __version__ as __version__

if TYPE_CHECKING:
    from layerhoist.api import copy as copy
    from layerhoist.api import copy_sync as copy_sync
    from layerhoist.api import push as push
    from layerhoist.api import push_sync as push_sync
    from layerhoist.destinations import DestinationOptions as DestinationOptions
    from layerhoist.errors import CorruptBlobError as CorruptBlobError
    from layerhoist.errors import CredentialsError as CredentialsError
    from layerhoist.errors import DestinationError as DestinationError
    from layerhoist.errors import LayerhoistError as LayerhoistError
    from layerhoist.errors import RepositoryNotFoundError as RepositoryNotFoundError
    from layerhoist.errors import SourceError as SourceError
    from layerhoist.errors import UsageError as UsageError
    from layerhoist.transfer.config import PushConfig as PushConfig
    from layerhoist.transfer.report import BlobOutcome as BlobOutcome
    from layerhoist.transfer.report import ImageOutcome as ImageOutcome
    from layerhoist.transfer.report import PushResult as PushResult

#: Public name -> the module that defines it.
_EXPORTS = MappingProxyType(
    {
        "BlobOutcome": "layerhoist.transfer.report",
        "CorruptBlobError": "layerhoist.errors",
        "CredentialsError": "layerhoist.errors",
        "DestinationError": "layerhoist.errors",
        "DestinationOptions": "layerhoist.destinations",
        "ImageOutcome": "layerhoist.transfer.report",
        "LayerhoistError": "layerhoist.errors",
        "PushConfig": "layerhoist.transfer.config",
        "PushResult": "layerhoist.transfer.report",
        "RepositoryNotFoundError": "layerhoist.errors",
        "SourceError": "layerhoist.errors",
        "UsageError": "layerhoist.errors",
        "copy": "layerhoist.api",
        "copy_sync": "layerhoist.api",
        "push": "layerhoist.api",
        "push_sync": "layerhoist.api",
    }
)

__all__ = [
    "BlobOutcome",
    "CorruptBlobError",
    "CredentialsError",
    "DestinationError",
    "DestinationOptions",
    "ImageOutcome",
    "LayerhoistError",
    "PushConfig",
    "PushResult",
    "RepositoryNotFoundError",
    "SourceError",
    "UsageError",
    "copy",
    "copy_sync",
    "push",
    "push_sync",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'layerhoist' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
