"""How good is MeshInversion's demo prior? Coverage and sample fidelity of a generator, in UV space.

Coverage: for each of 64 held-out cars (validation seeds, never trained on) the latent z whose
generated maps are closest to the car's ground-truth texture and displacement map. The start is
the best of the fidelity samples' latents for that car, then ``steps`` Adam steps on all 64 at once.
No rendering: the error is measured directly between UV maps. The fit loss weights each map's
mean squared error by the error of the training set's mean map, so texture and shape count alike.

Fidelity: generator samples against held-out maps in a fixed feature space that no generator
shapes: texture (3 channels) and normal displacement, area-downsampled to 16 x 16, the x >= 0 half
(the maps are mirror-symmetric), the displacement block scaled to the texture block's total
variance, projected on the top principal components of the training maps. There: the Fréchet
distance and k-NN precision and recall (Kynkäänniemi et al. 2019). The same numbers for training
maps against held-out maps are the floor that a perfect generator would reach.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from backend.methods.meshinversion.generator import Generator
from workbench.data.map_cache import MapCache, cache_seeds, load_cache
from workbench.data.uv_grid import half_columns
from workbench.splits import split_seeds

FEATURE_SIZE = 16
PCA_DIMS = 64
NEIGHBOURS = 3
CHUNK = 64
"""Generator batches and map chunks: bounds memory (one chunk of 256 px maps is 50 MB)."""


@dataclass
class Maps:
    """Full UV maps: textures (N, 3, T, T) in [0, 1] and displacement maps (N, 3, 32, 32)."""

    texture: torch.Tensor
    displacement: torch.Tensor


@dataclass
class Reference:
    """Fixed by the data alone: error scales of the fit loss and the feature space."""

    texture_scale: float  # mean squared error of the training mean texture
    displacement_scale: float  # same for the displacement maps (summed over channels per texel)
    feature_mean: torch.Tensor  # (D,) before projection
    displacement_weight: float  # multiplies the displacement block of the features
    basis: torch.Tensor  # (D, PCA_DIMS) principal directions of the training features
    explained: float  # fraction of the training features' variance the basis keeps


def cache_maps(cache: MapCache, rows: range | list[int]) -> Maps:
    """Rows of a map cache as full maps with textures in [0, 1]."""
    tex, disp = cache.full_batch(torch.as_tensor(list(rows)), torch.device("cpu"))
    return Maps((tex + 1) / 2, disp)


def chunks(count: int, size: int = CHUNK) -> list[range]:
    return [range(i, min(i + size, count)) for i in range(0, count, size)]


def build_heldout_cache(path: Path, count: int, split: str = "validation", batch: int = 16) -> MapCache:
    """Maps of the first ``count`` cars of ``split``, stored exactly like the training cache (uint8
    texture halves, float16 normal halves), so held-out and training maps are quantised alike."""
    return cache_seeds(path, split_seeds(split, count), batch)


def raw_features(maps: Maps) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3*16*8) texture and (N, 16*8) normal-displacement features of the x >= 0 halves."""
    half = half_columns(FEATURE_SIZE)
    tex = F.interpolate(maps.texture, size=(FEATURE_SIZE, FEATURE_SIZE), mode="area")[..., half]
    disp = F.interpolate(maps.displacement[:, :1], size=(FEATURE_SIZE, FEATURE_SIZE), mode="area")[..., half]
    return tex.flatten(1).double(), disp.flatten(1).double()


