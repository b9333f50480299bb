"""What the sync tests share: docker-registry repositories seeded by skopeo with release-like
tags, sync files built directly, as the loader builds them, and what a docker-registry holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from conftest import sha256_digest
from layerhoist.image import Platform
from layerhoist.oci.manifest import MANIFEST_ACCEPT
from layerhoist.refs import parse_destination, parse_source
from layerhoist.sync.model import RegistrySettings, SyncConfig, SyncMapping, TagRules
from layerhoist.testing.distribution import Distribution
from layerhoist.testing.synthetic import write_oci_layout

#: The source's tags: releases, a pre-release, a v-prefixed release and two moving tags.
TAGS = ("1.0.0", "1.1.0", "1.2.0-rc1", "2.0.0", "v2.1.0", "latest", "dev")
LAYER_SIZE = 4096


def seed_tags(
    distribution: Distribution, root: Path, repository: str, tags: Sequence[str], *, seed: int
) -> dict[str, str]:
    """Push one distinct single-platform image per tag into ``repository``: tag -> digest."""
    layout = root / f"layout-{repository.replace('/', '-')}-{seed}"
    layout_tags = write_oci_layout(
        layout, images=len(tags), layers_per_image=2, layer_size=LAYER_SIZE, seed=seed
    )
    return {
        tag: distribution.seed(layout, layout_tag, f"{repository}:{tag}")
        for tag, layout_tag in zip(tags, layout_tags, strict=True)
    }


def sync_mapping(
    index: int,
    origin: str,
    destination: str,
    *,
    tags: TagRules | None = None,
    platforms: Sequence[str] = (),
    **changes: Any,
) -> SyncMapping:
    """A mapping as the sync file's loader makes it (``origin`` is a source reference)."""
    return SyncMapping(
        index=index,
        line=index + 1,
        origin=origin,
        source=parse_source(origin),
        destination=parse_destination(destination),
        tags=tags,
        platforms=tuple(Platform.parse(p) for p in platforms),
        **({"create_repositories": True} | changes),
    )


def sync_config(
    *mappings: SyncMapping, insecure: Sequence[str] = (), path: Path = Path("sync.yaml")
) -> SyncConfig:
    """A whole sync file; the ``insecure`` hosts are reached without TLS."""
    registries: Mapping[str, RegistrySettings] = {
        host: RegistrySettings(tls_verify=False) for host in insecure
    }
    return SyncConfig(path=path, mappings=tuple(mappings), registries=registries)


async def held(registry: Distribution, repository: str) -> dict[str, str]:
    """Tag -> digest of the manifest bytes ``registry`` serves, for every tag of ``repository``."""
    base = f"http://{registry.host}/v2/{repository}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/tags/list") as answer:
            if answer.status == 404:
                return {}
            tags = (await answer.json())["tags"] or []
        digests = {}
        for tag in tags:
            headers = {"Accept": MANIFEST_ACCEPT}
            async with session.get(f"{base}/manifests/{tag}", headers=headers) as answer:
                digests[tag] = sha256_digest(await answer.read())
    return digests
