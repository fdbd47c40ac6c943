"""Training, validation and evaluation seeds never meet."""

from __future__ import annotations

import pytest

from workbench.splits import (
    EVAL_SEED_START,
    VALIDATION_SEED_START,
    check_training_seeds,
    eval_seeds,
    is_eval_seed,
    split_seeds,
)


def test_eval_and_training_ranges_are_disjoint():
    evaluation = set(eval_seeds(1000))
    assert all(is_eval_seed(s) for s in evaluation)
    assert min(evaluation) == EVAL_SEED_START
    check_training_seeds(range(0, VALIDATION_SEED_START, 997))
    with pytest.raises(ValueError, match="held-out"):
        check_training_seeds([5, EVAL_SEED_START + 3])
    with pytest.raises(ValueError):
        check_training_seeds([-1])


def test_cache_refuses_eval_seeds(tmp_path):
    from workbench.data.map_cache import build_cache

    with pytest.raises(ValueError, match="held-out"):
        build_cache(tmp_path / "c.npz", 2, first_seed=EVAL_SEED_START)


def test_validation_split_is_disjoint_from_training_and_evaluation():
    validation = split_seeds("validation", 1000)
    assert min(validation) == VALIDATION_SEED_START
    assert not set(validation) & set(eval_seeds(1000))
    assert not any(is_eval_seed(s) for s in validation)
    with pytest.raises(ValueError, match="validation"):
        check_training_seeds([VALIDATION_SEED_START])
    with pytest.raises(ValueError, match="unknown split"):
        split_seeds("train", 3)
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        split_seeds("validation", 1001)
