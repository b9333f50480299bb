"""Tags of a repository: ``GET /v2/NAME/tags/list?n=N``, following ``Link`` to every page."""

from __future__ import annotations

import json
import re

from yarl import URL

from layerhoist.errors import SourceError
from layerhoist.oci.client import RegistryClient, pull_scope
from layerhoist.units import MiB

#: Bytes of one page of ``tags/list`` read at most (a page of 1000 long tags fits easily).
MAX_PAGE_BYTES = 4 * MiB
_NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?', re.IGNORECASE)


def next_link(header: str | None) -> str | None:
    """The target of the ``rel="next"`` entry of a ``Link`` header, if any."""
    match = _NEXT_LINK.search(header or "")
    return match[1] if match else None


async def list_tags(
    client: RegistryClient, repository: str, *, where: str, page_size: int | None = None
) -> list[str]:
    """Every tag of ``repository`` in the registry's order, page by page."""
    size = page_size or client.settings.tags_page_size
    url: str | None = str(URL(f"/v2/{repository}/tags/list").with_query(n=size))
    seen: set[str] = set()
    tags: list[str] = []
    while url is not None:
        if url in seen:
            raise SourceError(f"{where}: the registry's tag pages loop back to {url}")
        seen.add(url)
        page = await client.send("GET", url, scope=pull_scope(repository), what=where)
        async with page as answer:
            body = await answer.content.read(MAX_PAGE_BYTES + 1)
            link = next_link(answer.headers.get("Link"))
        if len(body) > MAX_PAGE_BYTES:
            raise SourceError(f"{where}: a page of tags is more than {MAX_PAGE_BYTES} bytes")
        tags.extend(_page_tags(body, where=where))
        url = link
    return tags


def _page_tags(body: bytes, *, where: str) -> list[str]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{where}: the tag list is not valid JSON") from exc
    # distribution answers "tags": null for a repository without tags.
    values = document.get("tags") if isinstance(document, dict) else None
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(tag, str) for tag in values):
        raise SourceError(f"{where}: the tag list has no list of strings under 'tags'")
    return list(values)
