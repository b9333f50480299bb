"""The floor under any ``/v2/`` pusher built on aiohttp: every blob of a layout, nothing else.

For each blob of ``LAYOUT/blobs/sha256``, one after the other: a POST to
``/v2/REPO/blobs/uploads/``, then one PUT ``?digest=`` whose body is streamed from the file
with chunked transfer encoding, as layerhoist sends it, each slice read with ``pread``, added
to the blob's sha256 and xxh3 and handed to aiohttp in the same pass; the registry checks the
digest. No pipeline, no retries, no pacing, no manifests, one bearer token fetched first (the
registry's realm, as ``USER:PASS``), and glibc's allocator set up as layerhoist's CLI sets it
(without it every slice's buffers are fresh pages). Whatever a client on aiohttp sending
chunked bodies does per byte, this does no less. ``--content-length`` sends each body with a
``Content-Length`` instead: what that framing would save.

Prints one JSON object: the CPU seconds (all threads, ``time.process_time``) and the wall
seconds of the pushing alone (start-up and the token left out), and the bytes pushed. Run by
``compare_transports.py`` beside ``layerhoist push --transport oci``::

    python benchmarks/floor_aiohttp.py --endpoint URL --repository REPO --layout DIR \\
        --user USER:PASS
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import anyio
import xxhash

from layerhoist.allocator import tune_malloc

#: Bytes read, hashed and handed to aiohttp at a time: layerhoist's wire slice.
SLICE = 1024 * 1024
#: Where the embedded registry serves its token realm.
TOKEN_PATH = "/_layerhoist/token"
CREATED, ACCEPTED = 201, 202


async def blob_body(path: Path, digests: list[str]) -> AsyncIterator[bytes]:
    """The blob's bytes slice by slice, hashed as they go; appends its sha256 when done."""
    sha256 = hashlib.sha256()
    xxh3 = xxhash.xxh3_64()
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while data := os.pread(fd, SLICE, offset):
            sha256.update(data)
            xxh3.update(data)
            offset += len(data)
            yield data
    finally:
        os.close(fd)
    digests.append(f"sha256:{sha256.hexdigest()}")


async def token(session: aiohttp.ClientSession, endpoint: str, repository: str, user: str) -> str:
    """A pull-and-push bearer token for ``repository`` from the registry's realm."""
    basic = base64.b64encode(user.encode()).decode()
    params = {"scope": f"repository:{repository}:pull,push"}
    async with session.get(
        endpoint + TOKEN_PATH, params=params, headers={"Authorization": f"Basic {basic}"}
    ) as response:
        response.raise_for_status()
        value: str = (await response.json())["token"]
    return value


async def push(
    session: aiohttp.ClientSession,
    endpoint: str,
    repository: str,
    bearer: str,
    path: Path,
    *,
    size: int,
    content_length: bool,
) -> None:
    """POST, then one streamed PUT of the blob of ``size`` bytes at ``path`` (named by its
    digest)."""
    digest = f"sha256:{path.name}"
    headers = {"Authorization": f"Bearer {bearer}"}
    framing = {"Content-Length": str(size)} if content_length else {}
    url = f"{endpoint}/v2/{repository}/blobs/uploads/"
    async with session.post(url, headers=headers) as response:
        if response.status != ACCEPTED:
            raise RuntimeError(f"POST {digest}: HTTP {response.status}: {await response.text()}")
        location = response.headers["Location"]
    digests: list[str] = []
    async with session.put(
        endpoint + location,
        params={"digest": digest},
        headers={**headers, **framing, "Content-Type": "application/octet-stream"},
        data=blob_body(path, digests),
    ) as response:
        if response.status != CREATED:
            raise RuntimeError(f"PUT {digest}: HTTP {response.status}: {await response.text()}")
    if digests != [digest]:
        raise RuntimeError(f"{path} hashes to {digests}, not {digest}")


def layout_blobs(layout: Path) -> list[tuple[Path, int]]:
    """Every blob file of ``layout`` and its size."""
    return [(path, path.stat().st_size) for path in sorted((layout / "blobs" / "sha256").iterdir())]


async def main(argv: Sequence[str] | None = None) -> int:
    """Push every blob of the layout; print what the pushing cost."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="http://HOST:PORT of the registry")
    parser.add_argument("--repository", required=True, help="an existing repository")
    parser.add_argument("--layout", type=Path, required=True, help="an OCI image layout")
    parser.add_argument("--user", required=True, help="USER:PASS at the token realm")
    parser.add_argument(
        "--content-length", action="store_true", help="frame bodies with Content-Length"
    )
    args = parser.parse_args(argv)
    tune_malloc()
    blobs = layout_blobs(args.layout)
    async with aiohttp.ClientSession() as session:
        bearer = await token(session, args.endpoint, args.repository, args.user)
        cpu, wall = time.process_time(), time.monotonic()
        for path, size in blobs:
            await push(
                session,
                args.endpoint,
                args.repository,
                bearer,
                path,
                size=size,
                content_length=args.content_length,
            )
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    nbytes = sum(size for _, size in blobs)
    print(json.dumps({"cpu_seconds": cpu, "wall_seconds": wall, "bytes": nbytes}))
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
