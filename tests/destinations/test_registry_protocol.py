"""The pure steps under a ``docker://`` destination: Location, digest query, Range, mounts."""

from __future__ import annotations

import pytest
from yarl import URL

from layerhoist.destinations.registry.limits import RegistryUploadSettings
from layerhoist.destinations.registry.mounts import KnownBlobs
from layerhoist.oci.errors import RegistryResponseError
from layerhoist.oci.push import mount_scope, parse_range_end, resolve_location, with_digest

REQUEST = URL("https://registry.example/v2/team/app/blobs/uploads/")
STATE = "_state=ab%2Bcd%3D%3D"


@pytest.mark.parametrize(
    "location",
    [
        f"/v2/team/app/blobs/uploads/u1?{STATE}",
        f"https://registry.example/v2/team/app/blobs/uploads/u1?{STATE}",
    ],
)
def test_location_relative_or_absolute_keeps_its_state(location: str) -> None:
    resolved = resolve_location(REQUEST, location, where="w")
    assert str(resolved) == f"https://registry.example/v2/team/app/blobs/uploads/u1?{STATE}"
    assert str(with_digest(resolved, "sha256:00")).endswith(f"?{STATE}&digest=sha256%3A00")


def test_a_missing_location_starts_the_blob_over() -> None:
    with pytest.raises(RegistryResponseError) as info:
        resolve_location(REQUEST, None, where="w")
    assert info.value.code == "BLOB_UPLOAD_INVALID"


@pytest.mark.parametrize(("header", "end"), [("0-99", 99), ("bytes=0-5", 5), ("", None)])
def test_range_end(header: str, end: int | None) -> None:
    assert parse_range_end(header) == end


def test_known_blobs_name_other_repositories_of_the_same_host() -> None:
    known = KnownBlobs()
    known.add("h1", "a", "sha256:1")
    known.add("h1", "b", "sha256:1")
    known.add("h2", "c", "sha256:1")
    assert known.holders("h1", "sha256:1", besides="a") == ["b"]
    assert known.holders("h1", "sha256:2", besides="a") == []
    assert mount_scope("b", "a") == "repository:b:pull,push repository:a:pull"


def test_chunk_size_is_checked() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        RegistryUploadSettings(chunk_size=0)