def fit_reference(train: MapCache, count: int | None = None) -> Reference:
    """Error scales and the PCA feature basis from the training maps (``count`` first rows)."""
    n = len(train) if count is None else count
    tex_sum = tex_sq = disp_sum = disp_sq = 0.0
    tex_feats, disp_feats = [], []
    for rows in chunks(n):
        maps = cache_maps(train, rows)
        tex_sum = tex_sum + maps.texture.double().sum(0)
        tex_sq = tex_sq + maps.texture.double().square().sum(0)
        disp_sum = disp_sum + maps.displacement.double().sum(0)
        disp_sq = disp_sq + maps.displacement.double().square().sum(0)
        t, d = raw_features(maps)
        tex_feats.append(t)
        disp_feats.append(d)
    tex_var = tex_sq / n - (tex_sum / n).square()
    disp_var = disp_sq / n - (disp_sum / n).square()
    t, d = torch.cat(tex_feats), torch.cat(disp_feats)
    weight = math.sqrt(float(t.var(0).sum() / d.var(0).sum()))
    feats = torch.cat([t, weight * d], 1)
    mean = feats.mean(0)
    _, s, vh = torch.linalg.svd(feats - mean, full_matrices=False)
    dims = min(PCA_DIMS, vh.shape[0])
    explained = float(s[:dims].square().sum() / s.square().sum())
    scales = float(tex_var.mean()), float(disp_var.sum(0).mean())
    return Reference(*scales, mean, weight, vh[:dims].T, explained)


def features(maps: Maps, ref: Reference) -> torch.Tensor:
    """(N, PCA_DIMS) coordinates of maps in the fixed feature space."""
    t, d = raw_features(maps)
    return (torch.cat([t, ref.displacement_weight * d], 1) - ref.feature_mean) @ ref.basis


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a and b (as FID, without Inception)."""
    a, b = a.double(), b.double()
    mu = (a.mean(0) - b.mean(0)).square().sum()
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(ca)
    root_a = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ cb @ root_a).clamp_min(0).sqrt().sum()
    return float(mu + ca.trace() + cb.trace() - 2 * cross)


def knn_precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = NEIGHBOURS) -> tuple[float, float]:
    """Precision: share of fakes inside some real's k-NN ball; recall: share of reals inside some
    fake's k-NN ball (balls from the other points of the same set)."""

    def radii(x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x, x).kthvalue(k + 1, dim=1).values  # k + 1: the point itself is at 0

    def inside(x: torch.Tensor, centres: torch.Tensor) -> float:
        return float((torch.cdist(x, centres) <= radii(centres)[None]).any(1).double().mean())

    real, fake = real.double(), fake.double()
    return inside(fake, real), inside(real, fake)


def map_errors(pred: Maps, target: Maps) -> tuple[torch.Tensor, torch.Tensor]:
    """Per map: texture mean squared error ([0, 1] colours) and displacement mean squared vector error."""
    tex = (pred.texture - target.texture).square().mean((1, 2, 3))
    disp = (pred.displacement - target.displacement).square().sum(1).mean((1, 2))
    return tex, disp


def fit_loss(pred: Maps, target: Maps, ref: Reference) -> torch.Tensor:
    """Per-map loss: each error relative to the training mean map's error."""
    tex, disp = map_errors(pred, target)
    return tex / ref.texture_scale + disp / ref.displacement_scale


def summary(pred: Maps, target: Maps) -> dict[str, float]:
    """Mean texture PSNR (dB, per map then averaged) and mean displacement RMSE (template units)."""
    tex, disp = map_errors(pred, target)
    return {"texture_psnr": float((-10 * tex.clamp_min(1e-10).log10()).mean()),
            "displacement_rmse": float(disp.sqrt().mean())}


def generate(g: Generator, z: torch.Tensor) -> Maps:
    tex, disp = g(z)
    return Maps((tex + 1) / 2, disp)


def pairwise_loss(pred: Maps, target: Maps, ref: Reference) -> torch.Tensor:
    """(P, T) fit loss of every prediction against every target, via |a|^2 + |b|^2 - 2ab in float64."""

    def sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = a.flatten(1).double(), b.flatten(1).double()
        return (a.square().sum(1)[:, None] + b.square().sum(1)[None] - 2 * a @ b.T).clamp_min(0)

    tex = sq_dist(pred.texture, target.texture) / target.texture[0].numel()
    disp = sq_dist(pred.displacement, target.displacement) / target.displacement[0, 0].numel()
    return tex / ref.texture_scale + disp / ref.displacement_scale


@dataclass
class SampleStats:
    """What one pass over the generator's samples gives: features, best start per target, mean map."""

    features: torch.Tensor  # (S, PCA_DIMS)
    best_z: torch.Tensor  # (T, latent) the sample latent with the lowest fit loss per target
    mean: Maps  # the mean of the samples' maps (the trivial baseline)


