"""The extension zip: Blender's validator accepts it, it carries the backend, and the add-on's
Blender-free modules import from it without bpy or torch."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_zip_layout(extension_zip: Path) -> None:
    names = set(zipfile.ZipFile(extension_zip).namelist())
    for required in (
        "blender_manifest.toml",
        "__init__.py",
        "client.py",
        "importer.py",
        "batch.py",
        "requirements.txt",
        "requirements-nodeps.txt",
        "backend/__init__.py",
        "backend/protocol.py",
        "backend/server.py",
        "weights/manifest.toml",
    ):
        assert required in names, required
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("tests/")]


def test_validator_rejects_what_blender_would(tmp_path: Path) -> None:
    """The same tool `build.py package` runs refuses a manifest Blender would refuse (proves it checks)."""
    manifest = (ROOT / "blender_manifest.toml").read_text()
    tool = next(
        (ROOT / ".venv").glob(
            "lib/python3.*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"
        )
    )
    results = {}
    for name, text in (
        ("good", manifest),
        ("bad", re.sub(r"(?m)^tagline = .*$", 'tagline = "Ends with a dot."', manifest)),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        (folder / "blender_manifest.toml").write_text(text)
        results[name] = subprocess.run(
            [sys.executable, str(tool), "validate", str(folder)], capture_output=True, text=True
        )
    good, refused = results["good"], results["bad"]
    assert good.returncode == 0, good.stdout + good.stderr
    assert refused.returncode != 0 and "tagline" in refused.stdout + refused.stderr


def test_client_imports_from_zip_without_bpy_or_torch(extension_zip: Path, tmp_path: Path) -> None:
    package = tmp_path / "reconstruct_from_image"
    zipfile.ZipFile(extension_zip).extractall(package)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import reconstruct_from_image.client as c, reconstruct_from_image.backend_env as e;"
        "assert c.protocol.__name__ == 'reconstruct_from_image.backend.protocol', c.protocol.__name__;"
        "assert e.backend_root(e.Path(c.__file__).parent) == e.Path(c.__file__).parent;"
        "assert 'bpy' not in sys.modules and 'torch' not in sys.modules and 'numpy' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
