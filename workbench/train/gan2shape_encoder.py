"""Pretrain GAN2Shape's latent encoder on its StyleGAN2's own samples (the demo's "pretrain" file).

Step 2 of GAN2Shape projects each pseudo sample onto the GAN by an encoder that predicts a latent
offset; the official method trains it from scratch per image for hundreds of steps, or starts
from a joint-pretrained file (faces, cats). A CPU schedule trains it for a few dozen steps, too
few for a fresh encoder, which then returns the same projection for every pseudo sample
(benchmarks/GAN2SHAPE.md). This tool teaches the encoder, once per GAN, to read the code of any
GAN image: sample z, map it to the hidden code h at the ``f1_d`` split of the mapping network,
render the image with fresh noise, and regress ``h - h(0)``. With ``relative_enc`` the offset of
a pseudo sample, ``E(pseudo) - E(inverted input)``, then starts as the code difference between
the two images. The exported file is a ``pretrain`` entry holding only ``nets.netEnc.*``; the
depth, albedo, view and light nets stay fresh, so the ellipsoid prior is still fitted per image.

Resumable (``checkpoint.safetensors`` in ``--out``), logged to ``log.jsonl``; ``--export`` writes
the shipped weights and their manifest entry.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from backend.methods.gan2shape.method import GAN2Shape
from backend.methods.gan2shape.networks import ResEncoder
from backend.methods.gan2shape.stylegan2 import Generator, StyleGAN2Config
from backend.models import default_entry, load_model
from backend.weights import Registry, WeightsEntry
from workbench.train.shipped_weights import register_shipped_file
from workbench.train.training_state import add_run_arguments, train_steps

WEIGHTS_FILE = "gan2shape_demo_car_encoder.safetensors"
WEIGHTS_ID = "gan2shape-demo-car-encoder"
ENCODER_WIDTH = 32
"""The official encoder's ``nf``: the file stays loadable by any GAN2Shape build of this size."""
HELD_OUT_SEED = 987_654_321
"""Seed of the fixed batch the residual is measured on (training draws seeds from ``--seed``)."""
TRAIN_COMMAND = (
    "OMP_NUM_THREADS=1 python -m workbench.train gan2shape-encoder --out runs/g2s_encoder --steps 3000 "
    "--export"
)


def hidden_targets(
    generator: Generator, split: int, batch: int, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAN samples (B, 3, S, S) in [-1, 1] and their hidden codes at ``split`` minus that of z = 0."""
    dim = generator.config.style_dim
    with torch.no_grad():
        z = torch.randn(batch, dim, generator=rng)
        hidden = generator.style_forward(z, depth=split)
        w = generator.style_forward(hidden, skip=split)
        images = generator(w, input_is_w=True, noise=generator.make_noise(batch, rng)).clamp(-1, 1)
        centre = generator.style_forward(z.new_zeros(1, dim), depth=split)
    return images, hidden - centre


def train(args: argparse.Namespace, generator: Generator) -> tuple[ResEncoder, float]:
    """Train (or resume) to ``args.steps``; returns the encoder and the loss / target variance on a
    fixed batch (1 = no better than predicting zero offsets)."""
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    generator.eval().requires_grad_(False)
    split = generator.config.n_mlp - args.f1_d
    if not 0 <= split < generator.config.n_mlp:
        raise ValueError(f"--f1-d must be within 1..{generator.config.n_mlp}, got {args.f1_d}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        encoder = ResEncoder(3, generator.config.style_dim, size=generator.config.size, nf=ENCODER_WIDTH)
    opt = torch.optim.Adam(encoder.parameters(), lr=args.lr)

    def losses(rng: torch.Generator) -> dict[str, torch.Tensor]:
        images, target = hidden_targets(generator, split, args.batch, rng)
        return {"loss": (encoder(images) - target).square().mean()}

    train_steps(out, encoder, opt, args, losses)
    images, target = hidden_targets(generator, split, 64, torch.Generator().manual_seed(HELD_OUT_SEED))
    with torch.no_grad():
        residual = float((encoder(images) - target).square().mean() / target.square().mean())
    return encoder.eval(), residual


def export(
    encoder: ResEncoder, weights_dir: Path, gan: WeightsEntry, config: StyleGAN2Config, f1_d: int, steps: int,
    residual: float,
) -> dict[str, object]:
    """Write the shipped ``pretrain`` file (``nets.netEnc.*`` only) and upsert its manifest entry."""
    target = weights_dir / WEIGHTS_FILE
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tensors = {f"nets.netEnc.{k}": v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    save_file(tensors, tmp)
    tmp.chmod(0o644)  # shipped with the repository: readable by everyone
    os.replace(tmp, target)
    source = (f"trained here on samples of {gan.id} ({steps} steps of batch 16; residual "
              f"{residual:.3f} of the code variance)")
    entry_config = {"kind": "pretrain", "image_size": config.size, "latent_dim": config.style_dim,
                    "gan": gan.id, "gan_sha256": gan.sha256, "f1_d": f1_d, "relative_enc": True}  # fmt: skip
    return register_shipped_file(
        target, "gan2shape", WEIGHTS_ID, gan.category, source, TRAIN_COMMAND, entry_config
    )


def add_gan_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out`` and ``--gan``, shared by the tools that train on a GAN2Shape StyleGAN2's samples."""
    parser.add_argument("--out", required=True, help="run folder (checkpoint, log); resumes if present")
    parser.add_argument("--gan", help="GAN2Shape StyleGAN2 weights id (default: the method's default)")


def load_gan(args: argparse.Namespace) -> tuple[WeightsEntry, GAN2Shape]:
    """The ``--gan`` entry (or the method's default) of ``--weights-dir``, loaded on the CPU."""
    registry = Registry(shipped_dir=Path(args.weights_dir))
    entry = registry.find(args.gan) if args.gan else default_entry(registry, "gan2shape")
    model = load_model(registry, entry, "cpu")
    if model.generator is None:
        raise SystemExit(f"{entry.id} is not a StyleGAN2 entry")
    return entry, model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_gan_run_arguments(parser)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--f1-d", type=int, default=2, help="mapping layers after the offset (car: 2)")
    add_run_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    entry, model = load_gan(args)
    encoder, residual = train(args, model.generator)
    print(json.dumps({"steps": args.steps, "gan": entry.id, "residual": round(residual, 4)}), flush=True)
    if args.export:
        config = model.generator.config
        export(encoder, Path(args.weights_dir), entry, config, args.f1_d, args.steps, residual)
