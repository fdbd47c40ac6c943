"""Train GAN2Shape's demo StyleGAN2 on renders of the procedural car category (CPU-sized).

Same classes as the official rosinality model, narrower: 64 px, widths 64 up to 32 px and 32 at
64 px, a 4-layer mapping network on 256-d latents. Non-saturating logistic loss, lazy R1 on the
discriminator, style mixing, an EMA generator with ramp-up; no path-length regulariser and no
augmentation (the renders are plentiful and clean). Every step draws its data and noise from a
generator seeded by (seed, step), so a resumed run continues exactly as an uninterrupted one.

Outputs in ``--out``: ``checkpoint.safetensors`` (resumable, small: Adam moments in bfloat16),
``log.jsonl``, ``samples/step_XXXXXX.png`` grids. ``export`` writes ``g_ema`` + ``d`` in the
rosinality key layout as a shipped weights file and records it in ``weights/manifest.toml``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from backend.methods.gan2shape.stylegan2 import Discriminator, Generator, StyleGAN2Config, flatten_checkpoint
from workbench.data.gan2shape_renders import VIEW_LIGHT_DISTRIBUTION, CarRenderSet, load_render_set
from workbench.train.shipped_weights import register_shipped_file
from workbench.train.training_state import start_checkpoint

DEMO_CONFIG = StyleGAN2Config(
    size=64, style_dim=256, n_mlp=4, channel_multiplier=1, channel_base=2048, channel_max=64
)
CHECKPOINT = "checkpoint.safetensors"


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters (StyleGAN2-ADA's 'auto' recipe for 64 px where it applies)."""

    batch: int = 8
    lr: float = 0.0025
    r1_gamma: float = 0.1  # 0.0002 * size^2 / batch
    r1_every: int = 16
    mixing_prob: float = 0.9
    ema_kimg: float = 2.5
    ema_rampup: float = 0.05
    seed: int = 0


