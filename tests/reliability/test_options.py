"""Option overrides against the real methods' presets: values that used to reach a method and crash
it inside (an internal error with a traceback) are refused up front as a bad option."""

from __future__ import annotations

from typing import Any

import pytest

from backend.methods import options_class
from backend.options import preset_values, resolve_options
from backend.protocol import UserError


def presets(method: str) -> dict[str, dict[str, Any]]:
    return preset_values(options_class(method))


@pytest.mark.parametrize(
    ("method", "preset", "overrides"),
    [
        ("meshinversion", "fast", {"elevations": []}),  # was: RuntimeError in the camera search
        ("meshinversion", "fast", {"stages": []}),
        ("meshinversion", "fast", {"chamfer_points": -1}),  # was: RuntimeError "selected index k"
        ("meshinversion", "fast", {"stages": [[-5, 0.1, 0.01]]}),  # was: a result never optimised
        ("meshinversion", "paper", {"z_candidates": 10**9}),
        ("meshinversion", "fast", {"mask_weight": 10**400}),  # was: OverflowError
        ("gan2shape", "fast", {"stage0": []}),  # was: IndexError in the schedule
        ("gan2shape", "fast", {"stage0": [5, 5]}),  # three step lengths, not two
        ("gan2shape", "paper", {"stage0": []}),  # paper's None (published value) is typed by fast's
        ("gan2shape", "paper", {"later": "lots"}),
        ("gan2shape", "fast", {"invert_steps": -1}),
    ],
)
def test_bad_override_is_refused_before_the_method_runs(
    method: str, preset: str, overrides: dict[str, Any]
) -> None:
    with pytest.raises(UserError) as err:
        resolve_options(presets(method), preset, overrides)
    assert err.value.code == "bad_option" and err.value.hint and len(str(err.value)) < 200


@pytest.mark.parametrize(
    ("method", "preset", "overrides", "expected"),
    [
        ("meshinversion", "fast", {"elevations": "[-10, 0, 30]"}, {"elevations": [-10.0, 0.0, 30.0]}),
        ("meshinversion", "fast", {"stages": [[5, 0.1, 0.01]] * 3}, {"stages": [[5, 0.1, 0.01]] * 3}),
        ("gan2shape", "paper", {"stage0": "[5, 6, 7]"}, {"stage0": (5, 6, 7)}),
        ("gan2shape", "paper", {"stage0": "null"}, {"stage0": None}),  # None: the published value
        ("gan2shape", "fast", {"invert_steps": 0}, {"invert_steps": 0}),  # zero skips a stage: allowed
    ],
)
def test_plausible_overrides_still_pass(
    method: str, preset: str, overrides: dict[str, Any], expected: dict[str, Any]
) -> None:
    options = resolve_options(presets(method), preset, overrides)
    assert {key: options[key] for key in expected} == expected
