"""Argument types shared by the ``layerhoist`` subcommands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse

from layerhoist.image import Platform
from layerhoist.units import parse_duration, parse_size

#: Words a boolean option takes after ``=`` (``--src-tls-verify=false``), as skopeo's do.
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})


def size(text: str) -> int:
    """A byte size such as ``10MiB``, ``5MB`` or ``4096``."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def positive_int(text: str) -> int:
    """A whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def duration(text: str) -> float:
    """A duration such as ``2m``, ``90s`` or ``30`` (seconds)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def boolean(text: str) -> bool:
    """``true`` or ``false`` (also ``1``/``0``, ``yes``/``no``), any case."""
    word = text.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"not true or false: {text!r}")


def platform(text: str) -> Platform:
    """``OS/ARCH[/VARIANT]``, e.g. ``linux/arm64`` or ``linux/arm/v7``."""
    try:
        return Platform.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
