"""layerhoist: push container image layers into ECR / ECR Public as fast as the wire allows.

The library in a nutshell::

    import layerhoist

    result = await layerhoist.push(
        "oci:./layout",
        "public.ecr.aws/alias/app",
        config=layerhoist.PushConfig(blob_concurrency=16),
        options=layerhoist.DestinationOptions(create_repository=True),
    )
    print(result.summary())

:func:`push_sync` is the same for scripts without an event loop. Errors that stop a run
are :class:`LayerhoistError` subclasses (see :mod:`layerhoist.errors`); images that fail
are reported in the :class:`PushResult`.
"""

from __future__ import annotations

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
from layerhoist.push.config import PushConfig as PushConfig
from layerhoist.push.report import BlobOutcome as BlobOutcome
from layerhoist.push.report import ImageOutcome as ImageOutcome
from layerhoist.push.report import PushResult as PushResult
from layerhoist.version import __version__ as __version__

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
    "push",
    "push_sync",
]
