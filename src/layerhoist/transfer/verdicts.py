"""Verdicts: what happens to an error a push meets, decided by data, not by branches.

Each exception is classified into a :class:`Verdict` whose :class:`Action` is one of:

- ``RETRY_PART``: send the same request again after a backoff (throttling, 5xx, timeouts,
  dropped connections). ``throttled`` marks the verdicts that should slow the pacer down.
- ``REQUEUE_LAYER``: abandon the upload and upload the whole blob again later (the destination
  refused what it received, or a part's retries ran out).
- ``FAIL``: no retry can help; :func:`to_user_error` turns the verdict into the
  :mod:`layerhoist.errors` exception to report, with a hint saying what the user can do.

A :class:`Classifier` knows only what every transport shares: exception groups (the most
severe member wins), layerhoist's own errors, exceptions that carry their verdict
(:class:`ClassifiedError`, such as exhausted retries) and broken connections reported by the
operating system. Everything protocol-specific comes from the :class:`ErrorTable` each
transport registers (for ECR: :mod:`layerhoist.destinations.ecr.errors`). Anything no table
knows is a FAIL, so a bug never turns into an endless retry loop.

Verdicts with ``already_present=True`` are FAILs whose request wanted to create something that
is there already: success for the caller, which checks the flag before failing.
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum
from types import MappingProxyType
from typing import Any, Protocol

from layerhoist.errors import DestinationError, LayerhoistError


class Action(Enum):
    """What the caller does with a failed request."""

    #: Send the same request (the same part of the same upload) again after a backoff.
    RETRY_PART = "retry-part"
    #: Give up this upload and upload the whole blob again from its first byte.
    REQUEUE_LAYER = "requeue-layer"
    #: Stop: report :func:`to_user_error` of the verdict for the item.
    FAIL = "fail"


@dataclass(frozen=True)
class Verdict:
    """The classification of one exception.

    ``code`` is the service's error code, or a short name for a transport error
    (``ConnectionReset``, ``ReadTimeout``…). ``message`` is the service's message or
    ``str(exc)``. ``hint`` says what the user can do when the verdict ends the item (for
    retryable verdicts: when retries run out). ``retry_after`` is the server's
    ``Retry-After`` in seconds, when it sent one.
    """

    action: Action
    code: str
    message: str
    hint: str
    throttled: bool = False
    retry_after: float | None = None
    #: HTTP status of the service's answer, when there was one.
    status: int | None = None
    #: The :mod:`layerhoist.errors` class :func:`to_user_error` builds for this verdict.
    error_class: type[LayerhoistError] = DestinationError
    #: The request wanted to create something that already exists (success for the pipeline).
    already_present: bool = False
    #: A layerhoist error classified as itself: :func:`to_user_error` returns it unchanged.
    error: LayerhoistError | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Rule:
    """One row of an error table: the verdict an error code or type leads to."""

    action: Action
    hint: str
    throttled: bool = False
    error_class: type[LayerhoistError] = DestinationError
    already_present: bool = False

    def verdict(self, *, code: str, message: str, operation: str | None, **extra: Any) -> Verdict:
        """The verdict of this rule for one error; ``{operation}`` in the hint is filled in."""
        return Verdict(
            self.action,
            code,
            message,
            self.hint.format(operation=operation or "this operation"),
            throttled=self.throttled,
            error_class=self.error_class,
            already_present=self.already_present,
            **extra,
        )


class ErrorTable(Protocol):
    """A transport's own errors: its service codes, its client library's exception types."""

    def classify(
        self, exc: BaseException, *, operation: str | None, wall_clock: Callable[[], float]
    ) -> Verdict | None:
        """The verdict of ``exc``, or ``None`` when this table does not know it."""


class ClassifiedError(Exception):
    """An exception that carries its own verdict (exhausted retries, for one)."""

    verdict: Verdict


RETRY_HINT = "the destination kept failing this request; retries ran out, run the push again"
THROTTLE_HINT = "the destination kept throttling; retries ran out: lower --concurrency"
REQUEUE_HINT = "the destination kept rejecting the uploaded layer; uploads of it ran out"
NETWORK_HINT = "the connection to the destination kept failing: check the network and endpoint"
BUG_HINT = "an unexpected error: please report it with the command line that caused it"


def retry_rule(*, throttled: bool = False, hint: str | None = None) -> Rule:
    """Retry the same request; ``throttled`` also slows the pacer down."""
    default = THROTTLE_HINT if throttled else RETRY_HINT
    return Rule(Action.RETRY_PART, hint or default, throttled)


def requeue_rule(hint: str = REQUEUE_HINT) -> Rule:
    """Start the blob over with a fresh upload."""
    return Rule(Action.REQUEUE_LAYER, hint)


def fail_rule(hint: str, error_class: type[LayerhoistError] = DestinationError) -> Rule:
    """No retry helps: report ``error_class`` with ``hint``."""
    return Rule(Action.FAIL, hint, error_class=error_class)


def present_rule(hint: str) -> Rule:
    """What the request would create is there already: success."""
    return Rule(Action.FAIL, hint, already_present=True)


#: Order of actions from least to most severe, for errors that arrive together.
_SEVERITY: Mapping[Action, int] = MappingProxyType(
    {Action.RETRY_PART: 0, Action.REQUEUE_LAYER: 1, Action.FAIL: 2}
)

NETWORK_RULE = retry_rule(hint=NETWORK_HINT)

#: Python's own exceptions of a broken connection, whatever library raised them, matched
#: in order with ``isinstance`` (subclasses before their bases).
CONNECTION_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionResetError, "ConnectionReset"),
    (BrokenPipeError, "BrokenPipe"),
    (ConnectionAbortedError, "ConnectionAborted"),
    (ConnectionRefusedError, "ConnectionRefused"),
    (TimeoutError, "Timeout"),
)

#: ``OSError.errno`` values of a broken connection (an ``OSError`` with another errno, such as
#: a missing source file, is a FAIL).
TRANSIENT_ERRNOS: Mapping[int, str] = MappingProxyType(
    {
        errno.ECONNRESET: "ConnectionReset",
        errno.EPIPE: "BrokenPipe",
        errno.ECONNABORTED: "ConnectionAborted",
        errno.ECONNREFUSED: "ConnectionRefused",
        errno.ETIMEDOUT: "Timeout",
        errno.ENETUNREACH: "NetworkUnreachable",
        errno.EHOSTUNREACH: "HostUnreachable",
        errno.ENETDOWN: "NetworkDown",
    }
)


class Classifier:
    """Classifies exceptions: the shared cases first, then each registered table in order.

    ``wall_clock`` (seconds since the epoch) is only read to turn a ``Retry-After`` given as
    an HTTP date into seconds.
    """

    def __init__(
        self, tables: Sequence[ErrorTable] = (), *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self._tables = tuple(tables)
        self._wall_clock = wall_clock

    def __call__(self, exc: BaseException, *, operation: str | None = None) -> Verdict:
        """The verdict of ``exc`` raised while calling ``operation`` (named in hints)."""
        if isinstance(exc, BaseExceptionGroup):
            return self._group(exc, operation=operation)
        if isinstance(exc, LayerhoistError):
            return _own_error(exc)
        if isinstance(exc, ClassifiedError):
            return exc.verdict
        for table in self._tables:
            verdict = table.classify(exc, operation=operation, wall_clock=self._wall_clock)
            if verdict is not None:
                return verdict
        for connection_type, code in CONNECTION_ERRORS:
            if isinstance(exc, connection_type):
                return NETWORK_RULE.verdict(code=code, message=str(exc), operation=operation)
        errno_code = TRANSIENT_ERRNOS.get(exc.errno or 0) if isinstance(exc, OSError) else None
        if errno_code is not None:
            return NETWORK_RULE.verdict(code=errno_code, message=str(exc), operation=operation)
        return Verdict(
            Action.FAIL, type(exc).__name__, str(exc), BUG_HINT, error_class=LayerhoistError
        )

    def _group(self, group: BaseExceptionGroup[BaseException], *, operation: str | None) -> Verdict:
        """The most severe verdict among a task group's errors (the first of equals).

        A group is retryable only if every error in it is: one fatal error among transient
        ones fails the item.
        """
        verdicts = [self(inner, operation=operation) for inner in group.exceptions]
        return max(verdicts, key=lambda verdict: _SEVERITY[verdict.action])


def to_user_error(verdict: Verdict, *, subject: str) -> LayerhoistError:
    """The :mod:`layerhoist.errors` exception reporting ``verdict`` for ``subject``.

    ``subject`` names what failed (``ecr-public:foo/bar``, a blob digest…); the message reads
    ``SUBJECT: CODE: MESSAGE (HINT)``. A verdict that classified a layerhoist error returns
    that error itself.
    """
    if verdict.error is not None:
        return verdict.error
    text = f"{subject}: {verdict.code}"
    if verdict.message:
        text = f"{text}: {verdict.message}"
    if issubclass(verdict.error_class, DestinationError):
        return verdict.error_class(text, code=verdict.code, hint=verdict.hint)
    return verdict.error_class(f"{text} ({verdict.hint})" if verdict.hint else text)


def parse_retry_after(
    headers: Mapping[str, Any], *, wall_clock: Callable[[], float]
) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), if present and valid."""
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if value is None:
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - wall_clock()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _own_error(exc: LayerhoistError) -> Verdict:
    code = exc.code if isinstance(exc, DestinationError) and exc.code else type(exc).__name__
    hint = exc.hint if isinstance(exc, DestinationError) else ""
    return Verdict(Action.FAIL, code, exc.message, hint, error_class=type(exc), error=exc)
