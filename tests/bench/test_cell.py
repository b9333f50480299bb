"""One measured push: the memory bound the bench prints is the push configuration's formula."""

from __future__ import annotations

import pytest

from layerhoist.bench.cell import memory_figures
from layerhoist.destinations.ecr.limits import PART_LIMITS, PREFERRED_MAX_PART_SIZE
from layerhoist.transfer.config import PushConfig, memory_bound
from layerhoist.units import MiB

CONFIGS = [
    PushConfig(),
    PushConfig(blob_concurrency=1, part_size=5 * MiB),
    PushConfig(blob_concurrency=4, part_size=20 * MiB, read_ahead_parts=0),
    PushConfig(blob_concurrency=16, max_part_size=8 * MiB, read_ahead_parts=3),
    PushConfig(blob_concurrency=2, part_size=7 * MiB, memory_budget=1024 * MiB),
]


def _part_size(config: PushConfig) -> int:
    return config.part_size or config.max_part_size or PREFERRED_MAX_PART_SIZE


@pytest.mark.parametrize("config", CONFIGS)
def test_the_bench_bound_is_the_config_formula_within_the_budget(config: PushConfig) -> None:
    figures = memory_figures(config, PART_LIMITS, held_peak=0)
    wanted = memory_bound(
        config, part_size=_part_size(config), payload_expansion=PART_LIMITS.payload_expansion
    )
    assert figures["bound_bytes"] == min(config.memory_budget, wanted)
    assert figures["budget_bytes"] == config.memory_budget


@pytest.mark.parametrize("config", CONFIGS)
def test_the_ecr_formula_counts_two_parts_beyond_the_read_ahead(config: PushConfig) -> None:
    # Per blob: the part on the wire, the read-ahead parts, and one being read; each part
    # is held raw and as its base64 body.
    parts_held = config.blob_concurrency * (config.read_ahead_parts + 2)
    part_size = _part_size(config)
    bound = memory_bound(
        config, part_size=part_size, payload_expansion=PART_LIMITS.payload_expansion
    )
    # Each part's cost is rounded down to whole bytes.
    assert bound == pytest.approx(parts_held * part_size * (1 + 4 / 3), abs=parts_held)
