"""The options added to win on limited angles: raw image units, the reweighted-TV prior stage,
the residual generator on an initial image, the support mask, learning-rate decay, iterate
averaging and the uncertainty map."""

import numpy as np
import pytest
import torch
from metrics import ssim

import napari_ganrec as ng
from napari_ganrec.classical import fbp, sirt_iter, tv_iter
from napari_ganrec.ganrec import PRESETS, GANrecSolver, _support_mask, make_config
from napari_ganrec.geometry import Geometry
from napari_ganrec.projector import Projector

RAW = dict(normalize_candidate=False, gan_weight=0.0, l1_weight=0.0, l2_weight=1.0, dropout=0.0,
           channels=8, n_conv=3)


def _setup(sino, angles):
    proj = Projector(Geometry.create(angles, sino.shape[-1]), device="cpu")
    return proj, torch.from_numpy(sino)[None]


def test_prior_stage_without_reweighting_is_the_classical_tv(wedge_data):
    """Same algorithm, same dimensionless weight: the prior stage reproduces tv_iter exactly."""
    sino, angles, _ = wedge_data
    proj, b = _setup(sino, angles)
    cfg = make_config("paper", **RAW, tv_weight=0.1, prior_iterations=40, average_last=0, circle=False)
    solver = GANrecSolver(proj, b, cfg)
    for _ in range(30):
        losses = solver.step()
    assert losses["adv"] == 0.0 and np.isfinite(losses["g_loss"])
    for _, x_tv, _ in tv_iter(proj, b, 30, tv_weight=0.1):
        pass
    mine = solver.image()
    assert torch.allclose(mine, x_tv, atol=1e-4 * float(x_tv.max()))


def test_reweighting_lowers_the_weights_at_edges_only(wedge_data):
    sino, angles, gt = wedge_data
    proj, b = _setup(sino, angles)
    cfg = make_config("default", channels=8, n_conv=3, prior_iterations=60, reweight_every=20)
    solver = GANrecSolver(proj, b, cfg)
    for _ in range(20):
        solver.step()
    w = solver._pd["w"][0, 0]
    assert float(w.max()) <= 1.0 and float(w.min()) < 0.3
    edges = np.hypot(*np.gradient(gt)) > 0.3
    flat = np.hypot(*np.gradient(gt)) < 1e-6
    assert float(w.numpy()[edges].mean()) < float(w.numpy()[flat].mean()) - 0.2


def test_generator_takes_over_from_the_prior_image(wedge_data):
    sino, angles, _ = wedge_data
    proj, b = _setup(sino, angles)
    cfg = make_config("default", channels=8, n_conv=3, prior_iterations=15, average_last=0)
    solver = GANrecSolver(proj, b, cfg)
    for _ in range(15):
        solver.step()
    prior_image = solver.image().clone()
    assert solver._pd is None and solver.init_image is not None
    with torch.no_grad():  # the residual generator starts at exactly 0
        assert torch.allclose(solver.image(solver._candidate()), prior_image, atol=1e-6)
    losses = solver.step()
    assert losses["l1"] > 0 and solver.iteration == 16
    assert torch.allclose(solver.image(), prior_image, atol=0.05 * float(prior_image.max()))


def test_default_beats_fbp_on_the_wedge(wedge_data):
    """(The 256 px comparison with TV and the paper preset is benchmarks/quality.py's job.)"""
    sino, angles, gt = wedge_data
    rec_fbp = ng.reconstruct(sino, angles, method="fbp", device="cpu")
    rec = ng.reconstruct(sino, angles, iterations=300, device="cpu")
    assert ssim(gt, rec) > ssim(gt, rec_fbp) + 0.15
    assert ssim(gt, rec) > 0.85


@pytest.mark.parametrize("init", ["fbp", "sirt", "tv"])
def test_init_makes_the_first_candidate_the_classical_image(wedge_data, init):
    sino, angles, _ = wedge_data
    proj, b = _setup(sino, angles)
    cfg = make_config("paper", **RAW, init=init, init_iterations=20, init_tv_weight=0.05)
    solver = GANrecSolver(proj, b, cfg)
    if init == "fbp":
        ref = fbp(proj, b).clamp(min=0)
    else:
        it = sirt_iter(proj, b, 20) if init == "sirt" else tv_iter(proj, b, 20, tv_weight=0.05)
        for _, ref, _ in it:
            pass
    ref = ref * solver.mask
    assert torch.allclose(solver.image(), ref, atol=1e-4 * float(ref.max()))


