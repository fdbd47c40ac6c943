"""``reproject`` without Blender: the camera of a result, the mesh files, the UV charts, the composite,
and whole jobs on real results (the shipped MeshInversion generator on an eval car, a tiny GAN2Shape
for the perspective camera), through the function, the CLI and the protocol server."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from backend import result_format
from backend.jobs import run_job
from backend.methods.base import JobCancelled
from backend.protocol import PROTOCOL_VERSION, JobRequest, ProtocolError, ReprojectRequest, UserError
from backend.render import render_mesh
from backend.render.bake import uv_fragments
from backend.reproject.camera import renderer_camera
from backend.reproject.job import run_reproject
from backend.reproject.meshfile import Y_UP_TO_BLENDER
from backend.reproject.texture import is_mirror_symmetric
from backend.reproject.unwrap import face_charts, smallest_size
from backend.weights import Registry
from tests.core.backend_process import ROOT, BackendProcess, backend_env
from tests.core.tiny_models import tiny_gan2shape

CAR = ROOT / "examples" / "eval" / "car_eval_008.png"


def camera_dict(kind: str, matrix: np.ndarray, **lens: float) -> dict[str, Any]:
    return {
        "type": kind,
        "matrix_world": matrix.tolist(),
        "crop_box": [0.0, 0.0, 10.0],
        "image_size": [10, 10],
        **lens,
    }


def looking_down_y(position: tuple[float, float, float]) -> np.ndarray:
    """A camera at ``position`` looking along +Y (local -Z = world +Y) with world +Z up, as the aligned
    camera looks at a car's front-left side."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # columns: X, Y, Z axes
    matrix[:3, 3] = position
    return matrix


def test_camera_spans_the_crop_square_orthographic_and_perspective() -> None:
    ortho = renderer_camera(camera_dict("ORTHO", looking_down_y((0.0, -3.0, 0.5)), ortho_scale=2.0))
    points = torch.tensor([[[0.0, 1.0, 0.5], [1.0, 0.0, 0.5], [0.0, 0.0, 1.5], [-1.0, 5.0, -0.5]]])
    screen = ortho.project(points)[0]
    np.testing.assert_allclose(screen[:, :2], [[0, 0], [1, 0], [0, 1], [-1, -1]], atol=1e-6)
    assert screen[1, 2] < screen[0, 2] < screen[3, 2]  # depth grows away from the camera
    angle = 2 * math.atan(0.5)
    persp = renderer_camera(camera_dict("PERSP", looking_down_y((0.0, -4.0, 0.0)), angle=angle))
    screen = persp.project(torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, -2.0]]]))[0]
    np.testing.assert_allclose(screen, [[0, 0, 4], [1, 0, 4], [0, -1, 4]], atol=1e-6)


