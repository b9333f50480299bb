"""Which tags of a source a mapping takes: a mapping's ``tags:`` rules applied to a tag list.

The rules apply in this order:

1. ``include``: a tag matching one of the patterns (all tags when there are none), matched
   against the whole tag (:func:`re.fullmatch`);
2. ``exclude``: minus the tags in which one of these patterns occurs (:func:`re.search`), so
   that ``-rc`` drops ``3.19-rc1`` as the issue's example means it; anchor a pattern
   (``^dev$``) to exclude one whole tag. Exclude wins over include;
3. ``semver``: only tags that parse as versions (:func:`parse_version`) inside the specifier
   set. A pre-release (``1.2.0-rc1``) is in only when the specifiers admit pre-releases, as
   :attr:`SpecifierSet.prereleases <packaging.specifiers.SpecifierSet.prereleases>` decides:
   when one of them names a pre-release (``>=1.2.0rc1``);
4. ``latest: N``: the N newest by version of what is left. Tags that do not parse as versions
   (``latest``, ``dev``) are dropped once ``latest`` is set, since they have no place in that
   order; of tags naming one version (``1.0`` and ``v1.0``), the first in the source's order
   counts as newer.

The result keeps the source's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from layerhoist.sync.model import TagRules


@dataclass(frozen=True)
class TagChoice:
    """One tag and whether the rules take it; ``reason`` says why not (``None``: taken)."""

    tag: str
    reason: str | None = None

    @property
    def taken(self) -> bool:
        """Whether the tag is copied."""
        return self.reason is None


def parse_version(tag: str) -> Version | None:
    """The version a tag names, or ``None``: PEP 440 as :mod:`packaging` reads it, which allows
    a leading ``v`` and a ``-`` before a pre-release (``v2.1.0``, ``1.2.0-rc1``)."""
    try:
        return Version(tag)
    except InvalidVersion:
        return None


def choose_tags(rules: TagRules | None, tags: Sequence[str]) -> list[TagChoice]:
    """Every tag of ``tags`` in their order, each taken or left out with the reason."""
    if rules is None:
        return [TagChoice(tag) for tag in tags]
    choices = [TagChoice(tag, _first_reason(rules, tag)) for tag in tags]
    if rules.latest is None:
        return choices
    candidates = [
        (version, index)
        for index, choice in enumerate(choices)
        if choice.taken and (version := parse_version(choice.tag)) is not None
    ]
    # Newest first; among equal versions, the earlier tag in the source's order first.
    candidates.sort(key=lambda item: (item[0], -item[1]), reverse=True)
    newest = {index for _, index in candidates[: rules.latest]}
    return [
        choice if not choice.taken or index in newest else TagChoice(choice.tag, _older(rules))
        for index, choice in enumerate(choices)
    ]


def select_tags(rules: TagRules | None, tags: Sequence[str]) -> list[str]:
    """The tags ``rules`` take of ``tags``, in their order (``None``: every tag)."""
    return [choice.tag for choice in choose_tags(rules, tags) if choice.taken]


def _first_reason(rules: TagRules, tag: str) -> str | None:
    """Why ``tag`` fails the include, exclude and semver rules, or ``None``."""
    if rules.include and not any(pattern.fullmatch(tag) for pattern in rules.include):
        return "matches no include pattern"
    for pattern in rules.exclude:
        if pattern.search(tag):
            return f"excluded by {pattern.pattern!r}"
    needs_version = rules.semver is not None or rules.latest is not None
    version = parse_version(tag) if needs_version else None
    if needs_version and version is None:
        return "not a version"
    if rules.semver is not None and version is not None:
        admits = rules.semver.prereleases is True
        if not rules.semver.contains(version, prereleases=admits):
            if rules.semver.contains(version, prereleases=True):
                return f"a pre-release, which semver {str(rules.semver)!r} does not admit"
            return f"outside semver {str(rules.semver)!r}"
    return None


def _older(rules: TagRules) -> str:
    return f"not among the latest {rules.latest}"
