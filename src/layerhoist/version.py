"""The package version: one place for the package metadata, ``--version`` and the User-Agent."""

__version__ = "0.2.0"
