"""The error table of an OCI layout destination: the OS errors of writing files.

Only errors about a path inside the layout are this table's: an ``OSError`` the source raised
is not mistaken for a write error. Every one fails the blob or image at once (a full disk or
a read-only directory does not heal within a retry's backoff); the message names the path.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from layerhoist.transfer.verdicts import Rule, Verdict, fail_rule


@dataclass(frozen=True)
class WriteError:
    """How one ``errno`` of writing is reported: its code, what happened, what to do."""

    code: str
    what: str
    rule: Rule


_OUT_OF_SPACE = "free space on that file system, or write the layout elsewhere"
_DENIED = "check the permissions of the layout directory, or write the layout elsewhere"
_READ_ONLY = "the file system is mounted read-only: write the layout elsewhere"

#: ``errno`` -> how it is reported.
WRITE_ERRORS: Mapping[int, WriteError] = MappingProxyType(
    {
        errno.ENOSPC: WriteError("OutOfSpace", "out of space", fail_rule(_OUT_OF_SPACE)),
        errno.EDQUOT: WriteError("OutOfSpace", "disk quota exceeded", fail_rule(_OUT_OF_SPACE)),
        errno.EACCES: WriteError("PermissionDenied", "permission denied", fail_rule(_DENIED)),
        errno.EPERM: WriteError("PermissionDenied", "operation not permitted", fail_rule(_DENIED)),
        errno.EROFS: WriteError(
            "ReadOnlyFileSystem", "read-only file system", fail_rule(_READ_ONLY)
        ),
    }
)
#: Any other OS error about a file of the layout: the system's own words.
OTHER_WRITE_ERROR = fail_rule("")


class LayoutErrors:
    """The :class:`~layerhoist.transfer.verdicts.ErrorTable` of writing the layout at ``root``."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root).absolute()

    def classify(
        self, exc: BaseException, *, operation: str | None, wall_clock: Callable[[], float]
    ) -> Verdict | None:
        """The verdict of an ``OSError`` about a path in the layout; ``None`` for anything else."""
        if not isinstance(exc, OSError) or exc.filename is None or not self._owns(exc.filename):
            return None
        known = WRITE_ERRORS.get(exc.errno or 0)
        if known is not None:
            message = f"{known.what} writing {exc.filename}"
            return known.rule.verdict(code=known.code, message=message, operation=operation)
        code = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        message = f"{exc.strerror or exc}: {exc.filename}"
        return OTHER_WRITE_ERROR.verdict(code=code, message=message, operation=operation)

    def _owns(self, filename: object) -> bool:
        # The root's own ancestors count too: they are created with it.
        path = Path(str(filename)).absolute()
        return path == self._root or self._root in path.parents or path in self._root.parents
