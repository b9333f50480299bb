"""Cutting a stream of byte chunks into pieces of one size, holding as little as possible.

Chunks are kept as they come and joined only when a piece spans several, so a stream that
already comes in pieces of the wanted size costs no copy at all. Nothing here is a generator:
a suspended generator would keep its last piece referenced, outside the memory budget of
whoever consumes it, so callers take pieces one at a time and drop them when done.
"""

from __future__ import annotations


class Rechunker:
    """Pieces of exactly ``size`` bytes from chunks of any size; the rest at the end."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self._size = size
        self._pieces: list[bytes] = []
        #: Bytes added and not yet taken.
        self.held = 0

    def add(self, chunk: bytes) -> None:
        """Append ``chunk`` to what is held."""
        self._pieces.append(chunk)
        self.held += len(chunk)

    def take(self) -> bytes | None:
        """The next whole piece, or ``None`` while fewer than ``size`` bytes are held."""
        if self.held < self._size:
            return None
        joined = b"".join(self._pieces)
        rest = joined[self._size :]
        self._pieces, self.held = ([rest], len(rest)) if rest else ([], 0)
        return joined[: self._size]

    def take_rest(self) -> bytes:
        """Everything still held (shorter than ``size``; empty when nothing is)."""
        rest = b"".join(self._pieces)
        self._pieces.clear()
        self.held = 0
        return rest