@torch.no_grad()
def sample_pass(g: Generator, targets: Maps, ref: Reference, count: int, seed: int) -> SampleStats:
    """Generate ``count`` samples in chunks; keep features, the best latent per target and the mean."""
    z_all = torch.randn(count, g.config.latent_dim, generator=torch.Generator().manual_seed(seed))
    feats, best_loss = [], torch.full((targets.texture.shape[0],), math.inf, dtype=torch.float64)
    best_z = torch.zeros(targets.texture.shape[0], g.config.latent_dim)
    tex_sum = torch.zeros_like(targets.texture[0], dtype=torch.float64)
    disp_sum = torch.zeros_like(targets.displacement[0], dtype=torch.float64)
    for rows in chunks(count):
        z = z_all[rows.start : rows.stop]
        maps = generate(g, z)
        feats.append(features(maps, ref))
        loss, idx = pairwise_loss(maps, targets, ref).min(0)
        better = loss < best_loss
        best_loss = torch.where(better, loss, best_loss)
        best_z[better] = z[idx[better]]
        tex_sum += maps.texture.double().sum(0)
        disp_sum += maps.displacement.double().sum(0)
    mean = Maps((tex_sum / count).float()[None], (disp_sum / count).float()[None])
    return SampleStats(torch.cat(feats), best_z, mean)


def expand(maps: Maps, count: int) -> Maps:
    return Maps(maps.texture.expand(count, -1, -1, -1), maps.displacement.expand(count, -1, -1, -1))


def optimise_latents(g: Generator, z0: torch.Tensor, targets: Maps, ref: Reference, steps: int,
                     lr: float, log_every: int = 10) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Adam on all latents at once (no latent prior: coverage asks what the generator can reach);
    keeps each target's best latent seen. Returns it and the mean metrics every ``log_every`` steps."""
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    best_z, best_loss = z0.clone(), torch.full((z0.shape[0],), math.inf)
    trace = []
    for step in range(steps):
        maps = generate(g, z)
        loss = fit_loss(maps, targets, ref)
        with torch.no_grad():
            better = loss < best_loss
            best_loss = torch.where(better, loss, best_loss)
            best_z[better] = z[better]
            if step % log_every == 0:
                trace.append({"step": step, "loss": float(loss.mean()), **summary(maps, targets)})
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        lr_now = lr * 0.5 * (1 + math.cos(math.pi * (step + 1) / steps))
        for group in opt.param_groups:
            group["lr"] = lr_now
    with torch.no_grad():  # the last update has not been evaluated yet
        loss = fit_loss(generate(g, z), targets, ref)
        best_z[loss < best_loss] = z[loss < best_loss]
    return best_z.detach(), trace


def load_generator(path: Path) -> tuple[Generator, int]:
    """The EMA generator (the exported one) and its training step, from a training checkpoint
    (``.pt``) or an exported ``.safetensors`` file (the demo car's configuration)."""
    from workbench.train.meshinversion_gan import TrainSettings

    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as f:
            step = int((f.metadata() or {}).get("step", -1))
        g = Generator(TrainSettings().generator_config())
        g.load_state_dict(load_file(path), strict=True)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        g = Generator(TrainSettings(**state["settings"]).generator_config())
        g.load_state_dict(state["g_ema"], strict=True)
        step = int(state["step"])
    return g.eval().requires_grad_(False), step



@dataclass
class Protocol:
    """Everything that defines a measurement (stored with the numbers)."""

    heldout_split: str = "validation"
    heldout_count: int = 512
    coverage_count: int = 64
    samples: int = 512
    sample_seed: int = 0
    steps: int = 60
    lr: float = 0.05
    train_rows_floor: int = 512


