"""Tag filters: each rule on the issue's tag list, the reasons a tag is left out, and properties
that hold for any tags and rules."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from layerhoist.sync.filters import TagChoice, choose_tags, parse_version, select_tags
from layerhoist.sync.model import TagRules

#: The tags the issue seeds its test registry with, in the registry's order.
TAGS = ["1.0.0", "1.1.0", "1.2.0-rc1", "2.0.0", "v2.1.0", "latest", "dev"]


def rules(
    *,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    semver: str | None = None,
    latest: int | None = None,
) -> TagRules:
    """TagRules as the file writes them."""
    return TagRules(
        include=tuple(re.compile(p) for p in include),
        exclude=tuple(re.compile(p) for p in exclude),
        semver=None if semver is None else SpecifierSet(semver),
        latest=latest,
    )


@pytest.mark.parametrize(
    ("tag_rules", "selected"),
    [
        (None, TAGS),
        (rules(), TAGS),
        (rules(include=(r"\d+\.\d+\.\d+",)), ["1.0.0", "1.1.0", "2.0.0"]),
        # Whole-tag match: "1" alone is no tag's, "dev" is not part of "1.2.0-rc1".
        (rules(include=("1", "dev")), ["dev"]),
        (rules(include=("v.*", "latest")), ["v2.1.0", "latest"]),
        (rules(exclude=(".*-rc.*", "dev")), ["1.0.0", "1.1.0", "2.0.0", "v2.1.0", "latest"]),
        # Exclude patterns match anywhere in the tag (the issue's "-rc"); anchors make them whole.
        (rules(exclude=("-rc",)), ["1.0.0", "1.1.0", "2.0.0", "v2.1.0", "latest", "dev"]),
        (rules(exclude=("^1$", "^v$", "^lat$")), TAGS),
        (rules(exclude=("^v",)), ["1.0.0", "1.1.0", "1.2.0-rc1", "2.0.0", "latest", "dev"]),
        (rules(include=("1.*",), exclude=("1.1.0",)), ["1.0.0", "1.2.0-rc1"]),
        (rules(semver=">=1.1"), ["1.1.0", "2.0.0", "v2.1.0"]),
        (rules(semver="<2"), ["1.0.0", "1.1.0"]),
        (rules(semver=""), ["1.0.0", "1.1.0", "2.0.0", "v2.1.0"]),
        # A specifier naming a pre-release admits pre-releases.
        (rules(semver=">=1.1.0rc1,<2"), ["1.1.0", "1.2.0-rc1"]),
        (rules(latest=2), ["2.0.0", "v2.1.0"]),
        # Pre-releases count unless a rule drops them.
        (rules(latest=4), ["1.1.0", "1.2.0-rc1", "2.0.0", "v2.1.0"]),
        (rules(semver=">=1", latest=4), ["1.0.0", "1.1.0", "2.0.0", "v2.1.0"]),
        (rules(include=("1.*",), latest=1), ["1.2.0-rc1"]),
        (rules(exclude=("v.*",), semver="<3", latest=2), ["1.1.0", "2.0.0"]),
        (rules(latest=100), ["1.0.0", "1.1.0", "1.2.0-rc1", "2.0.0", "v2.1.0"]),
    ],
)
def test_each_rule_on_the_issue_tags(tag_rules: TagRules | None, selected: list[str]) -> None:
    assert select_tags(tag_rules, TAGS) == selected


def test_the_reason_of_each_tag_left_out() -> None:
    choices = choose_tags(
        rules(include=(r"v?\d.*", "dev"), exclude=("1.0.0",), semver=">=1", latest=1), TAGS
    )
    assert choices == [
        TagChoice("1.0.0", "excluded by '1.0.0'"),
        TagChoice("1.1.0", "not among the latest 1"),
        TagChoice("1.2.0-rc1", "a pre-release, which semver '>=1' does not admit"),
        TagChoice("2.0.0", "not among the latest 1"),
        TagChoice("v2.1.0"),
        TagChoice("latest", "matches no include pattern"),
        TagChoice("dev", "not a version"),
    ]
    assert choose_tags(rules(latest=1), ["dev", "1.0"]) == [
        TagChoice("dev", "not a version"),
        TagChoice("1.0"),
    ]
    assert choose_tags(rules(semver="<2"), ["2.0.0"]) == [TagChoice("2.0.0", "outside semver '<2'")]
    assert [choice.taken for choice in choose_tags(None, ["a", "b"])] == [True, True]


def test_of_tags_naming_one_version_the_first_listed_counts_as_newer() -> None:
    assert select_tags(rules(latest=1), ["1.0", "v1.0", "1.0.0", "0.9"]) == ["1.0"]
    assert select_tags(rules(latest=2), ["0.9", "v1.0", "1.0"]) == ["v1.0", "1.0"]


def test_versions_a_leading_v_and_a_dash_before_a_pre_release() -> None:
    assert parse_version("v2.1.0") == Version("2.1.0")
    assert parse_version("1.2.0-rc1") == Version("1.2.0rc1")
    assert parse_version("3.20") == Version("3.20")
    for tag in ("latest", "dev", "3.20-alpine", "edge", "vv1"):
        assert parse_version(tag) is None


# --- properties --------------------------------------------------------------------------------

_version_tag = st.builds(
    lambda v, parts, pre: v + ".".join(map(str, parts)) + pre,
    st.sampled_from(["", "v"]),
    st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=3),
    st.sampled_from(["", "", "-rc1", "-rc2"]),
)
_tag = st.one_of(_version_tag, st.sampled_from(["latest", "dev", "edge", "3.20-alpine"]))
_tags = st.lists(_tag, max_size=25)
_patterns = st.lists(
    st.sampled_from([r"v.*", r"1\..*", r".*rc.*", r"[0-9]+", "latest", r"\d+\.\d+", ".*"]),
    max_size=3,
)
_rules = st.builds(
    rules,
    include=_patterns.map(tuple),
    exclude=_patterns.map(tuple),
    semver=st.one_of(st.none(), st.sampled_from(["", ">=1", "<2", ">=1.1,<3", "~=1.0", ">=0rc0"])),
    latest=st.one_of(st.none(), st.integers(min_value=1, max_value=6)),
)


def _is_subsequence(selected: list[str], tags: list[str]) -> bool:
    remaining = iter(tags)
    return all(any(tag == other for other in remaining) for tag in selected)


@given(_rules, _tags)
def test_the_result_is_the_source_tags_in_their_order(tag_rules: TagRules, tags: list[str]) -> None:
    selected = select_tags(tag_rules, tags)
    assert _is_subsequence(selected, tags)
    choices = choose_tags(tag_rules, tags)
    assert [choice.tag for choice in choices] == tags
    assert [choice.tag for choice in choices if choice.taken] == selected


@given(_rules, _tags)
def test_exclude_wins_and_include_is_required(tag_rules: TagRules, tags: list[str]) -> None:
    for tag in select_tags(tag_rules, tags):
        assert not any(pattern.search(tag) for pattern in tag_rules.exclude)
        if tag_rules.include:
            assert any(pattern.fullmatch(tag) for pattern in tag_rules.include)


@given(_rules, _tags)
def test_latest_keeps_at_most_n_and_they_are_the_newest(
    tag_rules: TagRules, tags: list[str]
) -> None:
    selected = select_tags(tag_rules, tags)
    if tag_rules.latest is None:
        return
    assert len(selected) <= tag_rules.latest
    assert all(parse_version(tag) is not None for tag in selected)
    # What the rules before ``latest`` took: every tag left out of it is no newer than the
    # oldest kept, and ``latest`` is only short when nothing else was there to take.
    before = select_tags(
        TagRules(include=tag_rules.include, exclude=tag_rules.exclude, semver=tag_rules.semver),
        tags,
    )
    versions = [v for tag in before if (v := parse_version(tag)) is not None]
    assert len(selected) == min(tag_rules.latest, len(versions))
    if selected:
        oldest_kept = min(v for tag in selected if (v := parse_version(tag)) is not None)
        left_out = [v for tag in before if tag not in selected and (v := parse_version(tag))]
        assert all(version <= oldest_kept for version in left_out)


@given(_rules, _tags)
def test_semver_keeps_versions_inside_the_specifiers(tag_rules: TagRules, tags: list[str]) -> None:
    if tag_rules.semver is None:
        return
    admits = tag_rules.semver.prereleases is True
    for tag in select_tags(tag_rules, tags):
        version = parse_version(tag)
        assert version is not None
        assert tag_rules.semver.contains(version, prereleases=admits)
