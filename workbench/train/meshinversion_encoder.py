"""Train MeshInversion's start encoder on a generator's own renders (``meshinversion-encoder``).

Every step draws z (and labels, for a conditional generator), a camera over the whole azimuth
circle and the photos' elevations, and a light like the procedural photos' (ambient + Lambertian
from above, random strength); the shaded render is framed exactly as ``crop_to_object`` frames a
photo (the object's box plus a margin around ``crop_margin``, jittered, and a small offset, as a
real mask's errors shift it). The encoder (``backend.methods.meshinversion.encoder``) regresses z
and the camera: (cos, sin) of the azimuth, the elevation, log scale and translation. Works for any
MeshInversion generator in the store, the shipped demo one or an imported official checkpoint.

With ``--cache`` (the generator's training maps) a share of each batch (``--real-share``) renders
training cars' true maps instead: their sharp paint, decals and lights are what photos show and the
generator's blurrier textures do not, and an encoder trained on samples alone confuses front and
back more often on photos than on samples. Those rows have no z, so their z head learns only through
the shape loss (``--shape-weight``): the squared distance between the vertices the generator makes
from the predicted z and the row's true vertices. Regressing z alone leaves the z head near the
latent mean (many z make nearly the same car); the shape loss asks for what the inversion needs, a
z whose 3D shape is the photographed car's.

Resumable (``training_state.train_steps``: ``checkpoint.safetensors`` in ``--out``), logged to
``log.jsonl``. ``--export`` registers the encoder with an entry tied to the generator's id and
sha256, where the generator is: the shipped demo generator's in ``weights/`` (with its manifest
entry), a user-imported one's in the user weights folder under a new id (``<generator>-encoder`` or
``--export-id``), so training for an imported checkpoint never touches the shipped files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from backend.methods.meshinversion.camera_search import WeakPerspective, view_quaternion
from backend.methods.meshinversion.encoder import EncoderConfig, PoseLatentEncoder, encoder_input
from backend.methods.meshinversion.mesh_gan import MeshGAN, pad_texture
from backend.models import auxiliary_weights, build_model, default_entry, load_model
from backend.render.pipeline import render_mesh
from backend.render.shading import DirectionalLight
from backend.weights import Registry, WeightsEntry
from workbench.data.map_cache import TRAINING_CARS, MapCache, build_cache, load_cache
from workbench.data.render_sample import light_draws
from workbench.train.shipped_weights import register_shipped_file
from workbench.train.training_state import add_run_arguments, train_steps

WEIGHTS_FILE = "meshinversion_demo_car_encoder.safetensors"
WEIGHTS_ID = "meshinversion-demo-car-encoder"
RENDER_SIZE = 128
ELEVATION_DEG = (-5.0, 40.0)
"""A little wider than the procedural photos' 0-35 degrees."""
MARGIN = (0.03, 0.09)
"""Crop margins drawn around ``crop_to_object``'s 0.05."""
OFFSET_STD = 0.02
"""NDC std of the object's offset in its crop (a mask's errors move the box)."""
HELD_OUT_SEED = 424_242
TRAIN_COMMAND = " && ".join(
    "OMP_NUM_THREADS=1 python -m workbench.train meshinversion-encoder --out runs/mi_encoder " + stage
    for stage in (
        "--steps 4000",
        "--steps 8000 --cache runs/mi_data/cars1536.npz --real-share 0.5",
        "--steps 10000 --lr 5e-5 --cache runs/mi_data/cars1536.npz --real-share 0.5",
        "--steps 14000 --lr 1e-4 --cache runs/mi_data/cars1536.npz --real-share 0.5 --shape-weight 1000",
        "--steps 17000 --lr 3e-5 --cache runs/mi_data/cars1536.npz --real-share 0.5 --shape-weight 1000 "
        "--export",
    )
)
"""Samples only, then half true training cars, then a lower learning rate (which more than halved
the photos' pose misses), then the shape loss (which made the guessed z worth starting from):
``benchmarks/MESHINVERSION.md``."""