def reference_numbers(train: MapCache, heldout: MapCache, targets: Maps, ref: Reference,
                      protocol: Protocol) -> dict[str, object]:
    """Generator-free anchors: the training mean map and the nearest training map as fits, and
    training maps against held-out maps in the feature space (the floor)."""
    best_loss = torch.full((targets.texture.shape[0],), math.inf, dtype=torch.float64)
    best_row = torch.zeros(targets.texture.shape[0], dtype=torch.long)
    tex_sum = torch.zeros_like(targets.texture[0], dtype=torch.float64)
    disp_sum = torch.zeros_like(targets.displacement[0], dtype=torch.float64)
    for rows in chunks(len(train)):
        maps = cache_maps(train, rows)
        loss, idx = pairwise_loss(maps, targets, ref).min(0)
        better = loss < best_loss
        best_loss = torch.where(better, loss, best_loss)
        best_row[better] = idx[better] + rows.start
        tex_sum += maps.texture.double().sum(0)
        disp_sum += maps.displacement.double().sum(0)
    count = targets.texture.shape[0]
    mean = Maps((tex_sum / len(train)).float()[None], (disp_sum / len(train)).float()[None])
    real = heldout_features(heldout, protocol, ref)
    floor_rows = min(protocol.train_rows_floor, len(train))
    fake = torch.cat([features(cache_maps(train, r), ref) for r in chunks(floor_rows)])
    precision, recall = knn_precision_recall(real, fake)
    return {
        "training_mean": summary(expand(mean, count), targets),
        "nearest_training": summary(cache_maps(train, best_row.tolist()), targets),
        "floor": {"frechet": frechet_distance(real, fake), "precision": precision, "recall": recall},
        "pca_explained": ref.explained,
        "displacement_weight": ref.displacement_weight,
        "texture_scale": ref.texture_scale,
        "displacement_scale": ref.displacement_scale,
    }


def heldout_features(heldout: MapCache, protocol: Protocol, ref: Reference) -> torch.Tensor:
    return torch.cat([features(cache_maps(heldout, r), ref) for r in chunks(protocol.heldout_count)])


def measure(g: Generator, targets: Maps, real_features: torch.Tensor, ref: Reference,
            protocol: Protocol) -> tuple[dict[str, object], torch.Tensor]:
    """Coverage and fidelity numbers of one generator, and the fitted latents."""
    start = time.time()
    stats = sample_pass(g, targets, ref, protocol.samples, protocol.sample_seed)
    precision, recall = knn_precision_recall(real_features, stats.features)
    fidelity = {"frechet": frechet_distance(real_features, stats.features), "precision": precision,
                "recall": recall}
    count = targets.texture.shape[0]
    with torch.no_grad():
        best_start = summary(generate(g, stats.best_z), targets)
    sample_seconds = time.time() - start
    z, trace = optimise_latents(g, stats.best_z, targets, ref, protocol.steps, protocol.lr)
    with torch.no_grad():
        fit = summary(generate(g, z), targets)
    result = {
        "coverage": {"fit": fit, "best_start": best_start,
                     "mean_output": summary(expand(stats.mean, count), targets),
                     "latent_norm": float(z.norm(dim=1).mean()), "trace": trace},
        "fidelity": fidelity,
        "seconds": {"samples": round(sample_seconds, 1), "total": round(time.time() - start, 1)},
    }
    return result, z