def test_face_charts_fit_their_cells_and_each_face_gets_texels() -> None:
    faces, size = 777, smallest_size(777)
    uvs = face_charts(faces, size)
    assert uvs.shape == (faces, 3, 2) and uvs.min() > 0 and uvs.max() < 1
    covered = uv_fragments(torch.from_numpy(uvs), size).pix_to_face[0]
    assert set(covered[covered >= 0].unique().tolist()) == set(range(faces))
    with pytest.raises(ValueError, match="need a texture of at least"):
        face_charts(faces, size // 2)


def test_mirror_symmetry_is_measured_on_the_surface() -> None:
    box = trimesh.creation.box((2.0, 1.0, 0.5))
    shifted = trimesh.creation.box((2.0, 1.0, 0.5))
    shifted.apply_translation((0.3, 0.0, 0.0))
    for mesh, expected in ((box, True), (box.subdivide(), True), (shifted, False)):
        vertices = torch.tensor(mesh.vertices, dtype=torch.float32)
        assert is_mirror_symmetric(vertices, torch.tensor(mesh.faces)) == expected


@pytest.fixture(scope="module")
def mi_result(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped MeshInversion generator, ``fast``, on eval car 8 (an orthographic camera)."""
    out = tmp_path_factory.mktemp("mi") / "car8"
    registry = Registry(out.parent / "no-user-weights")
    run_job(
        JobRequest(image=str(CAR), output_dir=str(out), method="meshinversion"),
        lambda e: None,
        registry=registry,
    )
    return out


def reproject(source: Path, mesh: Path, out: Path, **kw: Any) -> dict[str, Any]:
    run_reproject(
        ReprojectRequest(result_dir=str(source), mesh=str(mesh), output_dir=str(out), **kw), lambda e: None
    )
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_results_are_the_defined_format(mi_result: Path, tmp_path: Path) -> None:
    """What reconstruct and reproject write is what ``backend/result_format.py`` defines; a
    reconstruction fills in every field of ``result.json``."""
    reproject(mi_result, mi_result / "mesh.npz", tmp_path / "again")
    for folder in (mi_result, tmp_path / "again"):
        document = json.loads((folder / result_format.RESULT_JSON).read_text())
        assert set(document) <= set(typing.get_type_hints(result_format.ResultDocument))
        assert sorted(p.name for p in folder.iterdir()) == sorted(document["files"])
        assert set(document["files"]) <= result_format.RESULT_FILES
        assert not result_format.camera_problem(document["camera"])
        assert set(document["camera"]) <= set(typing.get_type_hints(result_format.Camera))
        for key, record in (("weights", result_format.WeightsRecord), ("input", result_format.InputRecord),
                            ("mesh", result_format.MeshCounts)):  # fmt: skip
            assert set(document[key]) == set(typing.get_type_hints(record)), key
        with np.load(folder / result_format.MESH_FILE) as mesh:
            assert tuple(mesh.files) == result_format.MESH_ARRAYS
    reconstructed = json.loads((mi_result / result_format.RESULT_JSON).read_text())
    assert set(reconstructed) == set(typing.get_type_hints(result_format.ResultDocument))


def texture(folder: Path) -> np.ndarray:
    return np.asarray(Image.open(folder / "texture.png").convert("RGB"), np.float32) / 255


def blender_to_y_up(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Write an OBJ without UVs as Blender's exporter would (Y up)."""
    trimesh.Trimesh(vertices @ Y_UP_TO_BLENDER, faces, process=False).export(path)
    return path


@pytest.mark.slow
def test_identity_reprojection_reproduces_the_texture(mi_result: Path, tmp_path: Path) -> None:
    source = json.loads((mi_result / "result.json").read_text())
    doc = reproject(mi_result, mi_result / "mesh.npz", tmp_path / "same")
    facts = doc["info"]["reprojection"]
    assert facts["previous_texture"] == "result" and facts["uvs"] == "mesh" and facts["kept_fraction"] > 0.4
    assert abs(facts["seen_fraction"] - source["info"]["texture"]["seen_fraction"]) < 2e-3  # the same camera
    before, after = texture(mi_result), texture(tmp_path / "same")
    error = np.abs(after - before).max(axis=-1)
    assert np.sqrt(np.square(after - before).mean()) < 0.01  # > 40 dB
    assert np.percentile(error, 99) <= 8 / 255  # texels seen at a grazing angle: photo vs mirrored colour
    assert doc["camera"] == source["camera"] and doc["method"] == "meshinversion"
    assert doc["input"] == source["input"] and doc["protocol_version"] == PROTOCOL_VERSION
    assert sorted(doc["files"]) == [
        "mask.png",
        "mesh.glb",
        "mesh.npz",
        "preview.png",
        "result.json",
        "texture.png",
    ]
    # the result's own .glb (its texture inside, glTF's Y up) gives the same
    glb = reproject(mi_result, mi_result / "mesh.glb", tmp_path / "glb")
    assert glb["info"]["reprojection"]["previous_texture"] == "mesh"
    assert np.abs(texture(tmp_path / "glb") - after).max() <= 2 / 255


@pytest.mark.slow
def test_mesh_without_uvs_gets_charts_and_its_mirror_image(mi_result: Path, tmp_path: Path) -> None:
    with np.load(mi_result / "mesh.npz") as mesh:
        vertices, faces, uvs = mesh["vertices"], mesh["faces"], mesh["uvs"]
    obj = blender_to_y_up(tmp_path / "plain.obj", vertices, faces)
    facts = reproject(mi_result, obj, tmp_path / "plain")["info"]["reprojection"]
    assert facts["uvs"] == "face_charts" and facts["mirror_symmetric"] and facts["previous_texture"] == "none"
    source = json.loads((mi_result / "result.json").read_text())["info"]["texture"]
    assert abs(facts["mirrored_fraction"] - source["mirrored_fraction"]) < 0.02  # as the method's own mirror
    with np.load(tmp_path / "plain" / "mesh.npz") as mesh:
        charts = mesh["uvs"]
    camera = renderer_camera(json.loads((mi_result / "result.json").read_text())["camera"])

    def seen(corner_uvs: np.ndarray, image: np.ndarray) -> torch.Tensor:
        tex = torch.from_numpy(image).permute(2, 0, 1)[None]
        return render_mesh(
            torch.from_numpy(vertices)[None],
            torch.from_numpy(faces).long(),
            camera,
            128,
            texture=tex,
            uvs=torch.from_numpy(corner_uvs),
            antialiased=False,
        ).rgb[0]

    difference = seen(charts, texture(tmp_path / "plain")) - seen(uvs, texture(mi_result))
    assert 10 * math.log10(1 / float(difference.square().mean())) > 30  # the same look through the camera
    lopsided = vertices.copy()
    lopsided[lopsided[:, 0] > 0.1] *= (1.0, 1.0, 1.3)
    obj = blender_to_y_up(tmp_path / "lopsided.obj", lopsided, faces)
    facts = reproject(mi_result, obj, tmp_path / "lopsided")["info"]["reprojection"]
    assert (
        not facts["mirror_symmetric"] and facts["mirrored_fraction"] == 0 and facts["filled_fraction"] > 0.5
    )


@pytest.mark.slow
def test_perspective_identity_reproduces_the_photo_texture(tmp_path: Path) -> None:
    weights_id, overrides = tiny_gan2shape(tmp_path / "weights")
    registry = Registry(tmp_path / "weights", shipped_dir=tmp_path / "none")
    source = tmp_path / "g2s"
    request = JobRequest(
        image=str(CAR), output_dir=str(source), method="gan2shape", weights=weights_id, overrides=overrides
    )
    run_job(request, lambda e: None, registry=registry)
    doc = reproject(source, source / "mesh.npz", tmp_path / "same")
    # The relief's rim reaches the photo's outline, and the bake takes nothing within a pixel of it
    # (edge pixels mix in the background): those texels come from their neighbours (checked below).
    assert doc["camera"]["type"] == "PERSP" and doc["info"]["reprojection"]["seen_fraction"] > 0.85
    with np.load(source / "mesh.npz") as mesh:
        covered = uv_fragments(torch.from_numpy(mesh["uvs"]), texture(source).shape[0]).mask[0].numpy()
    error = np.abs(texture(tmp_path / "same") - texture(source)).max(axis=-1)[covered]
    assert covered.sum() > 100 and error.max() <= 6 / 255


def bad_result(source: Path, folder: Path, change: dict[str, Any], drop: str = "") -> Path:
    folder.mkdir()
    document = json.loads((source / "result.json").read_text())
    document = {key: value for key, value in {**document, **change}.items() if key != drop}
    (folder / "result.json").write_text(json.dumps(document))
    return folder


@pytest.mark.slow
def test_bad_inputs_are_one_line_and_write_nothing(mi_result: Path, tmp_path: Path) -> None:
    document = json.loads((mi_result / "result.json").read_text())
    (tmp_path / "photo.glb").write_bytes(CAR.read_bytes())
    (tmp_path / "points.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    np.savez(
        tmp_path / "no_faces.npz", vertices=np.zeros((3, 3), np.float32), faces=np.zeros((0, 3), np.int32)
    )
    mesh = mi_result / "mesh.glb"
    cases = [
        (mi_result, tmp_path / "photo.glb", "not_a_mesh"),
        (mi_result, tmp_path / "points.obj", "empty_mesh"),
        (mi_result, tmp_path / "no_faces.npz", "empty_mesh"),
        (mi_result, tmp_path / "missing.glb", "mesh_missing"),
        (mi_result, CAR, "not_a_mesh"),
        (bad_result(mi_result, tmp_path / "old", {"protocol_version": 0}), mesh, "result_version"),
        (bad_result(mi_result, tmp_path / "newer", {"protocol_version": 99}), mesh, "result_version"),
        (bad_result(mi_result, tmp_path / "no_camera", {}, drop="camera"), mesh, "no_camera"),
        (bad_result(mi_result, tmp_path / "bad_camera", {"camera": {"type": "ORTHO"}}), mesh, "no_camera"),
        (
            bad_result(
                mi_result, tmp_path / "no_photo", {"input": {**document["input"], "image": "/gone.png"}}
            ),
            mesh,
            "photo_missing",
        ),
        (tmp_path, mesh, "not_a_result"),
    ]
    for source, edited, code in cases:
        out = tmp_path / f"out-{code}"
        with pytest.raises(UserError) as caught:
            run_reproject(ReprojectRequest(str(source), str(edited), str(out)), lambda e: None)
        error = caught.value
        assert error.code == code and error.hint and "\n" not in error.message, (
            source,
            edited,
            error.message,
        )
        assert not out.exists()
    with pytest.raises(ProtocolError, match="size must be"):
        ReprojectRequest.from_dict({"result_dir": "r", "mesh": "m.glb", "output_dir": "o", "size": 5})
    with pytest.raises(ProtocolError, match="unknown reproject field"):
        ReprojectRequest.from_dict({"result_dir": "r", "mesh": "m.glb", "output_dir": "o", "colour": 1})


@pytest.mark.slow
def test_output_rules_and_cancel(mi_result: Path, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the artist's own")
    request = ReprojectRequest(
        str(mi_result), str(mi_result / "mesh.glb"), str(tmp_path / "mine"), overwrite=True
    )
    with pytest.raises(UserError) as caught:
        run_reproject(request, lambda e: None)
    assert caught.value.code == "output_exists" and (tmp_path / "mine" / "notes.txt").is_file()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobCancelled):
        run_reproject(
            ReprojectRequest(str(mi_result), str(mi_result / "mesh.glb"), str(tmp_path / "c")),
            lambda e: None,
            cancel,
        )
    assert not (tmp_path / "c").exists()
    events: list[dict[str, Any]] = []
    first = ReprojectRequest(str(mi_result), str(mi_result / "mesh.npz"), str(tmp_path / "again"), size=128)
    run_reproject(first, events.append)
    assert {e["stage"] for e in events} == {"prepare", "bake", "export"}
    again = ReprojectRequest(
        str(tmp_path / "again"), str(mi_result / "mesh.npz"), str(tmp_path / "again"), overwrite=True
    )
    run_reproject(again, lambda e: None)  # a re-projected result is a result: re-projected, overwritten
    assert Image.open(tmp_path / "again" / "texture.png").size == (128, 128)


@pytest.mark.slow
def test_cli_and_server(mi_result: Path, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "backend",
        "reproject",
        str(mi_result),
        "--mesh",
        str(mi_result / "mesh.glb"),
    ]
    def run_cli() -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, "-o", str(tmp_path / "cli")], cwd=ROOT, env=backend_env(),
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    done = run_cli()
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.startswith(f"wrote {tmp_path / 'cli'}:")
        and "% of the texture from the photo" in done.stdout
    )
    done = run_cli()  # the same output again: refused, the first result stays
    assert done.returncode == 1 and "[output_exists]" in done.stderr and "hint: " in done.stderr

    backend = BackendProcess(tmp_path / "weights", tmp_path / "stderr.txt")
    try:
        backend.expect("hello")
        message = {
            "type": "reproject",
            "id": "r1",
            "result_dir": str(mi_result),
            "mesh": str(mi_result / "mesh.npz"),
            "output_dir": str(tmp_path / "served"),
        }
        backend.send(message)
        assert backend.expect("accepted")["job"] == "r1"
        result = backend.expect("result", job="r1")
        assert result["summary"]["kind"] == "reproject" and Path(result["files"]["texture.png"]).is_file()
        assert any(m["type"] == "progress" and m.get("job") == "r1" for m in backend.seen)
        backend.send(
            {**message, "id": "r2", "mesh": str(tmp_path / "missing.glb"), "output_dir": str(tmp_path / "o2")}
        )
        error = backend.expect("error", job="r2")
        assert error["code"] == "mesh_missing" and error["hint"]
        backend.send({"type": "reproject", "id": "r3", "result_dir": str(mi_result)})
        assert backend.expect("error")["code"] == "bad_request"
    finally:
        backend.close()