def draw_cameras(vertices: torch.Tensor, rng: torch.Generator) -> tuple[WeakPerspective, torch.Tensor]:
    """Cameras that frame each mesh like a photo's crop, and their (B, 6) regression targets."""
    batch, device = vertices.shape[0], vertices.device
    u = torch.rand(batch, 4, generator=rng).to(device)
    azimuth = 2 * math.pi * u[:, 0]
    low, high = (math.radians(e) for e in ELEVATION_DEG)
    elevation = low + (high - low) * u[:, 1]
    quaternion = view_quaternion(azimuth, elevation)
    ones = torch.ones(batch, device=device)
    unit = WeakPerspective(quaternion, ones, torch.zeros(batch, 2, device=device)).camera().to_view(vertices)
    low_xy, high_xy = unit[..., :2].amin(1), unit[..., :2].amax(1)
    margin = MARGIN[0] + (MARGIN[1] - MARGIN[0]) * u[:, 2]
    scale = 2 / ((high_xy - low_xy).amax(1) * (1 + 2 * margin))
    offset = torch.randn(batch, 2, generator=rng).to(device) * OFFSET_STD
    translation = -scale[:, None] * (low_xy + high_xy) / 2 + offset
    targets = torch.stack(
        [azimuth.cos(), azimuth.sin(), elevation, scale.log(), translation[:, 0], translation[:, 1]], 1
    )
    return WeakPerspective(quaternion, scale, translation), targets


def draw_lights(batch: int, rng: torch.Generator, device: torch.device) -> DirectionalLight:
    """The procedural photos' light (``render_sample.light_draws``)."""
    draws = light_draws(torch.rand(batch, 5, generator=rng).to(device))
    return DirectionalLight(draws["light_direction"], draws["light_ambient"], draws["light_diffuse"])


@dataclass
class EncoderBatch:
    """Encoder ``inputs`` (B, 4, 128, 128) and each row's truth: ``z`` (B, latent; 0 where ``has_z`` is
    False), camera ``targets`` (B, 6), ``vertices`` (B, V, 3) and a conditional generator's ``labels``
    (drawn for every row; the true cars' are arbitrary, so their shape loss assumes a drawn class)."""

    inputs: torch.Tensor
    z: torch.Tensor
    targets: torch.Tensor
    has_z: torch.Tensor
    vertices: torch.Tensor
    labels: torch.Tensor | None


@torch.no_grad()
def training_batch(
    model: MeshGAN, batch: int, rng: torch.Generator, cars: MapCache | None = None, real: int = 0
) -> EncoderBatch:
    """A batch of framed, lit renders with their truth. The last ``real`` rows render training cars
    of ``cars`` (they have no z)."""
    config, device = model.config, model.device
    z = torch.randn(batch, config.latent_dim, generator=rng).to(device)
    labels = None
    if config.n_classes:
        columns = [torch.randint(0, config.n_classes, (batch,), generator=rng)]
        if config.n_colors:
            columns.append(torch.randint(0, config.n_colors, (batch,), generator=rng))
        labels = torch.stack(columns, 1).to(device)
    samples = batch - real
    texture, vertices = model.generate(z[:samples], None if labels is None else labels[:samples])
    has_z = torch.arange(batch, device=device) < samples
    if real:
        assert cars is not None
        rows = torch.randint(0, len(cars), (real,), generator=rng)
        true_texture, displacement = cars.full_batch(rows, device)
        texture = torch.cat([texture, true_texture])
        vertices = torch.cat([vertices, model.displace(displacement)])
        z = torch.where(has_z[:, None], z, torch.zeros_like(z))
    camera, targets = draw_cameras(vertices, rng)
    out = render_mesh(
        vertices, model.faces, camera.camera(), RENDER_SIZE,
        texture=pad_texture(texture, config.symmetric), uvs=model.uvs_for_rendering,
        light=draw_lights(batch, rng, device), cull_backfaces=True, antialiased=False,
    )  # fmt: skip
    rgb = out.rgb.clamp(-1, 1).permute(0, 3, 1, 2)
    return EncoderBatch(encoder_input(rgb, out.mask), z, targets, has_z, vertices, labels)


