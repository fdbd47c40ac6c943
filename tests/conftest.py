"""Shared test setup: one torch thread (two cores are shared with other work; oversubscription
only slows things down) and the repository root on ``sys.path``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:
    import torch
except ImportError:  # the add-on tests can run in a Python without torch
    torch = None
if torch is not None:
    torch.set_num_threads(1)
