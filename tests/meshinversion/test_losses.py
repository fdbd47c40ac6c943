"""Chamfer losses against brute force (values and gradients, padded sets, chunking), the focal
cost, the priors and the VGG19 layout."""

from __future__ import annotations

import pytest
import torch

from backend.methods.meshinversion import losses
from backend.methods.meshinversion.template import sphere_template
from backend.methods.meshinversion.vgg import VGG19Relu31, vgg_state_from_torchvision
from backend.render.topology import build_edge_topology


def brute_one_sided(a, a_valid, b, b_valid, a_feat=None, b_feat=None):
    """Reference: explicit per-image loops, full cost matrix, plain min."""
    out = []
    for i in range(a.shape[0]):
        pa, pb = a[i][a_valid[i]], b[i][b_valid[i]]
        cost = (pa[:, None] - pb[None]).square().sum(-1)
        if a_feat is not None:
            fa, fb = a_feat[i][a_valid[i]], b_feat[i][b_valid[i]]
            cost = (1 + torch.relu(cost - 0.32**2)) * ((fa[:, None] - fb[None]).square().sum(-1) + 1)
        out.append(cost.min(dim=1).values.mean())
    return torch.stack(out)


@pytest.fixture
def point_sets():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 40, 2, generator=g) * 2 - 1
    b = torch.rand(3, 55, 2, generator=g) * 2 - 1
    a_valid = torch.rand(3, 40, generator=g) > 0.3
    b_valid = torch.rand(3, 55, generator=g) > 0.3
    fa, fb = torch.randn(3, 40, 5, generator=g), torch.randn(3, 55, 5, generator=g)
    return a, a_valid, b, b_valid, fa, fb


@pytest.mark.parametrize("chunk", [1 << 22, 7])
def test_chamfer_matches_brute_force_in_value_and_gradient(point_sets, monkeypatch, chunk: int) -> None:
    monkeypatch.setattr(losses, "CHUNK_ELEMENTS", chunk)  # 7 forces one row per chunk
    a, a_valid, b, b_valid, fa, fb = point_sets
    for feats in ((None, None), (fa, fb)):
        x = a.clone().requires_grad_()
        ours = losses.one_sided_chamfer(x, a_valid, b, b_valid, *feats)
        ours.sum().backward()
        y = a.clone().requires_grad_()
        ref = brute_one_sided(y, a_valid, b, b_valid, *feats)
        ref.sum().backward()
        assert torch.allclose(ours, ref, atol=1e-5)
        assert torch.allclose(x.grad, y.grad, atol=1e-5)


def test_two_sided_losses_and_empty_sets(point_sets) -> None:
    a, a_valid, b, b_valid, fa, fb = point_sets
    mask = losses.chamfer_mask_loss(a, b, b_valid)
    every = torch.ones_like(a_valid)
    assert torch.allclose(mask, brute_one_sided(a, every, b, b_valid) + brute_one_sided(b, b_valid, a, every))
    feature = losses.feature_chamfer_loss(a, fa, a_valid, b, fb, b_valid)
    expected = 0.5 * (
        brute_one_sided(a, a_valid, b, b_valid, fa, fb) + brute_one_sided(b, b_valid, a, a_valid, fb, fa)
    )
    assert torch.allclose(feature, expected, atol=1e-5)
    empty = torch.zeros_like(b_valid)
    assert losses.one_sided_chamfer(a, a_valid, b, empty).tolist() == [0.0, 0.0, 0.0]


def test_focal_term_is_flat_within_the_radius() -> None:
    d = torch.tensor([0.0, 0.1, 0.1024, 0.2, 1.0])
    assert losses.focal_position_term(d).tolist() == pytest.approx([1, 1, 1, 1.0976, 1.8976], abs=1e-6)


def test_mask_points_are_pixel_centres() -> None:
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    mask[0, 0, 3] = True
    xy, valid = losses.mask_points(mask)
    assert xy[0, valid[0]].tolist() == [[0.75, 0.5]]  # top-right pixel: x = (2*3+1-4)/4, y = (2-0-1)/2


def test_subsample_picks_valid_entries_deterministically() -> None:
    valid = torch.zeros(2, 100, dtype=torch.bool)
    valid[0, ::3] = True
    valid[1, :5] = True
    index, ok = losses.subsample(valid, 10, torch.Generator().manual_seed(1))
    again, _ = losses.subsample(valid, 10, torch.Generator().manual_seed(1))
    assert torch.equal(index, again)
    assert ok[0].all() and valid[0, index[0]].all()
    assert ok[1].sum() == 5 and valid[1, index[1][ok[1]]].all()


def test_priors() -> None:
    z = torch.tensor([[1.0, -1.0, 2.0, 0.0]])
    assert losses.latent_loss(z).item() == pytest.approx((1 + 1 + 4) / 4 / 2)
    t = sphere_template(16)
    v = t.vertices[None] * torch.tensor([1.0, 0.5, 2.0])
    edge_faces = build_edge_topology(t.faces).edge_faces
    normals = losses.face_normals(v, t.faces)[0]
    reference = sum(
        (torch.dot(normals[f0], normals[f1]) - 1) ** 2 for f0, f1 in edge_faces.tolist() if f1 >= 0
    )
    assert losses.flat_loss(v, t.faces, edge_faces).item() == pytest.approx(float(reference), rel=1e-4)
    lap = losses.laplacian_loss(v, t.edges)
    assert torch.allclose(losses.laplacian_loss(v + 3.0, t.edges), lap, atol=1e-6)
    assert torch.allclose(losses.laplacian_loss(2 * v, t.edges), 4 * lap, rtol=1e-5)
    assert lap.item() > 0


def test_vgg_loads_torchvision_layout_and_rejects_others() -> None:
    g = torch.Generator().manual_seed(0)
    net = VGG19Relu31()
    fake = {
        f"features.{i}.{p}": torch.randn(t.shape, generator=g)
        for i in (0, 2, 5, 7, 10)
        for p, t in (("weight", net.features[i].weight), ("bias", net.features[i].bias))
    }
    fake.update({"features.34.weight": torch.zeros(512, 512, 3, 3), "classifier.0.weight": torch.zeros(4, 4)})
    net.load_state_dict(vgg_state_from_torchvision(fake), strict=True)
    features = net(torch.zeros(1, 3, 32, 32), torch.ones(1, 1, 32, 32))
    assert features.shape == (1, 256, 8, 8)
    vgg16 = {k: v for k, v in fake.items() if k != "features.34.weight"}
    with pytest.raises(ValueError, match="not VGG19"):
        vgg_state_from_torchvision(vgg16)
    with pytest.raises(KeyError, match=r"features\.10\.bias"):
        vgg_state_from_torchvision({k: v for k, v in fake.items() if k != "features.10.bias"})
