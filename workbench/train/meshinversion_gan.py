"""Train MeshInversion's demo generator: a small ConvMesh GAN on the procedural cars' UV-space maps.

The official recipe (ConvMesh ``run_generation.py``, research notes §1.5) where it applies: hinge
loss, Adam betas (0, 0.9), lr_G 1e-4 and lr_D 4e-4, an EMA generator (alpha 0.999, raised to the
power 100 below epoch 10 and 10 below epoch 100, over every float state entry), the "flat" mesh
smoothness loss at 1e-4, spectral-normed masked texture and mesh discriminators. Differences, for a
2-core CPU budget: narrow widths (``--g-width``, ``--d-width``), batch 8, one D step per G step
(official: 2), and alpha = 1 everywhere because the procedural textures are complete (the official
pseudo ground truth has holes). Training is deterministic per ``--seed`` and resumes exactly: the
batch rows and latents of step k are drawn from a generator seeded by (seed, k).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from backend.methods.meshinversion.camera_search import WeakPerspective, view_quaternion
from backend.methods.meshinversion.generator import Generator, GeneratorConfig
from backend.methods.meshinversion.mesh_gan import MeshGAN
from backend.methods.meshinversion.template import sphere_template
from workbench.data.map_cache import TRAINING_CARS, MapCache, build_cache, load_cache
from workbench.train.convmesh_discriminator import MapDiscriminator, masked_generator_loss, masked_hinge
from workbench.train.mesh_smoothness import face_neighbours, flat_loss
from workbench.train.shipped_weights import register_shipped_file

WEIGHTS_ID = "meshinversion-demo-car"
WEIGHTS_FILE = "meshinversion_demo_car.safetensors"
CHECKPOINT = "checkpoint.pt"
TRAIN_COMMAND = (
    "OMP_NUM_THREADS=1 python -m workbench.train meshinversion --out runs/mi_demo "
    "--cache runs/mi_data/cars1536.npz --cars 1536 --steps 518 --d-width 0.25 --lr-g 2e-4 && "
    "OMP_NUM_THREADS=1 python -m workbench.train meshinversion --out runs/mi_demo "
    "--cache runs/mi_data/cars1536.npz --steps 775 --mesh-d-weight 3 && "
    "OMP_NUM_THREADS=1 python -m workbench.train meshinversion --out runs/mi_demo "
    "--cache runs/mi_data/cars1536.npz --steps 100000 --export-every 600 --copy-checkpoint --moment-weight 50"
)
"""How the shipped demo weights were made, in resumed phases: 518 steps as configured, then the mesh
discriminator weighted 3x, then displacement moment matching added (the shapes had stayed round),
stopped when the session ended (the step count is in the manifest's ``source``)."""


@dataclass
class TrainSettings:
    """Everything that defines a run (stored in its checkpoint so a resume continues the same run)."""

    g_width: float = 0.125
    d_width: float = 0.125
    texture_resolution: int = 256
    batch: int = 8
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    flat_weight: float = 1e-4
    ema_alpha: float = 0.999
    seed: int = 0
    mesh_d_weight: float = 1.0
    """Weight of the mesh discriminator's loss next to the texture one (official: 1 below texture 512)."""
    moment_weight: float = 0.0
    """Not in the official recipe: pulls the per-texel batch mean and std of the generated displacement
    maps towards the data's. On this budget the GAN alone did not make the shapes car-like."""

    @property
    def d_weights(self) -> tuple[float, float]:
        return (1.0, self.mesh_d_weight)

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(texture_resolution=self.texture_resolution, width=self.g_width, n_classes=0,
                               symmetric=True, norm="batch", template_rings=16)


def ema_alpha(settings: TrainSettings, epoch: float) -> float:
    """ConvMesh's schedule: a fast-moving average early, the slow one after epoch 100."""
    if epoch < 10:
        return settings.ema_alpha**100
    if epoch < 100:
        return settings.ema_alpha**10
    return settings.ema_alpha


class Trainer:
    """G, D, the EMA generator and both optimisers, with one GAN step and (de)serialisation."""

    def __init__(self, settings: TrainSettings, device: torch.device) -> None:
        self.settings, self.device, self.step = settings, device, 0
        torch.manual_seed(settings.seed)
        self.g = Generator(settings.generator_config()).to(device)
        self.d = MapDiscriminator(settings.d_width).to(device)
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=settings.lr_g, betas=(0.0, 0.9))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=settings.lr_d, betas=(0.0, 0.9))
        template = sphere_template(16)
        self.template = template
        self.faces = template.faces.to(device)
        self.neighbours = face_neighbours(self.faces)
        self.mesh_moments: tuple[torch.Tensor, torch.Tensor] | None = None

    def data_moments(self, data: MapCache) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-texel mean and std of the training displacement maps (computed once per process)."""
        if self.mesh_moments is None:
            _, maps = data.full_batch(torch.arange(len(data)), self.device)
            self.mesh_moments = (maps.mean(0), maps.std(0))
        return self.mesh_moments

    def moment_loss(self, fake_mesh: torch.Tensor, data: MapCache) -> torch.Tensor:
        mean, std = self.data_moments(data)
        return ((fake_mesh.mean(0) - mean) ** 2).mean() + ((fake_mesh.std(0) - std) ** 2).mean()

    def draws(self, data_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Real rows, D latents and G latents of the current step (a function of seed and step only)."""
        gen = torch.Generator().manual_seed(self.settings.seed * 1_000_003 + self.step)
        b = self.settings.batch
        rows = torch.randint(0, data_size, (b,), generator=gen)
        z = torch.randn(2, b, self.g.config.latent_dim, generator=gen)
        return rows, z[0].to(self.device), z[1].to(self.device)

    def train_step(self, data: MapCache) -> dict[str, float]:
        """One D step and one G step; returns the losses."""
        rows, z_d, z_g = self.draws(len(data))
        real_tex, real_mesh = data.full_batch(rows, self.device)
        alpha = torch.ones_like(real_tex[:, :1])
        with torch.no_grad():
            fake_tex, fake_mesh = self.g(z_d)
        w = self.settings.d_weights
        loss_real = masked_hinge(self.d(real_tex, real_mesh, alpha), alpha, real=True, weights=w)
        loss_fake = masked_hinge(self.d(fake_tex, fake_mesh, alpha), alpha, real=False, weights=w)
        self.opt_d.zero_grad(set_to_none=True)
        (loss_real + loss_fake).backward()
        self.opt_d.step()

        fake_tex, fake_mesh = self.g(z_g)
        loss_g = masked_generator_loss(self.d(fake_tex, fake_mesh, alpha), alpha, weights=w)
        vertices = self.template.displace(fake_mesh)
        loss_flat = flat_loss(vertices, self.faces, self.neighbours)
        loss_moments = self.moment_loss(fake_mesh, data)
        self.opt_g.zero_grad(set_to_none=True)
        st = self.settings
        (loss_g + st.flat_weight * loss_flat + st.moment_weight * loss_moments).backward()
        self.opt_g.step()

        losses = {"d_real": loss_real, "d_fake": loss_fake, "g": loss_g, "flat": loss_flat}
        losses["moments"] = loss_moments
        losses = {k: v.item() for k, v in losses.items()}
        if not all(math.isfinite(v) for v in losses.values()):
            raise FloatingPointError(f"training diverged at step {self.step}: {losses}")
        self.step += 1
        self.update_ema(self.step * self.settings.batch / len(data))
        return losses

    @torch.no_grad()
    def update_ema(self, epoch: float) -> None:
        """Average every float state entry (weights, BN statistics, spectral-norm vectors); copy integers."""
        a = ema_alpha(self.settings, epoch)
        live = self.g.state_dict()
        for name, value in self.g_ema.state_dict().items():
            if value.is_floating_point():
                value.mul_(a).add_(live[name], alpha=1 - a)
            else:
                value.copy_(live[name])

    def state(self) -> dict[str, object]:
        return {
            "settings": asdict(self.settings),
            "step": self.step,
            "g": self.g.state_dict(),
            "d": self.d.state_dict(),
            "g_ema": self.g_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }

    def save(self, path: Path) -> None:
        """Atomic checkpoint (plain tensors and numbers only, loadable with weights_only=True)."""
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, device: torch.device) -> Trainer:
        state = torch.load(path, map_location=device, weights_only=True)
        trainer = cls(TrainSettings(**state["settings"]), device)
        trainer.g.load_state_dict(state["g"])
        trainer.d.load_state_dict(state["d"])
        trainer.g_ema.load_state_dict(state["g_ema"])
        trainer.opt_g.load_state_dict(state["opt_g"])
        trainer.opt_d.load_state_dict(state["opt_d"])
        trainer.step = int(state["step"])
        return trainer


