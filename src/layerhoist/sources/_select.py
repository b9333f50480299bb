"""Choosing the images a source loads: by tag, by ``NAME:TAG``, or every tagged image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from layerhoist.errors import SourceError
from layerhoist.image import (
    short_digest,
)
from layerhoist.refs import is_valid_tag, split_name_tag

#: Tags listed in a "no such tag" message before it says "…".
MAX_LISTED_TAGS = 10
_DOCKER_HUB_PREFIXES = ("docker.io/", "index.docker.io/")
_DOCKER_HUB_LIBRARY = "library/"

_Target = TypeVar("_Target")


@dataclass(frozen=True)
class Candidate(Generic[_Target]):
    """An image a source could load, before it is read.

    ``names`` are the ``NAME:TAG`` forms it is known by (in familiar form); ``key`` identifies
    the image: two candidates with one key are the same image.
    """

    target: _Target
    tag: str | None
    names: frozenset[str]
    key: str


def familiar(name: str) -> str:
    """``name`` as ``docker images`` shows it: without ``docker.io/`` and ``library/``."""
    for prefix in _DOCKER_HUB_PREFIXES:
        if name.startswith(prefix):
            return name.removeprefix(prefix).removeprefix(_DOCKER_HUB_LIBRARY)
    return name


def select_images(
    candidates: Sequence[Candidate[_Target]], selector: str | None, *, where: str
) -> list[Candidate[_Target]]:
    """The candidates ``selector`` (``NAME:TAG``, a tag, or ``None`` for all) picks."""
    if selector is None:
        return _select_all(candidates, where=where)
    name, tag = split_name_tag(selector)
    if name is None:
        matches = [candidate for candidate in candidates if candidate.tag == tag]
    else:
        wanted = familiar(selector)
        matches = [candidate for candidate in candidates if wanted in candidate.names]
    distinct = list({candidate.key: candidate for candidate in matches}.values())
    if not distinct:
        raise SourceError(
            f"{where}: no image tagged {selector!r} (tags present: {_list_tags(candidates)})"
        )
    if len(distinct) > 1:
        raise SourceError(
            f"{where}: tag {selector!r} names {len(distinct)} different images "
            f"({_describe(distinct)}); "
            "select one as NAME:TAG"
        )
    return distinct


def _select_all(
    candidates: Sequence[Candidate[_Target]], *, where: str
) -> list[Candidate[_Target]]:
    if all(candidate.tag is None for candidate in candidates):
        if len({candidate.key for candidate in candidates}) == 1:
            return [candidates[0]]
        if not candidates:
            raise SourceError(f"{where} holds no images")
        raise SourceError(
            f"{where} holds {len(candidates)} untagged images and no tags to tell them apart"
        )
    chosen: dict[str, Candidate[_Target]] = {}
    for candidate in candidates:
        tag = candidate.tag
        if tag is None:
            continue
        if not is_valid_tag(tag):
            raise SourceError(
                f"{where}: {tag!r} cannot be used as a tag; push its images one at a time "
                "with a destination tag"
            )
        previous = chosen.setdefault(tag, candidate)
        if previous.key != candidate.key:
            raise SourceError(
                f"{where}: tag {tag!r} names two different images "
                f"({_describe([previous, candidate])}); "
                "select one in the source reference"
            )
    return list(chosen.values())


def _describe(candidates: Sequence[Candidate[_Target]]) -> str:
    """The names of ``candidates``, or their short keys when they have no names."""
    names = sorted({name for candidate in candidates for name in candidate.names})
    return ", ".join(names or [short_digest(candidate.key) for candidate in candidates])


def _list_tags(candidates: Sequence[Candidate[_Target]]) -> str:
    tags = sorted({candidate.tag for candidate in candidates if candidate.tag is not None})
    if not tags:
        return "none"
    listed = ", ".join(tags[:MAX_LISTED_TAGS])
    return listed + (", …" if len(tags) > MAX_LISTED_TAGS else "")
