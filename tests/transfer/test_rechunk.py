"""Rechunker: exact pieces from any chunking, nothing lost, no copy when sizes already fit."""

from __future__ import annotations

import random

import pytest

from layerhoist.transfer.rechunk import Rechunker


def cut(data: bytes, chunk_sizes: list[int], size: int) -> list[bytes]:
    rechunker = Rechunker(size)
    pieces: list[bytes] = []
    position = 0
    for chunk_size in chunk_sizes:
        rechunker.add(data[position : position + chunk_size])
        position += chunk_size
        while (piece := rechunker.take()) is not None:
            pieces.append(piece)
    rest = rechunker.take_rest()
    if rest:
        pieces.append(rest)
    assert rechunker.held == 0
    return pieces


@pytest.mark.parametrize("seed", range(20))
def test_pieces_are_exact_whatever_the_chunking(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.randint(1, 64)
    data = rng.randbytes(rng.randint(0, 500))
    chunk_sizes: list[int] = []
    while sum(chunk_sizes) < len(data):
        chunk_sizes.append(rng.randint(1, 3 * size))
    pieces = cut(data, chunk_sizes, size)
    assert b"".join(pieces) == data
    assert all(len(piece) == size for piece in pieces[:-1])
    assert 0 < len(pieces[-1]) <= size if pieces else not data


def test_chunks_of_the_piece_size_are_handed_on_without_a_copy() -> None:
    chunks = [bytes([n]) * 8 for n in range(3)]
    rechunker = Rechunker(8)
    for chunk in chunks:
        rechunker.add(chunk)
        assert rechunker.take() is chunk


def test_take_waits_for_a_whole_piece() -> None:
    rechunker = Rechunker(4)
    rechunker.add(b"abc")
    assert rechunker.take() is None
    rechunker.add(b"defgh")
    assert rechunker.take() == b"abcd"
    assert rechunker.take() == b"efgh"
    assert rechunker.take() is None
    assert rechunker.take_rest() == b""


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Rechunker(0)


def test_pieces_of_one_byte() -> None:
    assert cut(b"abc", [2, 1], 1) == [b"a", b"b", b"c"]
