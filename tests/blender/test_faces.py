"""The ``faces`` and placement options from the add-on (issue 24): the panel's Faces and Length
fields and the Python API's ``faces`` and ``size_m`` reach the real backend, the imported mesh has
about that many triangles and that length along Y (its front axis), and a dense MeshInversion result
imported as a half under the Mirror modifier evaluates to the whole mesh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

FACES = 20_000
LENGTH_M = 3.0


@pytest.mark.slow
def test_panel_and_api_faces_give_a_dense_mesh_that_mirrors_exactly(
    tmp_path: Path, extension_zip: Path, tools: Any, backend_cases: dict[str, Any]
) -> None:
    case = backend_cases["meshinversion"]
    photo = tools.photo(tmp_path / "toy car.png")
    out = tools.scenario(
        "faces",
        {"zip": str(extension_zip), "python": tools.backend_python, "weights_dir": case.weights_dir,
         "image": str(photo), "settings": case.settings(), "faces": FACES, "size_m": LENGTH_M},
        tmp_path / "user",
    )  # fmt: skip
    assert abs(out["panel_faces"] - FACES) <= 0.05 * FACES
    length = np.ptp(np.array(out["whole"]["vertices"])[:, 1])
    assert abs(length - LENGTH_M) < 0.01 * LENGTH_M, length
    whole, half = out["whole"], out["half"]
    assert half["modifiers"] == ["MIRROR"] and out["api_stored_faces"] == out["panel_faces"] // 2
    assert len(half["sizes"]) == len(whole["sizes"]) == out["panel_faces"]
    np.testing.assert_allclose(
        np.sort(np.array(half["vertices"]), axis=0), np.sort(np.array(whole["vertices"]), axis=0), atol=1e-5
    )
