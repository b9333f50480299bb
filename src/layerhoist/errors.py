"""The exceptions layerhoist raises, each carrying a one-line message for the user.

::

    LayerhoistError                 message: one line naming the thing; exit_code
    ├── UsageError                  malformed reference or option (exit 2)
    │   └── ConfigError             an invalid sync file, naming its file, line and key
    ├── StateLockedError            another run holds the state file (exit 3)
    ├── SourceError                 the source cannot be read as an image (exit 1)
    │   ├── ManifestError           a manifest or index that is not valid JSON/OCI
    │   ├── BlobMissingError        a blob the manifest references is absent
    │   ├── CorruptBlobError        a blob whose bytes do not hash to its digest
    │   └── SourceChangedError      bytes re-read for a retry differ from the first read
    └── DestinationError            the destination refused for good (exit 1)
        ├── CredentialsError        missing or rejected credentials
        └── RepositoryNotFoundError the repository does not exist (and no --create-repo)

Lower-level errors (botocore, aiohttp, OS) are mapped to these at the boundary by
``layerhoist.transfer.verdicts`` and each destination's error table; the CLI prints
``str(error)`` and exits with ``error.exit_code``, never a traceback.
"""

from __future__ import annotations

from layerhoist.exits import EXIT_FAILED, EXIT_LOCKED, EXIT_USAGE


class LayerhoistError(Exception):
    """Base of every error layerhoist reports to its user."""

    #: Process exit code the CLI uses when this error ends a run.
    exit_code: int = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(LayerhoistError):
    """A malformed reference, option or argument: the command line must change."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration file that cannot be used; the message names its file, line and key."""


class StateLockedError(LayerhoistError):
    """Another run holds the state file's lock (overlapping cron runs of ``layerhoist sync``)."""

    exit_code = EXIT_LOCKED


class SourceError(LayerhoistError):
    """The source path, layout or archive cannot be read as an image."""


class ManifestError(SourceError):
    """A manifest, index or layout file that is not valid JSON or not a valid OCI document."""


class BlobMissingError(SourceError):
    """A blob referenced by a manifest is not present in the source."""


class CorruptBlobError(SourceError):
    """A source blob whose bytes (or size) do not match the digest the manifest promises."""

    def __init__(self, message: str, *, digest: str) -> None:
        super().__init__(message)
        self.digest = digest


class SourceChangedError(SourceError):
    """Bytes re-read from the source for a retry hash differently than the first time."""

    def __init__(self, message: str, *, digest: str) -> None:
        super().__init__(message)
        self.digest = digest


class DestinationError(LayerhoistError):
    """The destination refused an operation in a way no retry can fix.

    ``code`` is the service's error code (``RepositoryNotFoundException``, ``AccessDenied``…)
    and ``hint`` says what the user can do about it.
    """

    def __init__(self, message: str, *, code: str = "", hint: str = "") -> None:
        text = message if not hint else f"{message} ({hint})"
        super().__init__(text)
        self.code = code
        self.hint = hint


class CredentialsError(DestinationError):
    """No credentials were found, or the destination rejected them."""


class RepositoryNotFoundError(DestinationError):
    """The destination repository does not exist."""
