"""A small network's training run: its state (weights and Adam moments) in one safetensors file,
so a run resumes exactly where it stopped (the file never holds pickled Python objects), and the
command-line options every such tool shares."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def save_training_state(
    path: Path, net: torch.nn.Module, opt: torch.optim.Adam, metadata: dict[str, str]
) -> None:
    """Write ``net``'s weights (``net.*``) and ``opt``'s moments (``opt.<i>.*``) atomically."""
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    for i, state in opt.state_dict()["state"].items():
        tensors |= {f"opt.{i}.{k}": v.reshape(-1) if k == "step" else v for k, v in state.items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
    os.replace(tmp, path)


def read_metadata(path: Path) -> dict[str, str]:
    with safe_open(path, framework="pt") as fh:
        return dict(fh.metadata())


def load_training_state(path: Path, net: torch.nn.Module, opt: torch.optim.Adam) -> dict[str, str]:
    """Restore what ``save_training_state`` wrote into ``net`` and ``opt`` (built like the saved
    ones); returns the metadata."""
    with safe_open(path, framework="pt") as fh:
        metadata = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    state = opt.state_dict()
    state["state"] = {
        i: {k: tensors[f"opt.{i}.{k}"].reshape(()) if k == "step" else tensors[f"opt.{i}.{k}"]
            for k in ("step", "exp_avg", "exp_avg_sq")}
        for i in range(len(list(net.parameters())))
        if f"opt.{i}.step" in tensors
    }  # fmt: skip
    opt.load_state_dict(state)
    return metadata


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Seed, threads, log interval and the export switch with its weights folder."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--resume-from", help="checkpoint to start from when --out has none")
    parser.add_argument("--export", action="store_true", help="write weights/ file and manifest entry")
    parser.add_argument("--weights-dir", default=str(Path(__file__).resolve().parents[2] / "weights"))


def start_checkpoint(checkpoint: Path, resume_from: str | None) -> Path | None:
    """Where a run starts: its own ``checkpoint`` if present, else ``resume_from`` (``--resume-from``,
    such as a committed checkpoint), else nowhere (a fresh run)."""
    if checkpoint.exists():
        return checkpoint
    return Path(resume_from) if resume_from else None


SAVE_EVERY_S = 300.0
"""Seconds between checkpoints of a ``train_steps`` run (and always at its last step)."""


def train_steps(
    out: Path,
    net: torch.nn.Module,
    opt: torch.optim.Adam,
    args: argparse.Namespace,
    losses: Callable[[torch.Generator], dict[str, torch.Tensor]],
    held_out: Callable[[], dict[str, float]] | None = None,
) -> int:
    """Resume ``net`` and ``opt`` from ``out/checkpoint.safetensors`` if present (else from
    ``args.resume_from`` if given, such as a committed checkpoint) and step until ``args.steps``:
    each step's batch seeded from ``args.seed`` and the step (a resumed run draws what an
    uninterrupted one would), the sum of ``losses`` minimised, its terms logged to ``out/log.jsonl``
    every ``args.log_every`` steps (with ``held_out()``'s numbers every tenth time). Returns the step."""
    checkpoint = out / "checkpoint.safetensors"
    start_from = start_checkpoint(checkpoint, args.resume_from)
    step = int(load_training_state(start_from, net, opt)["step"]) if start_from is not None else 0
    last_save = time.monotonic()
    with (out / "log.jsonl").open("a") as log:
        while step < args.steps:
            start = time.perf_counter()
            terms = losses(torch.Generator().manual_seed(args.seed * 1_000_003 + step))
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % args.log_every == 0:
                row = {"step": step, **{k: round(v.item(), 5) for k, v in terms.items()},
                       "sec_per_step": round(time.perf_counter() - start, 3)}  # fmt: skip
                if held_out is not None and step % (args.log_every * 10) == 0:
                    row |= held_out()
                log.write(json.dumps(row) + "\n")
                log.flush()
            if time.monotonic() - last_save > SAVE_EVERY_S or step >= args.steps:
                save_training_state(checkpoint, net, opt, {"step": str(step)})
                last_save = time.monotonic()
    return step
