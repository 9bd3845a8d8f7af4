import math
import threading
import weakref

import numpy as np
import pytest
import torch
from metrics import ssim

import napari_ganrec as ng
from napari_ganrec.geometry import Geometry
from napari_ganrec.methods import make_plan
from napari_ganrec.methods.ganrec import DivergenceError, GANrec, GANrecConfig
from napari_ganrec.methods.networks import Discriminator, Generator
from napari_ganrec.projector import Projector


def _solver(sino, angles, **overrides):
    proj = Projector(Geometry.create(angles, sino.shape[-1]), device="cpu")
    return GANrec(proj, torch.from_numpy(sino)[None], GANrecConfig(**overrides), seed=0)


def test_ganrec_runs_generator_and_discriminator_at_every_iteration(wedge_data, monkeypatch):
    """method="ganrec" is the GAN from the first iteration: one generator call per update (and one
    for the final image), two discriminator calls (measured and modelled sinogram in one batch,
    then the generator's adversarial term), and two optimiser steps (discriminator, generator) each time."""
    calls = {"G": 0, "D": 0, "adam_steps": 0}
    d_batches = []
    g_forward, d_forward = Generator.forward, Discriminator.forward

    def count_g(self, x):
        calls["G"] += 1
        return g_forward(self, x)

    def count_d(self, x):
        calls["D"] += 1
        d_batches.append(x.shape[0])
        return d_forward(self, x)

    monkeypatch.setattr(Generator, "forward", count_g)
    monkeypatch.setattr(Discriminator, "forward", count_d)
    d_step = torch.optim.Adam.step

    def count_step(self, *a, **k):
        calls["adam_steps"] += 1
        return d_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", count_step)
    sino, angles, _ = wedge_data
    steps = list(ng.iter_reconstruct(sino, angles, method="ganrec", iterations=6, preview_every=100,
                                     device="cpu"))
    assert [s.stage for s in steps] == ["ganrec"] * 6
    assert all(s.losses["d_loss"] > 0 and s.losses["adv"] > 0 for s in steps)
    assert calls == {"G": 6 + 1, "D": 2 * 6, "adam_steps": 2 * 6}
    assert d_batches == [2, 1] * 6  # measured and modelled sinogram in one batch, then the adversarial term


def test_ganrec_beats_fbp_on_limited_angles(wedge_data):
    sino, angles, gt = wedge_data
    rec_fbp = ng.reconstruct(sino, angles, method="fbp", device="cpu")
    rec = ng.reconstruct(sino, angles, method="ganrec", iterations=300, device="cpu", seed=0)
    assert rec.shape == (48, 48) and rec.dtype == np.float32
    assert ssim(gt, rec) > ssim(gt, rec_fbp) + 0.05


@pytest.mark.parametrize("method", ["ganrec", "rwtv"])
def test_result_is_quantitative(wedge_data, method):
    """The image is in the sinogram's units per pixel: the solid reads about 1, like the phantom."""
    sino, angles, gt = wedge_data
    rec = ng.reconstruct(sino, angles, method=method, iterations=100, device="cpu")
    solid = gt > 0.9
    assert np.median(rec[solid]) == pytest.approx(1.0, rel=0.25)
    # units in, units out: scaling the data scales the image (same run otherwise). A power of two
    # scales every float exactly, so the two runs round alike whatever the thread count; a factor
    # such as 10 rounds differently and the GAN's training amplifies that (4.7 % after 10 steps
    # at 2 threads).
    short = ng.reconstruct(sino, angles, method=method, iterations=10, device="cpu")
    scaled = ng.reconstruct(8 * sino, angles, method=method, iterations=10, device="cpu")
    assert np.linalg.norm(scaled - 8 * short) < 1e-4 * np.linalg.norm(8 * short)


