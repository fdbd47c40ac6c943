"""Preview Mask in Blender (issue 22): the installed extension runs the backend's ``mask`` job for the
panel's photo, the mask comes back as an image datablock the panel then uses, and what is painted
on it is the mask the next reconstruction uses (real bpy, real backend subprocess)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow


def test_preview_paint_and_reconstruct(
    tmp_path: Path, extension_zip: Path, tools: Any, backend_case: Any
) -> None:
    photo = tools.photo(tmp_path / "toy car.png")
    args = backend_case.scenario_args(
        extension_zip, photo, user=str(tmp_path / "user"), painted=str(tmp_path / "painted.npy"),
        previewed=str(tmp_path / "previewed.npy"),
    )  # fmt: skip
    out = tools.scenario("mask_preview", args, tmp_path / "user")
    alpha = np.asarray(Image.open(photo))[..., 3] >= 128
    assert out["name"] == "toy car mask" and "op:rfi.preview_mask" in out["drawn"]
    first = out["first"]
    assert first["size"] == [alpha.shape[1], alpha.shape[0]] and first["source"] == "file"
    assert first["mask_image"] == "toy car mask" and first["packed"] and first["colorspace"] == "Non-Color"
    np.testing.assert_array_equal(np.load(tmp_path / "previewed.npy"), alpha)  # auto = the photo's alpha
    assert out["again"]["same_datablock"] and out["mine_kept"]
    assert [name for name in out["again"]["images"] if "mask" in name] == ["toy car mask"]

    painted = np.load(tmp_path / "painted.npy")
    assert painted.sum() < alpha.sum() and not painted[: len(painted) // 2].any()
    used = np.asarray(Image.open(Path(out["result_dir"]) / "mask.png")) >= 128
    np.testing.assert_array_equal(used, painted)
    assert out["whole"] == {"source": "none", "white": True}
    assert all(out["behind"].values()), out["behind"]