def shape_error(model: MeshGAN, z: torch.Tensor, batch: EncoderBatch) -> torch.Tensor:
    """(B,) mean squared vertex distance between the generator's shape for ``z`` and the truth."""
    return (model.shape(z, batch.labels) - batch.vertices).square().sum(-1).mean(-1)


def regression_loss(
    encoder: PoseLatentEncoder, batch: EncoderBatch, model: MeshGAN, shape_weight: float = 0.0
) -> dict[str, torch.Tensor]:
    """Mean squared errors of z (rows that have one) and of each camera target, and with
    ``shape_weight`` the weighted ``shape_error`` of the predicted z on every row."""
    z_pred, camera = encoder(batch.inputs)
    targets = batch.targets
    terms = {
        "z": (z_pred - batch.z)[batch.has_z].square().mean(),
        "azimuth": (camera[:, :2] - targets[:, :2]).square().sum(1).mean(),
        "elevation": (camera[:, 2] - targets[:, 2]).square().mean(),
        "scale": (camera[:, 3] - targets[:, 3]).square().mean(),
        "translation": (camera[:, 4:] - targets[:, 4:]).square().sum(1).mean(),
    }
    if shape_weight > 0:
        terms["shape"] = shape_weight * shape_error(model, z_pred, batch).mean()
    return terms


@torch.no_grad()
def held_out_errors(encoder: PoseLatentEncoder, model: MeshGAN, count: int = 64) -> dict[str, float]:
    """On a fixed batch: median azimuth error (degrees), share within 20 degrees, z error / variance
    and the RMS vertex distance of the predicted z's shape."""
    batch = training_batch(model, count, torch.Generator().manual_seed(HELD_OUT_SEED))
    guess = encoder.eval().guess(batch.inputs)
    encoder.train()
    truth = torch.atan2(batch.targets[:, 1], batch.targets[:, 0])
    error = torch.rad2deg((guess.azimuth - truth + math.pi) % (2 * math.pi) - math.pi).abs()
    return {
        "azimuth_median_deg": float(error.median()),
        "within_20_deg": float((error <= 20).float().mean()),
        "z_residual": float((guess.z - batch.z).square().mean() / batch.z.square().mean()),
        "shape_rmse": float(shape_error(model, guess.z, batch).mean().sqrt()),
    }


def train(args: argparse.Namespace, model: MeshGAN, cars: MapCache | None = None) -> PoseLatentEncoder:
    """Train (or resume) to ``args.steps``; ``cars`` supplies the ``args.real_share`` rows."""
    real = round(args.batch * args.real_share) if cars is not None else 0
    torch.set_num_threads(args.threads)
    model.generator.requires_grad_(False)  # the shape loss trains the encoder's z, never the generator
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        encoder = PoseLatentEncoder(EncoderConfig(model.config.latent_dim, args.width))
    opt = torch.optim.Adam(encoder.parameters(), lr=args.lr)
    train_steps(
        out, encoder, opt, args,
        lambda rng: regression_loss(
            encoder, training_batch(model, args.batch, rng, cars, real), model, args.shape_weight
        ),
        lambda: held_out_errors(encoder, model),
    )
    return encoder.eval()


