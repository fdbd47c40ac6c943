"""Seed ranges of the procedural category: training seeds count up from 0; a validation range (for
tuning presets and schedules) and the held-out evaluation split (for reported numbers only) lie far
above them, so no training run can ever draw a validation or evaluation object, and no tuning run
needs to look at the evaluation split."""

from __future__ import annotations

from collections.abc import Iterable

TRAIN_SEED_START = 0
VALIDATION_SEED_START = 900_000
VALIDATION_SEED_COUNT = 1_000
"""Validation seeds are ``VALIDATION_SEED_START .. + VALIDATION_SEED_COUNT - 1``: tune on these."""
EVAL_SEED_START = 1_000_000
EVAL_SEED_COUNT = 1_000
"""Evaluation seeds are ``EVAL_SEED_START .. EVAL_SEED_START + EVAL_SEED_COUNT - 1``."""
SPLITS = ("eval", "validation")


def split_seeds(split: str, count: int) -> list[int]:
    """The first ``count`` seeds of ``split`` (``eval`` or ``validation``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    start, size = (EVAL_SEED_START, EVAL_SEED_COUNT) if split == "eval" else (
        VALIDATION_SEED_START, VALIDATION_SEED_COUNT)
    if not 0 < count <= size:
        raise ValueError(f"{split} set size must be in 1..{size}, got {count}")
    return list(range(start, start + count))


def eval_seeds(count: int) -> list[int]:
    """The first ``count`` held-out seeds (the committed eval set uses a prefix of this range)."""
    return split_seeds("eval", count)


def is_eval_seed(seed: int) -> bool:
    """True for seeds reserved for held-out evaluation."""
    return EVAL_SEED_START <= seed < EVAL_SEED_START + EVAL_SEED_COUNT


def check_training_seeds(seeds: Iterable[int]) -> None:
    """Raise if any seed is negative or reserved for validation or evaluation (training and
    benchmarks call this)."""
    bad = [s for s in seeds if s < TRAIN_SEED_START or s >= VALIDATION_SEED_START]
    if bad:
        raise ValueError(
            f"{len(bad)} training seed(s) outside [{TRAIN_SEED_START}, {VALIDATION_SEED_START}), e.g. "
            f"{bad[0]}; seeds from {VALIDATION_SEED_START} on are the validation and held-out "
            "evaluation splits"
        )
