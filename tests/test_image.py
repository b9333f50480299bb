"""Manifest parsing of the four kinds, the validation errors, and the Image helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from layerhoist.errors import ManifestError
from layerhoist.image import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
    Image,
    Manifest,
    parse_manifest,
    sha256_digest,
)


def digest_of(label: str) -> str:
    return sha256_digest(label.encode())


def descriptor(media_type: str, label: str, size: int) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(label), "size": size}


def image_manifest(
    media_type: str, config: str, layers: list[str], *, declare: bool = True
) -> dict[str, Any]:
    config_type, layer_type = (
        (OCI_CONFIG, OCI_LAYER)
        if media_type == OCI_MANIFEST
        else (DOCKER_CONFIG, DOCKER_LAYER_GZIP)
    )
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "config": descriptor(config_type, config, 100),
        "layers": [descriptor(layer_type, label, 1000 + i) for i, label in enumerate(layers)],
    }
    if declare:
        document["mediaType"] = media_type
    return document


def encode(document: object) -> bytes:
    return json.dumps(document, indent=2).encode()


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_parse_image_manifest(media_type: str) -> None:
    raw = encode(image_manifest(media_type, "cfg", ["a", "b"]))
    manifest = parse_manifest(raw)
    assert manifest.raw == raw
    assert manifest.media_type == media_type
    assert manifest.digest == sha256_digest(raw)
    assert not manifest.is_index
    assert manifest.config is not None
    assert manifest.config.digest == digest_of("cfg")
    assert manifest.config.size == 100
    assert [layer.digest for layer in manifest.layers] == [digest_of("a"), digest_of("b")]
    assert [layer.size for layer in manifest.layers] == [1000, 1001]
    assert manifest.manifests == ()


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_MANIFEST_LIST])
def test_parse_index(media_type: str) -> None:
    child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
    entries = []
    for arch in ("amd64", "arm64"):
        entry = descriptor(child_type, arch, 500)
        entry["platform"] = {"os": "linux", "architecture": arch, "os.features": ["x"]}
        entries.append(entry)
    entries[1]["platform"]["variant"] = "v8"
    raw = encode({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})
    manifest = parse_manifest(raw)
    assert manifest.is_index
    assert manifest.media_type == media_type
    assert manifest.config is None
    assert manifest.layers == ()
    assert [child.digest for child in manifest.manifests] == [
        digest_of("amd64"),
        digest_of("arm64"),
    ]
    first, second = manifest.manifests
    assert first.platform == {"os": "linux", "architecture": "amd64"}
    assert first.platform_name == "linux/amd64"
    assert second.platform_name == "linux/arm64/v8"


def test_kind_detected_from_shape_when_media_type_absent() -> None:
    manifest = parse_manifest(encode(image_manifest(OCI_MANIFEST, "c", ["l"], declare=False)))
    assert manifest.media_type == OCI_MANIFEST
    index = parse_manifest(encode({"schemaVersion": 2, "manifests": []}))
    assert index.media_type == OCI_INDEX
    assert index.is_index


def test_media_type_argument_used_when_json_omits_it() -> None:
    raw = encode(image_manifest(DOCKER_MANIFEST, "c", ["l"], declare=False))
    assert parse_manifest(raw, media_type=DOCKER_MANIFEST).media_type == DOCKER_MANIFEST


def test_descriptor_hashable_and_equal_with_platform() -> None:
    one = Descriptor(OCI_MANIFEST, digest_of("x"), 1, {"os": "linux"})
    two = Descriptor(OCI_MANIFEST, digest_of("x"), 1, {"os": "linux"})
    assert one == two
    assert len({one, two}) == 1


def _mutate(change: str) -> bytes:
    document = image_manifest(OCI_MANIFEST, "cfg", ["a"])
    if change == "bad-json":
        return b'{"schemaVersion": 2,'
    if change == "not-object":
        return b"[1, 2]"
    if change == "not-utf8":
        return b"\xff\xfe{"
    if change == "uppercase-digest":
        document["layers"][0]["digest"] = document["layers"][0]["digest"].upper()
    elif change == "sha512":
        document["layers"][0]["digest"] = "sha512:" + "a" * 128
    elif change == "short-digest":
        document["config"]["digest"] = "sha256:abc"
    elif change == "negative-size":
        document["layers"][0]["size"] = -1
    elif change == "string-size":
        document["layers"][0]["size"] = "12"
    elif change == "bool-size":
        document["layers"][0]["size"] = True
    elif change == "no-config":
        del document["config"]
    elif change == "no-layers":
        del document["layers"]
    elif change == "layer-no-media-type":
        del document["layers"][0]["mediaType"]
    elif change == "schema1":
        document["schemaVersion"] = 1
        document["mediaType"] = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    elif change == "schema-version-3":
        document["schemaVersion"] = 3
    elif change == "unknown-media-type":
        document["mediaType"] = "text/plain"
    elif change == "descriptor-not-object":
        document["layers"][0] = "sha256:abc"
    return encode(document)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ("bad-json", "is not valid JSON"),
        ("not-object", "is not a JSON object"),
        ("not-utf8", "is not valid JSON"),
        ("uppercase-digest", "layers[0] has invalid digest"),
        ("sha512", "layers[0] has invalid digest 'sha512:"),
        ("short-digest", "config has invalid digest 'sha256:abc'"),
        ("negative-size", "layers[0] has invalid size -1"),
        ("string-size", "layers[0] has invalid size '12'"),
        ("bool-size", "layers[0] has invalid size True"),
        ("no-config", "has no config descriptor"),
        ("no-layers", "has no layers list"),
        ("layer-no-media-type", "layers[0] has no mediaType"),
        ("schema1", "schema 1"),
        ("schema-version-3", "schemaVersion 3"),
        ("unknown-media-type", "unsupported mediaType 'text/plain'"),
        ("descriptor-not-object", "layers[0] is not a descriptor object"),
    ],
)
def test_parse_manifest_rejects(change: str, fragment: str) -> None:
    raw = _mutate(change)
    with pytest.raises(ManifestError) as info:
        parse_manifest(raw)
    message = str(info.value)
    assert fragment in message
    assert message.startswith(f"manifest {sha256_digest(raw)[:19]}")
    assert "\n" not in message


def test_declared_media_type_must_match_reference() -> None:
    raw = encode(image_manifest(DOCKER_MANIFEST, "c", ["l"]))
    with pytest.raises(ManifestError, match="referenced as"):
        parse_manifest(raw, media_type=OCI_MANIFEST)


def test_index_child_without_platform_and_bad_platform() -> None:
    entry = descriptor(OCI_MANIFEST, "child", 10)
    assert (
        parse_manifest(encode({"schemaVersion": 2, "manifests": [entry]})).manifests[0].platform
        is None
    )
    entry["platform"] = "linux/amd64"
    with pytest.raises(ManifestError, match="platform that is not an object"):
        parse_manifest(encode({"schemaVersion": 2, "manifests": [entry]}))


def _manifest(media_type: str, config: str, layers: list[str]) -> Manifest:
    return parse_manifest(encode(image_manifest(media_type, config, layers)))


def test_single_image_blobs_and_push_order() -> None:
    manifest = _manifest(OCI_MANIFEST, "cfg", ["a", "b", "a"])
    image = Image("v1", manifest)
    assert [blob.digest for blob in image.blobs()] == [
        digest_of("cfg"),
        digest_of("a"),
        digest_of("b"),
    ]
    assert image.manifests_in_push_order() == (manifest,)
    assert image.name == "v1"
    assert image.description.startswith("v1 (sha256:")
    assert "3 blobs, 2101 bytes" in image.description


def test_index_blobs_dedupe_across_children_and_push_order() -> None:
    amd = _manifest(OCI_MANIFEST, "cfg-amd", ["shared", "amd"])
    arm = _manifest(OCI_MANIFEST, "cfg-arm", ["shared", "arm"])
    entries = [
        {"mediaType": OCI_MANIFEST, "digest": child.digest, "size": child.size}
        for child in (amd, arm)
    ]
    index = parse_manifest(
        encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    )
    image = Image(None, index, (amd, arm))
    assert [blob.digest for blob in image.blobs()] == [
        digest_of(label) for label in ("cfg-amd", "shared", "amd", "cfg-arm", "arm")
    ]
    assert image.manifests_in_push_order() == (amd, arm, index)
    assert image.name == index.digest[:19]
    assert "2 platforms" in image.description
