"""What machine a benchmark ran on, recorded next to its numbers (one description for every script)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    """CPU model and cores (lscpu), load average, library versions and the commit measured."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)

    def field(name: str) -> str:
        return fields.get(name, "?").strip()

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu_model": field("Model name"),
        "cpus": field("CPU(s)"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
    }
