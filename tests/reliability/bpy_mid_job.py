"""Inside a fresh bpy process: a new file loaded, then the add-on disabled, each while a real job runs.

Usage: ``python bpy_mid_job.py JSON_ARGS`` (zip, python, weights_dir, image, weights, overrides,
output_dir). Prints ``RESULT <json>`` and leaves with ``os._exit`` (bpy may hang at exit), like
``tests/blender/bpy_scenarios.py``, whose ``install`` it reuses.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "blender"))

import bpy
from bpy_scenarios import MODULE, install


def gone(pid: int, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not Path(f"/proc/{pid}").exists()


def start_long_job(addon: Any, args: dict[str, Any], name: str) -> int:
    """Submit through the add-on's own session client and wait until the optimisation runs."""
    request = addon.client.protocol.JobRequest(
        image=args["image"], output_dir=str(Path(args["output_dir"]) / name), method="gan2shape",
        weights=args["weights"], overrides=args["overrides"],
    )  # fmt: skip
    client = addon.session.client()
    job = client.submit(request)
    deadline = time.monotonic() + 120
    while job.stage != "invert" and not job.finished and time.monotonic() < deadline:
        client.poll(0.1)
    assert job.stage == "invert" and not job.finished, (job.state, job.stage, job.error)
    return client.pid


def run(args: dict[str, Any]) -> dict[str, Any]:
    addon = install(args["zip"], args["python"], args["weights_dir"])
    out: dict[str, Any] = {}
    pid = start_long_job(addon, args, "new-file")
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=False)  # File > New mid-job
    out["new_file_stops_backend"] = gone(pid)
    pid = start_long_job(addon, args, "disable")
    import addon_utils  # importable only once bpy is

    addon_utils.disable(MODULE)
    out["disable_stops_backend"] = gone(pid)
    out["outputs"] = sorted(p.name for p in Path(args["output_dir"]).iterdir())
    return out


if __name__ == "__main__":
    code = 1
    try:
        print("RESULT " + json.dumps(run(json.loads(sys.argv[1]))), flush=True)
        code = 0
    except Exception:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
