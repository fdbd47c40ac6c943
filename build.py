#!/usr/bin/env python3
"""The project's single entry point: setup, test, demo, package, bench.

Runs with any Python 3.11 and only the standard library; everything else lives in ``.venv``,
which ``setup`` creates (idempotent: a stamp of the requirement files skips work when current).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
STAMP = VENV / ".requirements.sha256"


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


def setup(_: argparse.Namespace | None = None) -> None:
    """Create ``.venv`` and install the pinned requirements (skipped when already current)."""
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"Python 3.11 is required (bpy and Blender's Python are 3.11); this is {sys.version.split()[0]}")
    digest = requirements_digest()
    if PY.exists() and STAMP.exists() and STAMP.read_text().strip() == digest:
        print("setup: .venv is current")
        return
    if not PY.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    run([PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([PY, "-m", "pip", "install", "--quiet", "-r", ROOT / "requirements-dev.txt"])
    STAMP.write_text(digest)
    print("setup: done")


def test(args: argparse.Namespace) -> None:
    """Lint, then the whole suite (unit tests and end-to-end tests with `fast` presets)."""
    setup()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run([PY, "-m", "ruff", "check", "."], env=env)
    run([PY, "-m", "pytest", *args.pytest_args], env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create .venv with pinned dependencies").set_defaults(func=setup)
    p = sub.add_parser("test", help="lint and run the test suite")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments")
    p.set_defaults(func=test)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