class Trainer:
    """Networks, optimisers and the step loop; state lives in one safetensors checkpoint."""

    def __init__(self, config: StyleGAN2Config, settings: TrainSettings, device: torch.device) -> None:
        self.config, self.settings, self.device = config, settings, device
        torch.manual_seed(settings.seed)
        self.g = Generator(config).to(device)
        self.d = Discriminator(config).to(device)
        self.g_ema = Generator(config).to(device).eval().requires_grad_(False)
        self.g_ema.load_state_dict(self.g.state_dict())
        reg = settings.r1_every / (settings.r1_every + 1)  # lazy regularisation: keep the effective lr
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=settings.lr, betas=(0.0, 0.99))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=settings.lr * reg, betas=(0.0, 0.99**reg))
        self.step = 0

    def step_rng(self) -> torch.Generator:
        return torch.Generator(self.device).manual_seed(self.settings.seed * 1_000_003 + self.step)

    def latents(self, batch: int, rng: torch.Generator) -> torch.Tensor:
        """W+ codes with style mixing: two mapped z split at a random layer, with ``mixing_prob``."""
        z = torch.randn(2, batch, self.config.style_dim, generator=rng, device=self.device)
        w = self.g.style_forward(z.flatten(0, 1)).view(2, batch, 1, -1)
        n = self.config.n_latent
        mix = torch.rand((), generator=rng, device=self.device) < self.settings.mixing_prob
        cut = int(torch.randint(1, n, (), generator=rng, device=self.device)) if mix else n
        layer = torch.arange(n, device=self.device)[None, :, None]
        return torch.where(layer < cut, w[0], w[1])

    def fake(self, batch: int, rng: torch.Generator) -> torch.Tensor:
        return self.g(self.latents(batch, rng), input_is_w=True, noise=self.g.make_noise(batch, rng))

    def train_step(self, data: CarRenderSet) -> dict[str, float]:
        """One discriminator update (+ lazy R1), one generator update, EMA; returns the losses."""
        s, b = self.settings, self.settings.batch
        rng = self.step_rng()
        real = data.batch(b, rng, self.device)
        self.d.requires_grad_(True)
        with torch.no_grad():
            fake = self.fake(b, rng)
        loss_d = F.softplus(self.d(fake)).mean() + F.softplus(-self.d(real)).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        stats = {"loss_d": loss_d.item()}
        if self.step % s.r1_every == 0:
            real.requires_grad_(True)
            (grad,) = torch.autograd.grad(self.d(real).sum(), real, create_graph=True)
            r1 = grad.square().sum(dim=(1, 2, 3)).mean()
            self.opt_d.zero_grad(set_to_none=True)
            (r1 * (s.r1_gamma / 2 * s.r1_every)).backward()
            self.opt_d.step()
            stats["r1"] = r1.item()
        self.d.requires_grad_(False)
        loss_g = F.softplus(-self.d(self.fake(b, rng))).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        stats["loss_g"] = loss_g.item()
        if not all(math.isfinite(v) for v in stats.values()):
            raise FloatingPointError(f"StyleGAN2 training diverged at step {self.step}: {stats}")
        self.update_ema()
        self.step += 1
        return stats

    def update_ema(self) -> None:
        """EMA with a half-life of ``ema_kimg`` images, shortened early on (ramp-up) to forget the init."""
        s = self.settings
        seen = (self.step + 1) * s.batch
        half_life = min(s.ema_kimg * 1000, seen * s.ema_rampup)
        beta = 0.5 ** (s.batch / max(half_life, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.g_ema.parameters(), self.g.parameters(), strict=True):
                p_ema.lerp_(p, 1.0 - beta)
            for b_ema, b in zip(self.g_ema.buffers(), self.g.buffers(), strict=True):
                b_ema.copy_(b)

    # --- checkpoint -------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Atomically write networks (float32) and Adam moments (bfloat16: half the size; fine to resume)."""
        tensors = {f"g.{k}": v for k, v in self.g.state_dict().items()}
        tensors |= flatten_checkpoint({"g_ema": self.g_ema.state_dict(), "d": self.d.state_dict()})
        for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            for index, state in opt.state_dict()["state"].items():
                tensors[f"{name}.{index}.exp_avg"] = state["exp_avg"].to(torch.bfloat16)
                tensors[f"{name}.{index}.exp_avg_sq"] = state["exp_avg_sq"].to(torch.bfloat16)
                tensors[f"{name}.{index}.step"] = state["step"].reshape(1).float()
        meta = {
            "step": str(self.step),
            "config": json.dumps(self.config.to_dict()),
            "settings": json.dumps(asdict(self.settings)),
        }
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=meta)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, device: torch.device) -> Trainer:
        with safe_open(path, framework="pt", device=str(device)) as fh:
            meta = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
        config = StyleGAN2Config.from_dict(json.loads(meta["config"]))
        trainer = cls(config, TrainSettings(**json.loads(meta["settings"])), device)
        for prefix, net in (("g.", trainer.g), ("g_ema.", trainer.g_ema), ("d.", trainer.d)):
            net.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        for name, opt in (("opt_g", trainer.opt_g), ("opt_d", trainer.opt_d)):
            state = opt.state_dict()
            count = sum(len(group["params"]) for group in state["param_groups"])
            state["state"] = {
                i: {
                    "step": tensors[f"{name}.{i}.step"].reshape(()).cpu(),
                    "exp_avg": tensors[f"{name}.{i}.exp_avg"].float(),
                    "exp_avg_sq": tensors[f"{name}.{i}.exp_avg_sq"].float(),
                }
                for i in range(count)
                if f"{name}.{i}.step" in tensors
            }
            opt.load_state_dict(state)
        trainer.step = int(meta["step"])
        return trainer


