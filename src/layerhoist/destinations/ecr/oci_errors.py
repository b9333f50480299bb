"""The error table of ECR's ``/v2/`` transport: the registry table first, then ECR's API table.

The ``/v2/`` requests fail as any OCI registry's do
(:class:`~layerhoist.destinations.registry.errors.RegistryDestinationErrors`: 429 and 503 with
``Retry-After``, ``BLOB_UPLOAD_INVALID`` starting the blob over); the API calls this transport
still makes (GetAuthorizationToken, BatchCheckLayerAvailability, CreateRepository) fail as
botocore's (:class:`~layerhoist.destinations.ecr.errors.EcrErrors`). ECR's ``NAME_UNKNOWN``
(a repository that does not exist) gets the API's own advice: create it, or pass
``--create-repo``.
"""

from __future__ import annotations

from collections.abc import Callable

from layerhoist.destinations.ecr.errors import SERVICE_ERRORS, EcrErrors
from layerhoist.destinations.registry.errors import RegistryDestinationErrors
from layerhoist.oci.errors import RegistryResponseError
from layerhoist.transfer.verdicts import Verdict

#: The OCI error code of a repository that does not exist.
NAME_UNKNOWN = "NAME_UNKNOWN"
#: How a missing repository is reported: as the API reports it.
MISSING_REPOSITORY = SERVICE_ERRORS["RepositoryNotFoundException"]


def is_missing_repository(exc: BaseException) -> bool:
    """Whether ``exc`` is ECR's ``/v2/`` saying the repository does not exist."""
    return isinstance(exc, RegistryResponseError) and exc.code == NAME_UNKNOWN


class EcrOciErrors:
    """The :class:`~layerhoist.transfer.verdicts.ErrorTable` of ECR through ``/v2/``."""

    def __init__(self) -> None:
        self.registry = RegistryDestinationErrors()
        self.api = EcrErrors()

    def classify(
        self, exc: BaseException, *, operation: str | None, wall_clock: Callable[[], float]
    ) -> Verdict | None:
        """The verdict of ``exc``; ``None`` when neither table knows it."""
        if isinstance(exc, RegistryResponseError) and is_missing_repository(exc):
            return MISSING_REPOSITORY.verdict(
                code=exc.code, message=exc.message, operation=operation
            )
        verdict = self.registry.classify(exc, operation=operation, wall_clock=wall_clock)
        if verdict is not None:
            return verdict
        return self.api.classify(exc, operation=operation, wall_clock=wall_clock)
