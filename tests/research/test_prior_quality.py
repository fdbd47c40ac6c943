"""The prior-quality measurement (coverage by latent fits, fidelity in a fixed feature space) runs
end to end on tiny inputs, and its distances behave: zero for identical sets, larger when shifted."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from tests.meshinversion.helpers import small_generator
from workbench.data.map_cache import MapCache
from workbench.experiments import prior_quality as pq
from workbench.train.meshinversion_gan import TrainSettings


def random_cache(count: int, seed: int, first_seed: int = 0) -> MapCache:
    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 256, (count, 3, 256, 128), dtype=np.uint8)
    normal = (rng.normal(size=(count, 32, 16)) * 0.1).astype(np.float16)
    return MapCache(np.arange(first_seed, first_seed + count, dtype=np.int64), tex, normal)


def test_frechet_and_precision_recall_are_sane() -> None:
    a = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
    assert abs(pq.frechet_distance(a, a)) < 1e-8
    assert pq.frechet_distance(a, a + 3) > 30
    assert pq.knn_precision_recall(a, a) == (1.0, 1.0)
    precision, recall = pq.knn_precision_recall(a, a + 10)
    assert precision == 0.0 and recall == 0.0


def test_latent_fit_improves_on_its_start() -> None:
    g = small_generator().eval().requires_grad_(False)
    ref = pq.fit_reference(random_cache(6, 0))
    with torch.no_grad():
        targets = pq.generate(g, torch.randn(4, 64, generator=torch.Generator().manual_seed(1)))
    stats = pq.sample_pass(g, targets, ref, count=8, seed=0)
    assert stats.features.shape == (8, 6) and stats.best_z.shape == (4, 64)
    with torch.no_grad():
        start = pq.fit_loss(pq.generate(g, stats.best_z), targets, ref)
    z, trace = pq.optimise_latents(g, stats.best_z, targets, ref, steps=3, lr=0.05, log_every=1)
    with torch.no_grad():
        end = pq.fit_loss(pq.generate(g, z), targets, ref)
    assert len(trace) == 3 and (end <= start).all() and end.mean() < start.mean()


def test_cli_writes_numbers_and_figures(tmp_path: Path) -> None:
    g = small_generator()
    weights = tmp_path / "checkpoint.pt"
    settings = asdict(TrainSettings(g_width=1 / 16))
    torch.save({"settings": settings, "step": 7, "g_ema": g.state_dict()}, weights)
    caches = {"train": random_cache(6, 0), "heldout": random_cache(6, 1, first_seed=900_000)}
    for name, cache in caches.items():
        np.savez(tmp_path / f"{name}.npz", seeds=cache.seeds, texture_half=cache.texture_half,
                 normal_half=cache.normal_half)
    out = tmp_path / "pq.json"
    args = [str(weights), "--train-cache", str(tmp_path / "train.npz"), "--heldout-cache",
            str(tmp_path / "heldout.npz"), "--heldout", "6", "--coverage", "4", "--samples", "8", "--steps",
            "3", "--json", str(out), "--figure", str(tmp_path / "curve.png"), "--fits-figure",
            str(tmp_path / "fits.png"), "--latents", str(tmp_path)]
    pq.main(args)
    results = json.loads(out.read_text())
    run = results["checkpoints"]["7"]
    assert set(run["coverage"]) >= {"fit", "best_start", "mean_output"}
    assert np.isfinite(run["fidelity"]["frechet"]) and 0 <= run["fidelity"]["recall"] <= 1
    assert results["reference"]["nearest_training"]["texture_psnr"] > 0
    assert (tmp_path / "curve.png").stat().st_size > 0 and (tmp_path / "fits.png").stat().st_size > 0
    (tmp_path / "fits.png").unlink()
    pq.main([*args, "--fits-only"])
    assert (tmp_path / "fits.png").stat().st_size > 0
