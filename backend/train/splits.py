"""Seed ranges of the procedural category: training seeds count up from 0, the held-out evaluation
split is a fixed range far above them, so no training run can ever draw an evaluation object."""

from __future__ import annotations

from collections.abc import Iterable

TRAIN_SEED_START = 0
EVAL_SEED_START = 1_000_000
EVAL_SEED_COUNT = 1_000
"""Evaluation seeds are ``EVAL_SEED_START .. EVAL_SEED_START + EVAL_SEED_COUNT - 1``."""


def eval_seeds(count: int) -> list[int]:
    """The first ``count`` held-out seeds (the committed eval set uses a prefix of this range)."""
    if not 0 < count <= EVAL_SEED_COUNT:
        raise ValueError(f"eval set size must be in 1..{EVAL_SEED_COUNT}, got {count}")
    return list(range(EVAL_SEED_START, EVAL_SEED_START + count))


def is_eval_seed(seed: int) -> bool:
    """True for seeds reserved for held-out evaluation."""
    return EVAL_SEED_START <= seed < EVAL_SEED_START + EVAL_SEED_COUNT


def check_training_seeds(seeds: Iterable[int]) -> None:
    """Raise if any seed is negative or reserved for evaluation (training and benchmarks call this)."""
    bad = [s for s in seeds if s < TRAIN_SEED_START or s >= EVAL_SEED_START]
    if bad:
        raise ValueError(
            f"{len(bad)} training seed(s) outside [{TRAIN_SEED_START}, {EVAL_SEED_START}), e.g. "
            f"{bad[0]}; seeds from {EVAL_SEED_START} on are the held-out evaluation split"
        )
