"""Time the add-on's importer on a large result: ~1 M triangles with per-corner UVs and a 2k texture.

    .venv/bin/python benchmarks/bench_import.py [--faces 1000000] [--repeat 3]

Writes ``benchmarks/import.json``. The target (issue 7) is <= 0.6 s for the whole import (mesh
through the attribute API, UV map, material, texture load + pack), measured in the bpy module.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def grid_result(folder: Path, faces: int, texture_size: int) -> tuple[int, int]:
    """A closed-enough test surface: a grid of quads on a sphere-like height field, two triangles each."""
    side = int(np.sqrt(faces / 2)) + 1
    u, v = np.meshgrid(np.linspace(0, 1, side, dtype=np.float32), np.linspace(0, 1, side, dtype=np.float32))
    theta, phi = u * 2 * np.pi, v * np.pi
    vertices = np.stack([np.sin(phi) * np.cos(theta), np.sin(phi) * np.sin(theta), np.cos(phi)], -1).reshape(
        -1, 3
    )
    idx = np.arange(side * side, dtype=np.int32).reshape(side, side)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    uv_per_vertex = np.stack([u, v], -1).reshape(-1, 2)
    uvs = uv_per_vertex[tris].astype(np.float32)
    np.savez(folder / "mesh.npz", vertices=vertices.astype(np.float32), faces=tris, uvs=uvs)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (texture_size, texture_size, 3), dtype=np.uint8)
    Image.fromarray(texture, "RGB").save(folder / "texture.png", compress_level=1)
    return len(vertices), len(tris)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--texture", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "import.json"))
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    import bpy

    from blender_addon import importer

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n_vertices, n_faces = grid_result(folder, args.faces, args.texture)
        times = []
        for i in range(args.repeat):
            bpy.ops.wm.read_factory_settings(use_empty=True)
            start = time.perf_counter()
            obj = importer.import_result(folder, f"bench{i}", shade_smooth=True)
            times.append(time.perf_counter() - start)
            assert len(obj.data.polygons) == n_faces
    report = {
        "faces": n_faces,
        "vertices": n_vertices,
        "texture": args.texture,
        "seconds": [round(t, 4) for t in times],
        "best_s": round(min(times), 4),
        "target_s": 0.6,
        "bpy": bpy.app.version_string,
        "machine": platform.processor() or platform.machine(),
        "threads": os.environ.get("OMP_NUM_THREADS", ""),
        "load_average_1min": round(os.getloadavg()[0], 2),  # the machine is shared: judge timings by it
    }
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)  # the bpy module may hang at interpreter exit


if __name__ == "__main__":
    main()
