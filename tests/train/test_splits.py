"""Training and evaluation seeds never meet."""

from __future__ import annotations

import pytest

from backend.train.splits import EVAL_SEED_START, check_training_seeds, eval_seeds, is_eval_seed


def test_eval_and_training_ranges_are_disjoint():
    evaluation = set(eval_seeds(1000))
    assert all(is_eval_seed(s) for s in evaluation)
    assert min(evaluation) == EVAL_SEED_START
    check_training_seeds(range(0, EVAL_SEED_START, 997))
    with pytest.raises(ValueError, match="held-out"):
        check_training_seeds([5, EVAL_SEED_START + 3])
    with pytest.raises(ValueError):
        check_training_seeds([-1])


def test_cache_refuses_eval_seeds(tmp_path):
    from backend.train.data.map_cache import build_cache

    with pytest.raises(ValueError, match="held-out"):
        build_cache(tmp_path / "c.npz", 2, first_seed=EVAL_SEED_START)