def sample_grid(g: Generator, count: int, seed: int) -> np.ndarray:
    """A square grid of ``count`` samples (fixed z per seed, fixed noise) as (H, W, 3) uint8."""
    side = math.isqrt(count)
    device = g.input.input.device
    z = torch.randn(
        side * side, g.config.style_dim, generator=torch.Generator(device).manual_seed(seed), device=device
    )
    with torch.no_grad():
        images = g(z).clamp(-1, 1)
    s = g.config.size
    grid = images.view(side, side, 3, s, s).permute(0, 3, 1, 4, 2).reshape(side * s, side * s, 3)
    return ((grid + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def architecture_flags(args: argparse.Namespace) -> dict[str, int | None]:
    """The network flags as given (None: not given)."""
    return {"size": args.size, "channel_base": args.channel_base, "channel_max": args.channel_max}


def run_config(args: argparse.Namespace) -> StyleGAN2Config:
    """The architecture of a new run: the demo one, at ``--size`` and ``--channel-base``/``--channel-max``
    where given (a larger run on a lent GPU); a resumed run keeps its checkpoint's."""
    return replace(DEMO_CONFIG, **{k: v for k, v in architecture_flags(args).items() if v is not None})


def train(args: argparse.Namespace) -> None:
    """Train (or resume) until ``--steps`` or ``--minutes`` of wall time, whichever comes first."""
    started = time.monotonic()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    ckpt = out / CHECKPOINT
    start_from = start_checkpoint(ckpt, args.resume_from)
    if start_from is not None:
        trainer = Trainer.load(start_from, device)
        asked = {k: v for k, v in architecture_flags(args).items() if v is not None}
        if any(getattr(trainer.config, k) != v for k, v in asked.items()):
            raise SystemExit(f"{start_from} is a {trainer.config} run; --size/--channel-* ask for {asked}")
        print(f"resumed from {start_from} at step {trainer.step}", flush=True)
    else:
        config = run_config(args)
        gamma = 0.0002 * config.size**2 / args.batch  # StyleGAN2-ADA's heuristic
        settings = TrainSettings(batch=args.batch, seed=args.seed, r1_gamma=gamma)
        trainer = Trainer(config, settings, device)
    data = load_render_set(Path(args.data))
    if data.images.shape[-1] != trainer.config.size:
        raise SystemExit(f"{args.data} holds {data.images.shape[-1]} px renders; this run is "
                         f"{trainer.config.size} px (gan2shape-renders --size)")  # fmt: skip
    deadline = started + args.minutes * 60 if args.minutes is not None else math.inf
    last_save, last_r1 = time.monotonic(), None  # R1 runs every r1_every steps; log its latest value
    with (out / "log.jsonl").open("a") as log:
        while trainer.step < args.steps:
            start = time.perf_counter()
            stats = trainer.train_step(data)
            stats["sec_per_step"] = time.perf_counter() - start
            last_r1 = stats.pop("r1", last_r1)
            if trainer.step % args.log_every == 0:
                kimg = trainer.step * trainer.settings.batch / 1000
                row = {"step": trainer.step, "kimg": kimg, "time": time.time(), **stats, "last_r1": last_r1}
                log.write(json.dumps(row) + "\n")
                log.flush()
            if trainer.step % args.sample_every == 0:
                grid = sample_grid(trainer.g_ema, 64, seed=trainer.settings.seed)
                Image.fromarray(grid).save(out / "samples" / f"step_{trainer.step:06d}.png")
            out_of_time = time.monotonic() > deadline
            due = time.monotonic() - last_save > args.save_minutes * 60
            if due or trainer.step >= args.steps or out_of_time:
                trainer.save(ckpt)
                last_save = time.monotonic()
            if out_of_time:
                print(f"stopped at step {trainer.step} after --minutes {args.minutes}", flush=True)
                break


WEIGHTS_ID = "gan2shape-demo-car"
MASK_WEIGHTS_ID = "gan2shape-demo-car-mask"
WEIGHTS_FILE = "gan2shape_demo_car.safetensors"
TRAIN_COMMAND = (
    "python -m workbench.train gan2shape-renders --out runs/g2s_data/car64.npz --cars 1000 --views 12 && "
    "OMP_NUM_THREADS=1 python -m workbench.train stylegan2 --out runs/g2s_demo "
    "--data runs/g2s_data/car64.npz && python -m workbench.train stylegan2-export --run runs/g2s_demo"
)


def gan2shape_view_std() -> list[float]:
    """Std of the render views in GAN2Shape's 6-d view units (rotations / 60 degrees; no translation).

    A starting point for sampling pseudo-sample views (its ``view_mvn``): elevation -> pitch,
    azimuth -> yaw, both uniform, so std = range / sqrt(12).
    """
    pitch, yaw = (VIEW_LIGHT_DISTRIBUTION[k] for k in ("elevation_deg", "azimuth_deg"))
    return [round((hi - lo) / math.sqrt(12) / 60.0, 4) for lo, hi in (pitch, yaw)] + [0.0, 0.0, 0.0, 0.0]


def gan2shape_view_mean() -> list[float]:
    """Mean render view in the same units, relative to a level view of the car's front.

    That level front view is the canonical frame the depth net learns in (the frame in which the
    category is symmetric); the renders look down on the car from 5-30 deg, so every input's view
    is pitched by about their mean, with positive pitch = camera above the canonical one (measured:
    the opposite sign doubles the depth error on validation cars).
    """
    pitch, yaw = (VIEW_LIGHT_DISTRIBUTION[k] for k in ("elevation_deg", "azimuth_deg"))
    return [round((hi + lo) / 2 / 60.0, 4) for lo, hi in (pitch, yaw)] + [0.0, 0.0, 0.0, 0.0]


def step_cost(run: Path) -> str:
    """Median wall time per step over the run's log (what a step costs on the machine it ran on).

    A run resumed on a fresh machine from the committed checkpoint has no log of the earlier
    chunks; then only the steps logged since are measured, and without any the cost is left out.
    """
    log = run / "log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    seconds = [json.loads(line)["sec_per_step"] for line in lines if line.strip()]
    if not seconds:
        return ""
    return f", median {float(np.median(seconds)):.2f} s/step over {len(seconds)} log entries"


def export(run: Path, weights_dir: Path) -> dict[str, object]:
    """Write ``g_ema`` + ``d`` (rosinality keys, flat ``g_ema.*``/``d.*``) and upsert the manifest entry."""
    trainer = Trainer.load(run / CHECKPOINT, torch.device("cpu"))
    tensors = flatten_checkpoint({"g_ema": trainer.g_ema.state_dict(), "d": trainer.d.state_dict()})
    target = weights_dir / WEIGHTS_FILE
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata={"step": str(trainer.step)})
    tmp.chmod(0o644)  # shipped with the repository: readable by everyone
    os.replace(tmp, target)
    kimg = trainer.step * trainer.settings.batch / 1000
    source = (
        f"trained on procedural car renders ({trainer.step} steps of batch {trainer.settings.batch}, "
        f"{kimg:.1f} kimg{step_cost(run)}, one shared CPU thread)"
    )
    config = {
        "kind": "stylegan2",
        **trainer.config.to_dict(),
        "image_size": trainer.config.size,
        **VIEW_LIGHT_DISTRIBUTION,
        "view_mean": gan2shape_view_mean(),
        "view_std": gan2shape_view_std(),
        "mask_weights": MASK_WEIGHTS_ID,
    }
    return register_shipped_file(target, "gan2shape", WEIGHTS_ID, "car", source, TRAIN_COMMAND, config)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", required=True, help="run folder (checkpoint, log, samples); resumes if present"
    )
    parser.add_argument("--data", required=True, help="render set written by `gan2shape-renders`")
    parser.add_argument(
        "--resume-from", help="checkpoint to start from when --out has none (weights/training/)"
    )
    parser.add_argument("--steps", type=int, default=200_000, help="stop after this many steps")
    parser.add_argument("--batch", type=int, default=TrainSettings.batch)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--save-minutes", type=float, default=10.0, help="checkpoint interval")
    parser.add_argument("--minutes", type=float, help="stop (with a checkpoint) after this much wall time")
    parser.add_argument("--size", type=int, help=f"a new run's resolution (default {DEMO_CONFIG.size})")
    for name, what in (("channel_base", "channel base"), ("channel_max", "widest layer")):
        default = getattr(DEMO_CONFIG, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"a new run's {what} ({default})")
    train(parser.parse_args(argv))


def main_export(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="export the demo StyleGAN2 (g_ema + d) to weights/")
    parser.add_argument("--run", required=True, help="run folder with checkpoint.safetensors")
    parser.add_argument("--weights-dir", default=str(Path(__file__).resolve().parents[2] / "weights"))
    parser.add_argument("--figure", help="also write an 8 x 8 grid of g_ema samples (PNG) here")
    args = parser.parse_args(argv)
    entry = export(Path(args.run), Path(args.weights_dir))
    if args.figure:
        trainer = Trainer.load(Path(args.run) / CHECKPOINT, torch.device("cpu"))
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sample_grid(trainer.g_ema, 64, seed=1)).save(args.figure)
    print(json.dumps({k: entry[k] for k in ("id", "file", "size", "sha256", "source")}, indent=1))
