"""Reweighted TV as a method of its own, and the chain that hands its image to GANrec."""

import numpy as np
import pytest
import torch

import napari_ganrec as ng
from napari_ganrec.geometry import Geometry
from napari_ganrec.methods import iter_chain, make_plan
from napari_ganrec.methods.ganrec import GANrec, GANrecConfig
from napari_ganrec.methods.rwtv import RWTV, RWTVConfig
from napari_ganrec.methods.tv import TV, TVConfig
from napari_ganrec.projector import Projector


def _setup(sino, angles):
    proj = Projector(Geometry.create(angles, sino.shape[-1]), device="cpu")
    return proj, torch.from_numpy(sino)[None]


def test_without_reweighting_it_is_the_classical_tv(wedge_data):
    """Same algorithm, same dimensionless weight: reweighted TV with no reweighting reproduces TV."""
    sino, angles, _ = wedge_data
    proj, b = _setup(sino, angles)
    rw = RWTV(proj, b, RWTVConfig(tv_weight=0.1, reweight_every=0, average_last=0, circle=False))
    tv = TV(proj, b, TVConfig(tv_weight=0.1))
    for _ in range(30):
        losses = rw.step()
        tv.step()
    assert set(losses) == {"misfit", "abs_misfit"} and np.isfinite(losses["misfit"])
    assert torch.allclose(rw.x, tv.x, atol=1e-4 * float(tv.x.max()))


def test_reweighting_lowers_the_weights_at_edges_only(wedge_data):
    sino, angles, gt = wedge_data
    proj, b = _setup(sino, angles)
    solver = RWTV(proj, b, RWTVConfig(reweight_every=20))
    for _ in range(20):
        solver.step()
    w = solver.w[0, 0]
    assert float(w.max()) <= 1.0 and float(w.min()) < 0.3
    edges = np.hypot(*np.gradient(gt)) > 0.3
    flat = np.hypot(*np.gradient(gt)) < 1e-6
    assert float(w.numpy()[edges].mean()) < float(w.numpy()[flat].mean()) - 0.2


def test_ganrec_takes_over_from_the_reweighted_tv_image(wedge_data):
    """In "rwtv+ganrec" GANrec starts from reweighted TV's image: its residual generator starts at
    0, so its first candidate is that image (up to the least-squares scale)."""
    sino, angles, _ = wedge_data
    proj, b = _setup(sino, angles)
    rw = RWTV(proj, b, RWTVConfig(average_last=0))
    for _ in range(15):
        rw.step()
    prior = rw.image().clone()
    gan = GANrec(proj, b, GANrecConfig(channels=8, n_conv=3, dropout=0.0), x0=prior)
    start = gan.image()
    assert torch.allclose(start / start.max(), prior / prior.max(), atol=1e-4)
    losses = gan.step()
    assert losses["l1"] > 0 and losses["d_loss"] > 0 and gan.iteration == 1
    after = gan.image()
    assert torch.linalg.vector_norm(after - prior) < 0.1 * torch.linalg.vector_norm(prior)
    # the chain does the same handing over
    records = list(iter_chain(make_plan("rwtv+ganrec", {"rwtv": 15, "ganrec": 1},
                                        {"rwtv": {"average_last": 0}, "ganrec": {"channels": 8, "n_conv": 3,
                                                                                 "dropout": 0.0}}), proj, b))
    assert torch.allclose(records[14].image, prior)


def test_rwtv_beats_fbp_on_the_wedge(wedge_data):
    from metrics import ssim

    sino, angles, gt = wedge_data
    rec = ng.reconstruct(sino, angles, method="rwtv", iterations=150, device="cpu")
    fbp = ng.reconstruct(sino, angles, method="fbp", device="cpu")
    assert ssim(gt, rec) > ssim(gt, fbp) + 0.2


def test_uncertainty_from_the_api(wedge_data):
    sino, angles, _ = wedge_data
    rec, unc = ng.reconstruct(sino, angles, method="rwtv", iterations=40, device="cpu",
                              return_uncertainty=True)
    assert rec.shape == unc.shape == (48, 48) and unc.dtype == np.float32
    assert np.isfinite(unc).all() and unc.min() >= 0 and unc.max() > 0
    # GANrec (no averaging configured): averaging is switched on for the request
    _, unc_g = ng.reconstruct(sino, angles, method="ganrec", iterations=12, device="cpu",
                              channels=8, n_conv=3, return_uncertainty=True)
    assert unc_g.shape == (48, 48) and unc_g.max() > 0
    steps = [s for s in ng.iter_reconstruct(sino, angles, method="rwtv", iterations=20, preview_every=10,
                                            device="cpu") if s.image is not None]
    assert all(s.uncertainty is not None and s.uncertainty.shape == (48, 48) for s in steps)
    stack = np.stack([sino, sino])
    rec2, unc2 = ng.reconstruct(stack, angles, method="rwtv", iterations=20, device="cpu",
                                return_uncertainty=True)
    assert rec2.shape == unc2.shape == (2, 48, 48)
    with pytest.raises(ValueError, match="return_uncertainty"):
        ng.reconstruct(sino, angles, method="tv", iterations=5, return_uncertainty=True)