@torch.no_grad()
def sample_grid(g_ema: Generator, count: int = 8, seed: int = 7, size: int = 128) -> np.ndarray:
    """(3 rows x count) uint8 grid: textures, then textured meshes from a front three-quarter and a
    rear three-quarter view (unlit, as MeshInversion renders them)."""
    model = MeshGAN(copy.deepcopy(g_ema).cpu())
    z = torch.randn(count, model.config.latent_dim, generator=torch.Generator().manual_seed(seed))
    texture, vertices = model.generate(z, None)
    vertices = vertices - vertices.mean(1, keepdim=True)
    rows = [torch.nn.functional.interpolate(texture, size=(size, size), mode="bilinear", antialias=True)]
    for azimuth in (0.7, 2.5):
        quat = view_quaternion(torch.full((count,), azimuth), torch.full((count,), 0.35))
        cam = WeakPerspective(quat, torch.full((count,), 0.85), torch.zeros(count, 2))
        shot = model.render(vertices, texture, cam, size)
        rows.append(torch.where(shot.mask[:, None], shot.rgb, torch.ones_like(shot.rgb)))
    grid = torch.cat([torch.cat(list(r), -1) for r in rows], -2)
    return ((grid.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def export(trainer: Trainer, weights_dir: Path, checkpoint_copy: Path | None) -> dict[str, object]:
    """Write the EMA generator as safetensors, upsert its manifest entry, optionally copy the checkpoint."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    target = weights_dir / WEIGHTS_FILE
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in trainer.g_ema.state_dict().items()}
    save_file(tensors, tmp, metadata={"step": str(trainer.step)})
    tmp.chmod(0o644)
    os.replace(tmp, target)
    source = f"trained here on procedural cars ({trainer.step} steps, batch {trainer.settings.batch})"
    config = trainer.settings.generator_config().to_dict()
    entry = register_shipped_file(target, "meshinversion", WEIGHTS_ID, "car", source, TRAIN_COMMAND, config)
    if checkpoint_copy is not None:
        checkpoint_copy.parent.mkdir(parents=True, exist_ok=True)
        trainer.save(checkpoint_copy)
    return entry


def train(args: argparse.Namespace) -> Trainer:
    """Build or load the cache, build or resume the trainer, and run until ``--steps``."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_path = Path(args.cache)
    data = load_cache(cache_path) if cache_path.exists() else build_cache(cache_path, args.cars)
    resume = Path(args.resume) if args.resume else out / CHECKPOINT
    if resume.exists():
        trainer = Trainer.load(resume, device)
        if args.mesh_d_weight is not None:  # schedule changes on resume, recorded in the checkpoint
            trainer.settings.mesh_d_weight = args.mesh_d_weight
        if args.moment_weight is not None:
            trainer.settings.moment_weight = args.moment_weight
        print(f"resumed from {resume} at step {trainer.step} ({trainer.settings})", flush=True)
    else:
        settings = TrainSettings(g_width=args.g_width, d_width=args.d_width, batch=args.batch, seed=args.seed,
                                 lr_g=args.lr_g, lr_d=args.lr_d, mesh_d_weight=args.mesh_d_weight or 1.0,
                                 moment_weight=args.moment_weight or 0.0)
        trainer = Trainer(settings, device)
    log = (out / "log.jsonl").open("a", encoding="utf-8")
    last_save = last_export = time.time()
    weights_training = Path(args.weights_dir) / "training" / "meshinversion_demo_car.pt"
    checkpoint_copy = weights_training if args.copy_checkpoint else None
    while trainer.step < args.steps:
        start = time.time()
        losses = trainer.train_step(data)
        record = {"step": trainer.step, **{k: round(v, 5) for k, v in losses.items()},
                  "sec": round(time.time() - start, 3)}
        if trainer.step % args.log_every == 0:
            log.write(json.dumps(record) + "\n")
            log.flush()
        if trainer.step % args.sample_every == 0 or trainer.step == args.steps:
            Image.fromarray(sample_grid(trainer.g_ema)).save(out / f"samples_{trainer.step:06d}.png")
        if time.time() - last_save > args.save_every or trainer.step == args.steps:
            trainer.save(out / CHECKPOINT)
            last_save = time.time()
        due = time.time() - last_export > args.export_every or trainer.step == args.steps
        if args.export_every and due:
            trainer.save(out / CHECKPOINT)
            export(trainer, Path(args.weights_dir), checkpoint_copy)
            last_export = time.time()
            print(f"exported at step {trainer.step}", flush=True)
    log.close()
    return trainer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="run folder: checkpoint, log.jsonl, sample grids")
    parser.add_argument("--cache", default="runs/mi_data/cars1536.npz", help="map cache, built if missing")
    parser.add_argument("--cars", type=int, default=TRAINING_CARS,
                        help="training cars in a new cache (seeds 0..N-1)")
    parser.add_argument("--steps", type=int, required=True, help="train until this total step count")
    parser.add_argument("--resume", default="", help="checkpoint to resume (default: <out>/checkpoint.pt)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--g-width", type=float, default=0.125, help="generator width (official = 1)")
    parser.add_argument("--d-width", type=float, default=0.125, help="discriminator width (official = 1)")
    parser.add_argument("--lr-g", type=float, default=1e-4, help="official 1e-4")
    parser.add_argument("--lr-d", type=float, default=4e-4, help="official 4e-4")
    parser.add_argument("--mesh-d-weight", type=float, default=None,
                        help="mesh D loss weight (default 1; replaces the stored one on a resume)")
    parser.add_argument("--moment-weight", type=float, default=None,
                        help="displacement moment-matching weight (default 0; replaces the stored one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--sample-every", type=int, default=250)
    parser.add_argument("--save-every", type=float, default=300, help="seconds between checkpoints")
    parser.add_argument("--export-every", type=float, default=0,
                        help="seconds between exports of the EMA generator to --weights-dir (0 = never)")
    parser.add_argument("--weights-dir", default="weights")
    parser.add_argument("--copy-checkpoint", action="store_true",
                        help="with exports, also copy the full checkpoint to <weights-dir>/training/")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    train(parser.parse_args(argv))


def main_samples(argv: list[str] | None = None) -> None:
    """Write the sample grid of exported weights (for the figure committed under benchmarks/)."""
    import tomllib

    from safetensors.torch import load_file

    parser = argparse.ArgumentParser(description="sample grid of the exported MeshInversion demo generator")
    parser.add_argument("--weights-dir", default="weights")
    parser.add_argument("--out", default="benchmarks/figures/mi_demo_samples.png")
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args(argv)
    entries = tomllib.loads((Path(args.weights_dir) / "manifest.toml").read_text(encoding="utf-8"))["weights"]
    config = next(e["config"] for e in entries if e["id"] == WEIGHTS_ID)
    generator = Generator(GeneratorConfig.from_dict(config))
    generator.load_state_dict(load_file(Path(args.weights_dir) / WEIGHTS_FILE), strict=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sample_grid(generator.eval(), args.count)).save(args.out)
    print(args.out)
