"""The installed add-on offers what the backend declares, from the one place (issue 23): its panel,
Python API and batch script take methods, presets and job defaults from the backend it bundles
(standard library only, no torch), and check option names against each method's ``Options``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.methods import METHOD_MODULES, options_class
from backend.options import JOB_DEFAULTS, TURN_OPTION, option_names
from backend.protocol import MASK_SOURCES, PRESETS

METHODS = list(METHOD_MODULES)


@pytest.mark.slow
def test_the_installed_add_on_offers_the_declared_methods_presets_and_defaults(
    tmp_path: Path, extension_zip: Path, tools: Any
) -> None:
    out = tools.scenario("front_ends", {"zip": str(extension_zip)}, tmp_path / "user")
    assert out["torch_imported"] is False  # the catalogue the add-on reads is standard library only
    declared = {method: list(option_names(options_class(method))) for method in METHODS}
    turnable = {method: TURN_OPTION in names for method, names in declared.items()}
    assert turnable == {"meshinversion": True, "gan2shape": False}
    turned = [{TURN_OPTION: True}, {TURN_OPTION: True}, {TURN_OPTION: False, "z_candidates": 8}]  # typed too
    assert out["catalogue"] == {"methods": METHODS, "presets": list(PRESETS), "options": declared,
                                "turnable": turnable, "turned": turned}  # fmt: skip
    assert out["panel"] == {
        "method": {"items": METHODS, "default": JOB_DEFAULTS["method"]},
        "preset": {"items": list(PRESETS), "default": JOB_DEFAULTS["preset"]},
    }
    assert out["panel_defaults"] == {"seed": JOB_DEFAULTS["seed"], "mask": JOB_DEFAULTS["mask"]}
    assert out["api"] == {name: JOB_DEFAULTS[name] for name in ("method", "preset", "seed", "mask")}
    batch = out["batch"]
    assert batch["method"] == {"choices": METHODS, "default": JOB_DEFAULTS["method"]}
    assert batch["preset"] == {"choices": list(PRESETS), "default": JOB_DEFAULTS["preset"]}
    assert batch["mask"] == {
        "choices": [m for m in MASK_SOURCES if m != "file"],
        "default": JOB_DEFAULTS["mask"],
    }
    assert batch["seed"]["default"] == JOB_DEFAULTS["seed"]
    assert "no_such_option" in out["refused"] and "invert_steps" in out["refused"]  # names the known ones
