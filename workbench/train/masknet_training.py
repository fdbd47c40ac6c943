"""Train the car mask network (GAN2Shape's parsing-network role) on the renders' ground-truth masks.

The network segments StyleGAN samples, which are softer and noisier than renders, so training adds
blur, noise, colour jitter and mirror flips. Loss: binary cross-entropy + soft Dice. A few thousand
steps at 64 px take minutes on one CPU thread. Resumable (``checkpoint.safetensors`` in ``--out``),
logged to ``log.jsonl``; ``--export`` writes the shipped weights and their manifest entry.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from backend.methods.gan2shape.masknet import MaskNet, MaskNetConfig
from workbench.data.gan2shape_renders import CarRenderSet, build_render_set, load_render_set
from workbench.splits import eval_seeds
from workbench.train.shipped_weights import register_shipped_file
from workbench.train.stylegan2_training import MASK_WEIGHTS_ID
from workbench.train.training_state import (
    add_run_arguments,
    load_training_state,
    read_metadata,
    save_training_state,
)

CHECKPOINT = "checkpoint.safetensors"
WEIGHTS_FILE = "gan2shape_demo_car_mask.safetensors"
TRAIN_COMMAND = (
    "python -m workbench.train gan2shape-renders --out runs/g2s_data/car64.npz --cars 1000 --views 12 && "
    "OMP_NUM_THREADS=1 python -m workbench.train masknet --out runs/g2s_mask "
    "--data runs/g2s_data/car64.npz --export"
)


def augment(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """GAN-like degradations per sample: blur (down/up-sampling by a random factor), gain/offset, noise."""
    b, _, h, w = images.shape
    dev = images.device
    r = torch.rand(b, 4, generator=rng, device=dev)
    soft = F.interpolate(F.interpolate(images, scale_factor=0.5, mode="area"), size=(h, w), mode="bilinear")
    images = torch.lerp(images, soft, r[:, 0, None, None, None])
    gain, offset = 0.8 + 0.4 * r[:, 1], 0.2 * (r[:, 2] - 0.5)
    images = images * gain[:, None, None, None] + offset[:, None, None, None]
    noise = torch.randn(images.shape, generator=rng, device=dev) * (0.06 * r[:, 3])[:, None, None, None]
    return (images + noise).clamp(-1, 1)


def sample_batch(data: CarRenderSet, n: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented images in [-1, 1] and {0, 1} masks, half of them mirrored (the category is symmetric)."""
    index = torch.randint(len(data), (n,), generator=rng)
    images = data.images[index].float() / 127.5 - 1.0
    masks = (data.masks[index] > 127).float()
    flip = torch.rand(n, generator=rng) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    masks = torch.where(flip[:, None, None, None], masks.flip(-1), masks)
    return augment(images, rng), masks


def mask_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE for per-pixel calibration + soft Dice so thin parts (wheels, mirrors) are not ignored."""
    probs = torch.sigmoid(logits)
    inter = (probs * target).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (probs.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + dice.mean()


def iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image intersection over union of two boolean masks (B, 1, H, W)."""
    inter = (pred & target).sum(dim=(1, 2, 3)).float()
    union = (pred | target).sum(dim=(1, 2, 3)).float()
    return inter / union.clamp(min=1)


def save_checkpoint(path: Path, net: MaskNet, opt: torch.optim.Optimizer, step: int) -> None:
    save_training_state(path, net, opt, {"step": str(step), "config": json.dumps(net.config.to_dict())})


def load_checkpoint(path: Path, lr: float) -> tuple[MaskNet, torch.optim.Optimizer, int]:
    net = MaskNet(MaskNetConfig.from_dict(json.loads(read_metadata(path)["config"])))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    return net, opt, int(load_training_state(path, net, opt)["step"])


def train(args: argparse.Namespace) -> MaskNet:
    """Train (or resume) to ``args.steps``; returns the network in eval mode."""
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    if ckpt.exists():
        net, opt, step = load_checkpoint(ckpt, args.lr)
    else:
        torch.manual_seed(args.seed)
        net = MaskNet(MaskNetConfig(width=args.width))
        opt, step = torch.optim.Adam(net.parameters(), lr=args.lr), 0
    data = load_render_set(Path(args.data))
    last_save = time.monotonic()
    with (out / "log.jsonl").open("a") as log:
        while step < args.steps:
            start = time.perf_counter()
            rng = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
            images, masks = sample_batch(data, args.batch, rng)
            loss = mask_loss(net(images), masks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if not torch.isfinite(loss):
                raise FloatingPointError(f"mask network training diverged at step {step}")
            if step % args.log_every == 0:
                row = {"step": step, "loss": loss.item(), "sec_per_step": time.perf_counter() - start}
                log.write(json.dumps(row) + "\n")
                log.flush()
            if time.monotonic() - last_save > 300 or step >= args.steps:
                save_checkpoint(ckpt, net, opt, step)
                last_save = time.monotonic()
    return net.eval()


def export(net: MaskNet, weights_dir: Path, steps: int, eval_iou: float) -> dict[str, object]:
    """Write the shipped weights file and upsert its manifest entry."""
    target = weights_dir / WEIGHTS_FILE
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, tmp)
    tmp.chmod(0o644)  # shipped with the repository: readable by everyone
    os.replace(tmp, target)
    source = f"trained here on procedural car render masks ({steps} steps; held-out IoU {eval_iou:.3f})"
    config = {"kind": "mask", **net.config.to_dict()}
    return register_shipped_file(target, "gan2shape", MASK_WEIGHTS_ID, "car", source, TRAIN_COMMAND, config)


def evaluate(net: MaskNet, data: CarRenderSet) -> float:
    """Mean IoU of thresholded predictions on ``data`` (held-out renders)."""
    images = data.images.float() / 127.5 - 1.0
    pred = torch.cat([net.predict(chunk) for chunk in images.split(64)]) > 0.5
    return iou(pred, data.masks > 127).mean().item()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="run folder (checkpoint, log); resumes if present")
    parser.add_argument("--data", required=True, help="render set written by `gan2shape-renders`")
    parser.add_argument("--eval-cars", type=int, default=64, help="held-out cars rendered for the IoU")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=MaskNetConfig.width)
    add_run_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    net = train(args)
    held_out = build_render_set(eval_seeds(args.eval_cars), views_per_car=2, size=net.config.size, seed=1)
    score = evaluate(net, held_out)
    print(json.dumps({"steps": args.steps, "held_out_iou": round(score, 4)}), flush=True)
    if args.export:
        export(net, Path(args.weights_dir), args.steps, score)