def to_image(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


@torch.no_grad()
def fits_figure(g: Generator, z: torch.Tensor, targets: Maps, count: int = 8, size: int = 128) -> np.ndarray:
    """Rows: held-out textures, fitted textures, held-out and fitted normal displacement (grey, the
    held-out maps' range to black .. white)."""
    fit = generate(g, z[:count])
    lo, hi = targets.displacement[:count, 0].min(), targets.displacement[:count, 0].max()

    def disp(d: torch.Tensor) -> torch.Tensor:
        grey = ((d[:, :1] - lo) / (hi - lo)).expand(-1, 3, -1, -1)
        return F.interpolate(grey, size=(size, size), mode="nearest")

    def tex(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=(size, size), mode="area")

    rows = [tex(targets.texture[:count]), tex(fit.texture), disp(targets.displacement[:count]),
            disp(fit.displacement)]
    grid = torch.cat([torch.cat(list(r), -1) for r in rows], -2)
    return to_image(grid)


COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def line_panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str,
               series: dict[str, list[tuple[float, float]]], levels: dict[str, float],
               log: bool = False) -> None:
    """One line chart in ``box`` (left, top, right, bottom): series as solid lines with dots,
    generator-free levels as dashed horizontal lines, a legend under the title; ``log``: log10 y axis."""
    if log:
        series = {k: [(x, math.log10(y)) for x, y in pts] for k, pts in series.items()}
        levels = {k: math.log10(v) for k, v in levels.items()}
    left, top, right, bottom = box
    x0, y0, x1, y1 = left + 48, top + 18 + 12 * (len(series) + len(levels)), right - 8, bottom - 22
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts] + list(levels.values())
    xmax = max(xs) * 1.04
    lo, hi = min(ys), max(ys)
    lo, hi = lo - 0.06 * (hi - lo or 1), hi + 0.06 * (hi - lo or 1)

    def px(x: float, y: float) -> tuple[float, float]:
        return x0 + (x1 - x0) * x / xmax, y1 - (y1 - y0) * (y - lo) / (hi - lo)

    draw.text((left + 4, top + 2), title, fill="black")
    draw.rectangle((x0, y0, x1, y1), outline="black")
    for i in range(5):
        y = lo + (hi - lo) * i / 4
        draw.text((left + 2, px(0, y)[1] - 5), f"{10**y if log else y:.3g}", fill="black")
        draw.line((x0 - 3, px(0, y)[1], x0, px(0, y)[1]), fill="black")
    step = 5000 if xmax > 12000 else 2000
    for x in range(0, int(xmax) + 1, step):
        draw.text((px(x, lo)[0] - 10, y1 + 4), f"{x // 1000}k", fill="black")
    legend_y = top + 16
    for i, (name, value) in enumerate(levels.items()):
        colour = COLOURS[(len(series) + i) % len(COLOURS)]
        for x in range(int(x0), int(x1), 10):
            draw.line((x, px(0, value)[1], min(x + 5, x1), px(0, value)[1]), fill=colour)
        draw.text((left + 56, legend_y), f"- - {name}", fill=colour)
        legend_y += 12
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        pts = sorted(pts)
        draw.line([px(x, y) for x, y in pts], fill=colour, width=2)
        for x, y in pts:
            cx, cy = px(x, y)
            draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=colour)
        draw.text((left + 56, legend_y), f"-o- {name}", fill=colour)
        legend_y += 12


def curves_figure(results: dict[str, object], panel: tuple[int, int] = (330, 340)) -> Image.Image:
    """Four panels over training steps: texture PSNR, displacement RMSE, Fréchet distance, precision
    and recall, each with its generator-free reference levels."""
    ref = results["reference"]
    runs = sorted(results["checkpoints"].values(), key=lambda r: r["step"])

    def pts(get: object) -> list[tuple[float, float]]:
        return [(r["step"], get(r)) for r in runs]  # type: ignore[operator]

    cov, kinds = "coverage", ("fit", "best_start", "mean_output")
    panels = [
        ("texture PSNR (dB), 64 held-out maps",
         {k: pts(lambda r, k=k: r[cov][k]["texture_psnr"]) for k in kinds},
         {k: ref[k]["texture_psnr"] for k in ("nearest_training", "training_mean")}),
        ("displacement RMSE, 64 held-out maps",
         {k: pts(lambda r, k=k: r[cov][k]["displacement_rmse"]) for k in kinds},
         {k: ref[k]["displacement_rmse"] for k in ("nearest_training", "training_mean")}),
        ("Frechet distance (log axis), 512 samples vs held-out",
         {"generator": pts(lambda r: r["fidelity"]["frechet"])},
         {"training maps": ref["floor"]["frechet"]}, True),
        ("k-NN precision / recall (k=3)",
         {k: pts(lambda r, k=k: r["fidelity"][k]) for k in ("precision", "recall")},
         {f"training {k}": ref["floor"][k] for k in ("precision", "recall")}),
    ]
    image = Image.new("RGB", (panel[0] * len(panels), panel[1]), "white")
    draw = ImageDraw.Draw(image)
    for i, (title, series, levels, *log) in enumerate(panels):
        line_panel(draw, (i * panel[0], 0, (i + 1) * panel[0], panel[1]), title, series, levels, *log)
    return image


