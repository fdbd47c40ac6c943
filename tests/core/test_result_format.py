"""The result folder is defined once (``backend/result_format.py``): the backend writes it, the
add-on's importer reads only what it defines, and the definition imports nothing but the stdlib."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np

from backend.result_format import (
    MESH_ARRAYS,
    MESH_FILE,
    RESULT_FILES,
    RESULT_JSON,
    Camera,
    InputRecord,
    ResultDocument,
    WeightsRecord,
    camera_problem,
)
from backend.results import write_result
from tests.core.backend_process import ROOT, backend_env
from tests.core.test_protocol_messages import names_read
from tests.core.test_results import META, octahedron


def keys(definition: type) -> set[str]:
    return set(typing.get_type_hints(definition))


def test_importer_reads_only_what_the_result_format_defines() -> None:
    """``info`` is the importer's name for result.json, ``weights``/``source`` its records, ``camera``
    the camera; a key the format does not define would silently read nothing."""
    defined = {
        "info": keys(ResultDocument),
        "weights": keys(WeightsRecord),
        "source": keys(InputRecord),
        "camera": keys(Camera),
    }
    reads = names_read(ast.parse((ROOT / "blender_addon" / "importer.py").read_text()))
    checked = {(owner, key) for owner, key in reads if owner in defined and key != "get"}
    undefined = sorted((owner, key) for owner, key in checked if key not in defined[owner])
    assert not undefined, f"the importer reads keys result_format does not define: {undefined}"
    assert {"camera", "timings", "id", "mask_resolved", "crop_box", "matrix_world"} <= {k for _, k in checked}


def test_result_format_is_stdlib_only() -> None:
    code = (
        "import sys; import backend.result_format, backend.protocol;"
        "assert not {'numpy', 'torch', 'PIL', 'bpy'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=backend_env(), check=True, timeout=60)


def test_written_result_is_the_defined_format(tmp_path: Path) -> None:
    files = write_result(octahedron(), tmp_path / "out", META, mask=np.full((4, 4), 255, np.uint8))
    document = json.loads((tmp_path / "out" / RESULT_JSON).read_text())
    assert set(files) == set(document["files"]) <= RESULT_FILES
    assert set(document) <= keys(ResultDocument) and not camera_problem(document["camera"])
    with np.load(tmp_path / "out" / MESH_FILE) as mesh:
        assert tuple(mesh.files) == MESH_ARRAYS
