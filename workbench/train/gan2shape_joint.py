"""Joint pretraining of GAN2Shape's depth, albedo, view, light and encoder nets on GAN samples.

The paper's ``joint_train`` mode (its ``celeba_pretrain`` / ``cat_pretrain`` files): one set of
nets runs the published three-step stages over many GAN samples at once (each iteration takes
the next image of a shuffled cycle; see ``pipeline.Schedule``), so the depth net learns the
category's shape from the GAN's views of many objects instead of from one photo. The samples
come from the GAN itself (truncation 0.7, fixed noise, as the official ``generate.py``), their
masks from the category's mask network; nothing here sees a ground-truth depth. The exported file
is a ``pretrain`` entry with all five nets (float16, at ``--net-width``); a job that finds it
starts from these nets instead of fitting the ellipsoid prior (as the official instance configs do).

Unlike faces, cars have no symmetric canonical frame (the car configs never flip), and with the
view net free the joint run drifts to views at the ends of its range (measured: every image at
+-60 deg on all three axes, the relief then covering 6 % of the object). So by default the view
net is zeroed and frozen (``fixed_view``): each image's depth is learnt in its own view, and the
view net starts from the identity view in a job, where it learns as usual.

The encoder starts from the encoder-only pretrain file of the same GAN (``gan2shape-encoder``).
Resumable per stage (``checkpoint.safetensors`` in ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from backend.methods.gan2shape.auxiliary import AuxiliaryNets, find_auxiliary_nets
from backend.methods.gan2shape.config import Research
from backend.methods.gan2shape.convert import unprefixed
from backend.methods.gan2shape.inversion import fit_size
from backend.methods.gan2shape.method import GAN2Shape
from backend.methods.gan2shape.networks import ShapeNets, net_widths
from backend.methods.gan2shape.options import Options
from backend.methods.gan2shape.schedule import GAN2ShapeRun, Prediction, Schedule, Target
from backend.methods.gan2shape.stylegan2 import Generator
from backend.options import parse_options
from backend.weights import Registry, WeightsEntry
from workbench.train.gan2shape_encoder import WEIGHTS_ID as ENCODER_ID
from workbench.train.gan2shape_encoder import add_gan_run_arguments, load_gan
from workbench.train.shipped_weights import register_shipped_file
from workbench.train.training_state import add_run_arguments

CHECKPOINT = "checkpoint.safetensors"
WEIGHTS_FILE = "gan2shape_demo_car_pretrain.safetensors"
WEIGHTS_ID = "gan2shape-demo-car-pretrain"
TRUNCATION = 0.7


def gan_samples(
    generator: Generator, extras: AuxiliaryNets, count: int, size: int, rng: torch.Generator
) -> list[Target]:
    """``count`` truncated GAN samples at the nets' size with their W codes and mask-network masks."""
    network = extras.mask_network(generator.input.input.device)
    if network is None:
        raise SystemExit("joint pretraining needs the category's mask network (gan2shape kind 'mask')")
    with torch.no_grad():
        mean = generator.mean_latent(4096, rng)
        z = torch.randn(count, generator.config.style_dim, generator=rng, device=mean.device)
        w = mean + TRUNCATION * (generator.style_forward(z) - mean)
        images = fit_size(generator(w, input_is_w=True).clamp(-1, 1), size)
        masks = network.predict(images)
    noise = generator.fixed_noise()
    return [Target(images[i : i + 1], masks[i : i + 1], w[i : i + 1], noise) for i in range(count)]