def test_support_mask_keeps_the_object_and_drops_empty_rays():
    from napari_ganrec import phantoms

    p = phantoms.porous_particle(48, n_pores=4, n_inclusions=0, seed=1, particle_radius=0.3)
    gt = phantoms.ground_truth(p)
    angles = np.linspace(0, 180, 90, endpoint=False)
    sino = phantoms.simulate_sinogram(p, angles)
    proj, b = _setup(sino, angles)
    support = _support_mask(proj, b / b.max())[0].numpy()
    assert support[gt > 0.05].all()  # never cuts the object
    assert support.mean() < 0.6  # drops most of the empty field (object covers ~28%)
    cfg = make_config("default", channels=8, n_conv=3, support=True, prior_iterations=10)
    solver = GANrecSolver(proj, b, cfg)
    for _ in range(10):
        solver.step()
    assert float(solver.image()[0][torch.from_numpy(support) == 0].abs().max()) == 0.0


def test_lr_decay_and_option_validation(wedge_data):
    sino, angles, _ = wedge_data
    proj, b = _setup(sino, angles)
    cfg = make_config("paper", lr_decay=4.0)
    solver = GANrecSolver(proj, b, cfg)
    for _ in range(4):
        solver.step()
    assert solver.opt_g.param_groups[0]["lr"] == pytest.approx(cfg.lr_g / 2)
    assert solver.opt_d.param_groups[0]["lr"] == pytest.approx(cfg.lr_d / 2)
    with pytest.raises(ValueError, match="init"):
        make_config("paper", init="random")
    with pytest.raises(ValueError, match="normalize_candidate"):
        make_config("paper", init="tv")
    with pytest.raises(ValueError, match="prior_iterations"):
        make_config("paper", prior_iterations=10)
    with pytest.raises(ValueError, match="tv_eps"):
        make_config("default", tv_eps=0.0)
    with pytest.raises(ValueError, match="output"):
        make_config("paper", output="tanh")
    with pytest.raises(ValueError, match="lr_decay"):
        make_config("paper", lr_decay=-1)


def test_presets_paper_unchanged_default_and_noisy_use_the_prior():
    assert PRESETS["paper"].normalize_candidate and PRESETS["paper"].gan_weight == 1.0
    assert PRESETS["paper"].prior_iterations == 0
    for name in ("default", "noisy"):
        cfg = PRESETS[name]
        assert not cfg.normalize_candidate and cfg.prior_iterations > 0 and cfg.reweight_every > 0
    assert PRESETS["noisy"].tv_weight > PRESETS["default"].tv_weight


def test_uncertainty_from_the_api(wedge_data):
    sino, angles, _ = wedge_data
    rec, unc = ng.reconstruct(sino, angles, iterations=40, device="cpu", return_uncertainty=True)
    assert rec.shape == unc.shape == (48, 48) and unc.dtype == np.float32
    assert np.isfinite(unc).all() and unc.min() >= 0 and unc.max() > 0
    # paper preset (no averaging configured): averaging is switched on for the request
    _, unc_p = ng.reconstruct(sino, angles, iterations=12, device="cpu", preset="paper",
                              return_uncertainty=True)
    assert unc_p.shape == (48, 48) and unc_p.max() > 0
    steps = [s for s in ng.iter_reconstruct(sino, angles, iterations=20, preview_every=10,
                                            device="cpu") if s.image is not None]
    assert all(s.uncertainty is not None and s.uncertainty.shape == (48, 48) for s in steps)
    stack = np.stack([sino, sino])
    rec2, unc2 = ng.reconstruct(stack, angles, iterations=20, device="cpu", return_uncertainty=True)
    assert rec2.shape == unc2.shape == (2, 48, 48)
    with pytest.raises(ValueError, match="return_uncertainty"):
        ng.reconstruct(sino, angles, method="tv", iterations=5, return_uncertainty=True)


def test_prior_stage_warm_start_carries_the_image(wedge_data):
    sino, angles, _ = wedge_data
    proj, b = _setup(sino, angles)
    cfg = make_config("default", channels=8, n_conv=3)
    first = GANrecSolver(proj, b, cfg)
    for _ in range(100):
        first.step()
    state = first.state()
    assert state.prior is not None and state.prior["x"].shape == (1, 48, 48)
    cold = GANrecSolver(proj, b, cfg).step()
    warm = GANrecSolver(proj, b, cfg, warm_start=state).step()
    assert warm["l1"] < 0.3 * cold["l1"]
    # a state from one slice warm-starts a batch of two
    batch = GANrecSolver(proj, torch.cat([b, b]), cfg, warm_start=state)
    assert batch.step()["l1"] < 0.3 * cold["l1"]