def load_results(path: Path, protocol: Protocol) -> dict[str, object]:
    """Earlier results of the same protocol (a different protocol is an error, not a merge)."""
    if not path.exists():
        return {"protocol": asdict(protocol), "checkpoints": {}}
    results = json.loads(path.read_text(encoding="utf-8"))
    if results["protocol"] != asdict(protocol):
        raise SystemExit(f"{path} holds another protocol {results['protocol']}; use another --json")
    return results


def write_json(path: Path, results: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def run(args: argparse.Namespace) -> dict[str, object]:
    """Measure every checkpoint in turn, rewriting the JSON and the figure after each."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    protocol = Protocol(heldout_count=args.heldout, coverage_count=args.coverage, samples=args.samples,
                        steps=args.steps, lr=args.lr)
    out = Path(args.json)
    results = load_results(out, protocol)
    if args.plot_only:
        curves_figure(results).save(args.figure)
        return results
    heldout_path = Path(args.heldout_cache)
    heldout = load_cache(heldout_path) if heldout_path.exists() else build_heldout_cache(
        heldout_path, protocol.heldout_count, protocol.heldout_split)
    wanted = split_seeds(protocol.heldout_split, protocol.heldout_count)
    if heldout.seeds[: len(wanted)].tolist() != wanted:
        raise SystemExit(f"{heldout_path} is not the first {len(wanted)} {protocol.heldout_split} cars")
    train = load_cache(Path(args.train_cache))
    start = time.time()
    ref = fit_reference(train)
    targets = cache_maps(heldout, range(protocol.coverage_count))
    if "reference" not in results and not args.fits_only:
        results["reference"] = reference_numbers(train, heldout, targets, ref, protocol)
    real = heldout_features(heldout, protocol, ref)
    print(f"reference: {time.time() - start:.0f} s", flush=True)
    latents = Path(args.latents)
    latents.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(args.checkpoints):
        g, step = load_generator(Path(path))
        if args.fits_only:
            z = torch.load(latents / f"z_{step}.pt")
            Image.fromarray(fits_figure(g, z, targets)).save(args.fits_figure)
            continue
        numbers, z = measure(g, targets, real, ref, protocol)
        torch.save(z, latents / f"z_{step}.pt")
        results["checkpoints"][str(step)] = {"step": step, "source": path, **numbers}
        write_json(out, results)
        if args.figure:
            curves_figure(results).save(args.figure)
        if args.fits_figure and i == len(args.checkpoints) - 1:
            Image.fromarray(fits_figure(g, z, targets)).save(args.fits_figure)
        cov, fid = numbers["coverage"], numbers["fidelity"]
        print(f"step {step}: fit {cov['fit']}, start {cov['best_start']}, fidelity {fid}, "
              f"{numbers['seconds']['total']} s", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", help="training checkpoints (.pt) or exported .safetensors")
    parser.add_argument("--train-cache", default="runs/mi_data/cars1536.npz", help="the training map cache")
    parser.add_argument("--heldout-cache", default="runs/prior_quality/validation512.npz",
                        help="held-out map cache, built if missing")
    parser.add_argument("--heldout", type=int, default=512, help="held-out maps for fidelity")
    parser.add_argument("--coverage", type=int, default=64, help="held-out maps to fit (the first ones)")
    parser.add_argument("--samples", type=int, default=512, help="generator samples")
    parser.add_argument("--steps", type=int, default=60, help="Adam steps of the latent fit")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (cosine decay)")
    parser.add_argument("--json", default="benchmarks/prior_quality.json")
    parser.add_argument("--figure", default="benchmarks/figures/mi_prior_quality.png")
    parser.add_argument("--fits-figure", default="", help="held-out maps vs fits of the last checkpoint")
    parser.add_argument("--plot-only", action="store_true", help="redraw --figure from --json")
    parser.add_argument("--latents", default="runs/prior_quality", help="folder for the fitted latents")
    parser.add_argument("--fits-only", action="store_true",
                        help="redraw --fits-figure from the fitted latents saved by an earlier run")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