def joint_options(
    args: argparse.Namespace, extras: AuxiliaryNets, model: GAN2Shape
) -> tuple[Options, Research]:
    """The ``fast`` mechanisms with the joint schedule and widths from the command line, resolved for
    ``model``; the view net stays fixed unless ``--learn-view``."""
    options = {
        "relative_enc": True,
        "f1_d": args.f1_d,
        "num_stages": args.stages,
        "stage0": tuple(args.stage0),
        "later": tuple(args.later),
        "batch": args.batch,
        "collect_iters": args.collect,
        "prior_iters": args.prior_iters,
        "net_width": args.net_width,
        "pseudo_pose": args.pseudo_pose,
        **(json.loads(args.set) if args.set else {}),
    }
    fast = parse_options(Options, "fast", {})
    return model.resolve_options(replace(fast, **options), extras), Research(fixed_view=not args.learn_view)


def save_nets(
    path: Path, nets: ShapeNets, metadata: dict[str, str], dtype: torch.dtype = torch.float32
) -> None:
    """All five nets as ``nets.<netX>.*`` (the layout ``extras`` reads), written atomically."""
    tensors = {f"nets.{k}": v.detach().cpu().to(dtype).contiguous() for k, v in nets.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def load_nets(path: Path, nets: ShapeNets) -> dict[str, str]:
    with safe_open(path, framework="pt") as fh:
        metadata = dict(fh.metadata())
        state = {k[len("nets.") :]: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    nets.load_state_dict(state, strict=True)
    return metadata


def train(args: argparse.Namespace, model: GAN2Shape, entry: WeightsEntry) -> tuple[ShapeNets, Options]:
    """Run (or resume) the joint schedule; returns the trained nets and the options they used."""
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    generator, discriminator = model.generator, model.discriminator
    registry = Registry(shipped_dir=Path(args.weights_dir))
    extras = find_auxiliary_nets(entry, model.image_size, model.auxiliary)
    extras.found.pop("pretrain", None)  # the joint file being made must not feed itself
    opts, research = joint_options(args, extras, model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        nf, gn_base = net_widths(model.image_size, args.net_width)
        nets = ShapeNets(model.image_size, nf=nf, gn_base=gn_base, latent_dim=generator.config.style_dim)
        if research.fixed_view:
            with torch.no_grad():
                nets.netV.network[-2].weight.zero_()  # every image seen from the identity view
    if args.encoder:
        encoder = registry.find(args.encoder)
        nets.load_official({"netEnc": unprefixed("nets.netEnc", registry.load_state_dict(encoder, "cpu"))})
    ckpt = out / CHECKPOINT
    saved = load_nets(ckpt, nets) if ckpt.exists() else {"stages_done": "0", "gan_sha256": entry.sha256}
    if saved.get("gan_sha256") != entry.sha256:
        raise SystemExit(f"{ckpt} was trained on another GAN file than {entry.id}: use a new --out")
    first_stage = int(saved["stages_done"])
    rng = torch.Generator().manual_seed(args.seed * 1_000_003 + first_stage)
    sample_rng = torch.Generator().manual_seed(args.seed)
    targets = gan_samples(generator, extras, args.images, model.image_size, sample_rng)
    prior = model.view_light_prior(opts, extras)
    runs = [
        GAN2ShapeRun(nets, generator, discriminator, target, opts, entry.category, prior, rng,
                     research=research)
        for target in targets
    ]  # fmt: skip
    log = (out / "log.jsonl").open("a")
    started = time.perf_counter()

    def on_step(kind: str, step: int, total: int, loss: float | None, _: Prediction | None) -> None:
        if loss is not None and (step % args.log_every == 0 or step == total):
            row = {"kind": kind, "step": step, "total": total, "loss": loss,
                   "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
            log.write(json.dumps(row) + "\n")
            log.flush()

    try:
        if first_stage == 0:
            runs[0].fit_prior(on_step)
        schedule = Schedule(runs, on_step)
        for stage in range(first_stage, opts.num_stages):
            schedule.run_stage(stage)
            save_nets(ckpt, nets, {"stages_done": str(stage + 1), "gan_sha256": entry.sha256})
            seconds = round(time.perf_counter() - started, 1)
            print(json.dumps({"stage": stage + 1, "seconds": seconds}), flush=True)
    finally:
        log.close()
    return nets.eval(), opts


def export(
    nets: ShapeNets, weights_dir: Path, gan: WeightsEntry, latent_dim: int, opts: Options,
    args: argparse.Namespace,
) -> None:
    """Write the shipped ``pretrain`` file (all five nets) and upsert its manifest entry."""
    target = weights_dir / WEIGHTS_FILE
    save_nets(target, nets, {}, torch.float16)  # half the size; loading converts back to float32
    target.chmod(0o644)  # shipped with the repository: readable by everyone
    schedule = f"{args.stages} stages of {tuple(args.stage0)} then {tuple(args.later)} steps"
    source = (f"joint pretraining here on {args.images} samples of {gan.id} ({schedule}, batch "
              f"{args.batch}, options {args.set or 'fast'}); encoder from {args.encoder or 'scratch'}")
    config: dict[str, object] = {
        "kind": "pretrain", "image_size": nets.size, "latent_dim": latent_dim, "net_width": args.net_width,
        "gan": gan.id, "gan_sha256": gan.sha256, "f1_d": opts.f1_d, "relative_enc": opts.relative_enc,
    }  # fmt: skip
    if args.job_lam_smooth is not None:
        config["lam_smooth"] = args.job_lam_smooth
    register_shipped_file(target, "gan2shape", WEIGHTS_ID, gan.category, source, train_command(args), config)


def train_command(args: argparse.Namespace) -> str:
    """The command that reproduces this file (after ``gan2shape-encoder``, whose encoder it starts from)."""
    parts = ["OMP_NUM_THREADS=1", "python", "-m", "workbench.train", "gan2shape-joint"]
    flags = {"--out": "runs/g2s_joint", "--images": args.images, "--stages": args.stages,
             "--batch": args.batch, "--collect": args.collect, "--prior-iters": args.prior_iters,
             "--net-width": args.net_width, "--f1-d": args.f1_d, "--encoder": args.encoder,
             "--pseudo-pose": args.pseudo_pose, "--seed": args.seed}  # fmt: skip
    for flag, value in flags.items():
        parts += [flag, str(value)]
    parts += ["--stage0", *map(str, args.stage0), "--later", *map(str, args.later)]
    parts += ["--learn-view"] if args.learn_view else []
    parts += ["--set", args.set] if args.set else []
    parts += ["--job-lam-smooth", str(args.job_lam_smooth)] if args.job_lam_smooth is not None else []
    return shlex.join([*parts, "--export"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_gan_run_arguments(parser)
    parser.add_argument("--images", type=int, default=32, help="GAN samples trained on jointly")
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--stage0", type=int, nargs=3, default=(300, 300, 300), help="steps 1/2/3 of stage 0")
    parser.add_argument("--later", type=int, nargs=3, default=(100, 150, 150), help="steps 1/2/3 later")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--net-width", type=int, default=32, help="nf of the depth/albedo/view/light nets")
    parser.add_argument("--learn-view", action="store_true", help="let the view net learn (default: frozen)")
    parser.add_argument("--collect", type=int, default=2, help="projection batches collected per image")
    parser.add_argument("--prior-iters", type=int, default=300)
    parser.add_argument("--f1-d", type=int, default=2, help="mapping layers after the offset")
    parser.add_argument("--encoder", default=ENCODER_ID, help="encoder-only pretrain id ('': none)")
    parser.add_argument("--pseudo-pose", default="sampled", choices=("sampled", "predicted"))
    parser.add_argument("--set", help="JSON object of further GAN2Shape option overrides (e.g. lam_smooth)")
    parser.add_argument("--job-lam-smooth", type=float, help="lam_smooth of the jobs using the export")
    add_run_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    entry, model = load_gan(args)
    nets, opts = train(args, model, entry)
    if args.export:
        export(nets, Path(args.weights_dir), entry, model.generator.config.style_dim, opts, args)
    print(json.dumps({"done": True, "gan": entry.id, "export": bool(args.export)}), flush=True)
