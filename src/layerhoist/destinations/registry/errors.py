"""The error table of an OCI registry destination: the OCI table, plus a broken stream.

A streamed upload cannot resend a part: once its PUT failed, the bytes already sent are gone
with the connection. :class:`UploadBroken` carries that failure's cause; what would have been
a retry of the request (a reset connection, a 5xx) becomes a fresh upload of the blob
(requeue), and what no retry can fix (credentials, a refused repository) stays a failure.
A 416 to a PATCH (the session's offset is not the one sent) also starts the blob over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from layerhoist.oci.errors import OciErrors, RegistryResponseError
from layerhoist.transfer.verdicts import Action, Classifier, Verdict, requeue_rule

#: "Range not satisfiable": the upload session holds another number of bytes than was sent.
RANGE_NOT_SATISFIABLE = 416


class UploadBroken(Exception):
    """A streamed upload failed; ``cause`` is why (the request's error, or an abandon)."""

    def __init__(self, message: str, *, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class RegistryDestinationErrors:
    """The :class:`~layerhoist.transfer.verdicts.ErrorTable` of pushing to a registry."""

    def __init__(self) -> None:
        self.oci = OciErrors("destination")
        self._causes = Classifier((self.oci,))
        self._requeue = requeue_rule()

    def classify(
        self, exc: BaseException, *, operation: str | None, wall_clock: Callable[[], float]
    ) -> Verdict | None:
        """The verdict of ``exc``; ``None`` when neither this table nor the OCI one knows it."""
        if isinstance(exc, UploadBroken):
            verdict = self._causes(exc.cause, operation=operation)
            if verdict.action is Action.RETRY_PART:
                message = f"{exc}: {verdict.message}"
                return dataclasses.replace(verdict, action=Action.REQUEUE_LAYER, message=message)
            return verdict
        if (
            isinstance(exc, RegistryResponseError)
            and exc.status == RANGE_NOT_SATISFIABLE
            and not exc.errors
        ):
            return self._requeue.verdict(code=exc.code, message=exc.message, operation=operation)
        return self.oci.classify(exc, operation=operation, wall_clock=wall_clock)