def test_cpu_runs_are_deterministic_for_a_seed(wedge_data):
    sino, angles, _ = wedge_data
    a = ng.reconstruct(sino, angles, method="ganrec", iterations=8, device="cpu", seed=5)
    b = ng.reconstruct(sino, angles, method="ganrec", iterations=8, device="cpu", seed=5)
    c = ng.reconstruct(sino, angles, method="ganrec", iterations=8, device="cpu", seed=6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_each_network_gets_only_its_own_gradients(wedge_data):
    sino, angles, _ = wedge_data
    solver = _solver(sino, angles)
    recorded = {}
    original = solver.opt_d.step

    def record_then_step(*args, **kwargs):
        recorded.update({n: p.grad.clone() for n, p in solver.D.named_parameters()})
        return original(*args, **kwargs)

    solver.opt_d.step = record_then_step
    solver.step()
    # the generator's adversarial loss must not have added anything to D's gradients
    for name, p in solver.D.named_parameters():
        assert torch.equal(p.grad, recorded[name]), name


def test_discriminator_really_learns(wedge_data):
    sino, angles, _ = wedge_data
    solver = _solver(sino, angles)
    d_losses = [solver.step()["d_loss"] for _ in range(60)]
    # an untrained discriminator sits at 2 ln 2 = 1.386
    assert min(d_losses[10:]) < 2 * math.log(2) - 0.1


def test_nan_restores_last_good_state_and_lowers_learning_rate(wedge_data):
    sino, angles, _ = wedge_data
    solver = _solver(sino, angles, snapshot_every=2)
    for _ in range(4):
        solver.step()
    with torch.no_grad():
        solver.G.fc[0].weight[0, 0] = float("nan")
    out = solver.step()
    assert out["recovered"] == 1.0 and solver.lr_scale == 0.5
    assert solver.opt_g.param_groups[0]["lr"] == pytest.approx(0.5 * solver.config.lr_g)
    assert torch.isfinite(solver.G.fc[0].weight).all()
    nxt = solver.step()
    assert nxt["recovered"] == 0.0 and math.isfinite(nxt["g_loss"])
    assert np.isfinite(solver.image().numpy()).all()


def test_persistent_divergence_raises(wedge_data):
    sino, angles, _ = wedge_data
    solver = _solver(sino, angles, max_recoveries=2)
    solver.b_norm = solver.b_norm * float("nan")  # data that poisons every step
    with pytest.raises(DivergenceError, match="diverged"):
        for _ in range(5):
            solver.step()


@pytest.mark.parametrize(
    "n_angles, n_det, span",
    [(51, 32, (-35, 35)), (30, 33, (0, 120)), (1000, 24, (0, 180)), (7, 17, (0, 90))],
)
def test_any_angle_count_and_detector_size(n_angles, n_det, span):
    rng = np.random.default_rng(0)
    sino = rng.random((n_angles, n_det)).astype(np.float32)
    angles = np.linspace(span[0], span[1], n_angles)
    steps = list(ng.iter_reconstruct(sino, angles, method="rwtv+ganrec", iterations=3, preview_every=1,
                                     device="cpu"))
    assert [s.iteration for s in steps] == [1, 2, 3, 4, 5, 6]
    assert steps[-1].image.shape == (n_det, n_det)
    assert np.isfinite(steps[-1].image).all()


def test_warm_start_continues_from_previous_weights(wedge_data):
    sino, angles, _ = wedge_data
    steps = list(ng.iter_reconstruct(sino, angles, method="ganrec", iterations=80, device="cpu"))
    state = steps[-1].state
    cold = next(iter(ng.iter_reconstruct(sino, angles, method="ganrec", iterations=1, device="cpu")))
    warm = next(iter(ng.iter_reconstruct(sino, angles, method="ganrec", iterations=1, device="cpu",
                                         warm_start=state)))
    assert warm.losses["l1"] < 0.5 * cold.losses["l1"]
    with pytest.raises(ValueError, match="warm_start was made for"):
        next(ng.iter_reconstruct(sino[:, :40], angles, method="ganrec", iterations=1, device="cpu",
                                 warm_start=state))
    old_layout = {**state["ganrec"], "generator": dict(state["ganrec"]["generator"])}
    name = next(k for k, v in old_layout["generator"].items() if v.ndim == 2 and v.shape[0] != v.shape[1])
    old_layout["generator"][name] = old_layout["generator"][name].t()  # e.g. blocks of another layout
    with pytest.raises(ValueError, match="a state of another version"):
        next(ng.iter_reconstruct(sino, angles, method="ganrec", iterations=1, device="cpu",
                                 warm_start={"ganrec": old_layout}))
    with pytest.raises(ValueError, match="state of 'ganrec', not of the 'rwtv' stage"):
        next(ng.iter_reconstruct(sino, angles, method="rwtv", iterations=1, device="cpu",
                                 warm_start={"rwtv": state["ganrec"]}))


def test_closing_the_iterator_frees_the_solver(wedge_data, monkeypatch):
    sino, angles, _ = wedge_data
    threads = threading.active_count()
    made = []
    init = GANrec.__init__

    def keep(self, *a, **k):
        init(self, *a, **k)
        made.append(weakref.ref(self.G))

    monkeypatch.setattr(GANrec, "__init__", keep)
    gen = ng.iter_reconstruct(sino, angles, method="ganrec", iterations=1000, device="cpu")
    step = next(gen)
    ref = made[0]
    del step
    gen.close()
    import gc

    gc.collect()
    assert ref() is None
    assert threading.active_count() == threads


def test_config_validation():
    with pytest.raises(ValueError, match="unknown ganrec option"):
        make_plan("ganrec", 10, {"ganrec": {"learning_rate": 1}})
    with pytest.raises(ValueError, match="lr_g"):
        GANrecConfig(lr_g=-1.0)
    with pytest.raises(ValueError, match="gan_weight"):  # a GAN has an adversarial term
        GANrecConfig(gan_weight=0.0)
    cfg = make_plan("ganrec", 10, {"l1_weight": 3.0}).stages[0].config
    assert cfg.l1_weight == 3.0 and GANrecConfig().l1_weight == 10.0  # configs never mutate