def provenance(
    encoder: PoseLatentEncoder, generator: WeightsEntry, steps: int, errors: dict[str, float],
    cars: MapCache | None,
) -> tuple[str, dict[str, object]]:
    """The entry's source line and config (which ties the encoder to its generator's sha256)."""
    renders = f"{generator.id}" + (f" and of {len(cars)} training cars' true maps" if cars else "")
    source = (f"trained here on renders of {renders} ({steps} steps; held-out median azimuth error "
              f"{errors['azimuth_median_deg']:.1f} deg, {errors['within_20_deg']:.0%} within 20 deg)")
    config = {**encoder.config.to_dict(), "generator": generator.id, "generator_sha256": generator.sha256}
    return source, config


def export(
    encoder: PoseLatentEncoder, weights_dir: Path, generator: WeightsEntry, steps: int,
    errors: dict[str, float], cars: MapCache | None = None,
) -> dict[str, object]:
    """Write the demo generator's encoder next to the shipped weights and upsert its manifest entry."""
    target = weights_dir / WEIGHTS_FILE
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, tmp)
    tmp.chmod(0o644)  # shipped with the repository: readable by everyone
    os.replace(tmp, target)
    source, config = provenance(encoder, generator, steps, errors, cars)
    return register_shipped_file(target, "meshinversion", WEIGHTS_ID, generator.category, source,
                                 TRAIN_COMMAND, config)  # fmt: skip


def export_user(
    encoder: PoseLatentEncoder, registry: Registry, weights_id: str, generator: WeightsEntry, steps: int,
    errors: dict[str, float], cars: MapCache | None = None,
) -> WeightsEntry:
    """Register a user generator's encoder in the user weights folder under the new ``weights_id``,
    checked by building it as the backend will (``build_model``), like an imported checkpoint."""
    source, config = provenance(encoder, generator, steps, errors, cars)
    auxiliary = auxiliary_weights(registry, "meshinversion")
    return registry.add_user_weights(
        source, "as the generator it was trained for", weights_id, "meshinversion", generator.category,
        encoder.state_dict(), config, lambda entry, tensors: build_model(entry, tensors, "cpu", auxiliary),
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="run folder (checkpoint, log); resumes if present")
    parser.add_argument("--generator", help="MeshInversion generator weights id (default: the method's)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--width", type=int, default=EncoderConfig().width, help="first block's channels")
    parser.add_argument("--cache", help="map cache of training cars (workbench.train meshinversion's "
                        "--cache; built with --cars if missing) whose true maps render part of each batch")
    parser.add_argument("--cars", type=int, default=TRAINING_CARS,
                        help="training cars (seeds 0..N-1) of a --cache that does not exist yet, built first")
    parser.add_argument("--real-share", type=float, default=0.5,
                        help="share of each batch rendered from --cache's cars (camera targets only)")
    parser.add_argument("--shape-weight", type=float, default=0.0,
                        help="weight of the predicted z's squared vertex error (0: z and camera only)")
    parser.add_argument("--export-id", help="id of the exported entry for a user-imported generator "
                        "(default: <generator id>-encoder)")
    add_run_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.real_share < 1:
        parser.error("--real-share must be in [0, 1): rows with a z are needed for the z head")
    registry = Registry(shipped_dir=Path(args.weights_dir))
    entry = registry.find(args.generator) if args.generator else default_entry(registry, "meshinversion")
    method = load_model(registry, entry, "cpu")
    if method.model is None:
        raise SystemExit(f"{entry.id} is not a MeshInversion generator")
    user_id = None
    if args.export and entry.origin != "shipped":  # checked before the run, not after it
        user_id = registry.check_new_id(args.export_id or f"{entry.id}-encoder")
    cars = None
    if args.cache:
        cache = Path(args.cache)
        cars = load_cache(cache) if cache.exists() else build_cache(cache, args.cars)
    encoder = train(args, method.model, cars)
    errors = held_out_errors(encoder, method.model)
    print(json.dumps({"steps": args.steps, "generator": entry.id, **errors}), flush=True)
    if user_id is not None:
        export_user(encoder, registry, user_id, entry, args.steps, errors, cars)
    elif args.export:
        export(encoder, Path(args.weights_dir), entry, args.steps, errors, cars)
