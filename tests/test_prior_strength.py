"""Reweighted TV's strength from the data: the noise estimate, the mapping, explicit values, records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import napari_ganrec as ng
from napari_ganrec import phantoms
from napari_ganrec.geometry import Geometry, validate_weight
from napari_ganrec.methods import make_plan
from napari_ganrec.methods.rwtv import RWTV, RWTVConfig
from napari_ganrec.methods.tv import TVConfig
from napari_ganrec.noise import CLEAN_NOISE, auto_strength, estimate_noise
from napari_ganrec.projector import Projector


@pytest.fixture(scope="module")
def noisy_wedge(wedge_data):
    sino, angles, gt = wedge_data
    return phantoms.add_poisson_noise(sino, photons=3e3, seed=1), angles, gt


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.3])
def test_noise_estimate_finds_gaussian_sigma_on_a_smooth_background(sigma):
    rng = np.random.default_rng(0)
    a, d = np.meshgrid(np.linspace(0, 1, 90), np.linspace(-1, 1, 64), indexing="ij")
    smooth = 2.0 + np.cos(3 * a) * (1 - d**2)
    est = estimate_noise(smooth + rng.normal(0, sigma, smooth.shape))
    assert est.sigma == pytest.approx(sigma, rel=0.10)
    assert est.scale == pytest.approx(np.abs(smooth).mean(), rel=0.02)
    assert est.relative == pytest.approx(est.sigma / est.scale)


def test_noise_estimate_on_a_phantom_sinogram_and_a_batch(wedge_data):
    sino, _, _ = wedge_data
    rng = np.random.default_rng(1)
    sigma = 0.02 * np.abs(sino).mean()
    noisy = sino + rng.normal(0, sigma, sino.shape)
    assert estimate_noise(noisy).sigma == pytest.approx(sigma, rel=0.10)
    # noise-free: what structure leaks through stays below the clean threshold
    assert estimate_noise(sino).relative < CLEAN_NOISE
    # a batch: the median over slices (one slice of three is noise-free); a torch tensor works too
    batch = np.stack([noisy, sino + rng.normal(0, sigma, sino.shape), sino])
    assert estimate_noise(torch.from_numpy(batch)).sigma == pytest.approx(sigma, rel=0.10)


def test_mapping_is_the_noise_free_setting_below_the_threshold_and_grows_with_noise():
    assert auto_strength(0.0) == (0.1, 0.1) == auto_strength(CLEAN_NOISE)
    settings = [auto_strength(r) for r in (0.005, 0.012, 0.018, 0.025, 0.032, 0.2)]
    weights = [w for w, _ in settings]
    epss = [e for _, e in settings]
    assert weights == sorted(weights) and epss == sorted(epss)
    assert weights[-1] > 3 * weights[0]
    assert auto_strength(0.2) == auto_strength(0.032)  # flat beyond the last calibrated knot


def test_auto_picks_a_stronger_setting_for_noisier_data(wedge_data, noisy_wedge):
    clean = RWTVConfig().resolved(wedge_data[0])
    noisy = RWTVConfig().resolved(noisy_wedge[0])
    assert (clean.tv_weight, clean.eps) == (0.1, 0.1)
    assert noisy.tv_weight > 2 * clean.tv_weight and noisy.eps > clean.eps
    assert noisy.noise > 3 * clean.noise
    # and it smooths more: the noisy data's reconstruction has less total variation than with (0.1, 0.1)
    sino, angles, _ = noisy_wedge
    auto = ng.reconstruct(sino, angles, method="rwtv", iterations=60, device="cpu")
    fixed = ng.reconstruct(sino, angles, method="rwtv", iterations=60, device="cpu", tv_weight=0.1, eps=0.1)
    assert np.abs(np.diff(auto, axis=0)).sum() < 0.9 * np.abs(np.diff(fixed, axis=0)).sum()


def test_explicit_numbers_win_field_by_field(noisy_wedge):
    sino = noisy_wedge[0]
    both = RWTVConfig(tv_weight=0.05, eps=0.2)
    assert both.resolved(sino) is both and both.noise is None
    half = RWTVConfig(tv_weight=0.05).resolved(sino)
    assert half.tv_weight == 0.05 and half.eps == auto_strength(half.noise)[1] and half.eps > 0.1
    given = RWTVConfig(noise=0.0).resolved(sino)  # a known noise level skips the estimate
    assert (given.tv_weight, given.eps, given.noise) == (0.1, 0.1, 0.0)
    plan = make_plan("rwtv+ganrec", 2, {"tv_weight": 0.7}).resolved(sino)
    assert plan.stages[0].config.tv_weight == 0.7
    # "AUTO" in any case is the automatic setting
    assert RWTVConfig(tv_weight="AUTO ").tv_weight == "auto"


def test_the_stage_chooses_from_its_own_batch_when_nobody_did(noisy_wedge):
    sino, angles, _ = noisy_wedge
    proj = Projector(Geometry.create(angles, sino.shape[-1]), device="cpu")
    stage = RWTV(proj, torch.from_numpy(sino)[None], RWTVConfig())
    assert stage.config == RWTVConfig().resolved(sino)
    assert isinstance(stage.config.tv_weight, float) and stage.config.tv_weight > 0.1


def test_the_plan_records_the_chosen_values(noisy_wedge):
    sino = noisy_wedge[0]
    plan = make_plan("rwtv", 10)
    assert plan.describe()["stages"][0]["config"]["tv_weight"] == "auto"
    cfg = plan.resolved(sino).describe()["stages"][0]["config"]
    w, e = auto_strength(cfg["noise"])
    assert (cfg["tv_weight"], cfg["eps"]) == (w, e) and w > 0.1
    json.dumps(cfg)  # plain values for side-cars and layer metadata


def test_cli_side_car_records_the_automatic_choice_and_the_number_given(tmp_path, noisy_wedge):
    from napari_ganrec.cli import main

    sino, angles, _ = noisy_wedge
    np.save(tmp_path / "s.npy", sino)
    np.savetxt(tmp_path / "a.txt", angles)
    common = [str(tmp_path / "s.npy"), "--angles-file", str(tmp_path / "a.txt"), "--iterations", "5",
              "--center", str(sino.shape[-1] / 2), "--data", "line-integrals", "--device", "cpu"]
    assert main(["reconstruct", *common, "-o", str(tmp_path / "auto.tif"), "--tv-weight", "auto"]) == 0
    cfg = json.loads((tmp_path / "auto.tif.json").read_text())["configs"]["rwtv"]
    expected = RWTVConfig().resolved(sino)
    assert (cfg["tv_weight"], cfg["eps"], cfg["noise"]) == (expected.tv_weight, expected.eps, expected.noise)
    assert main(["reconstruct", *common, "-o", str(tmp_path / "fixed.tif"), "--tv-weight", "0.05"]) == 0
    cfg = json.loads((tmp_path / "fixed.tif.json").read_text())["configs"]["rwtv"]
    assert cfg["tv_weight"] == 0.05 and cfg["eps"] == expected.eps


def test_a_volume_gets_one_setting_from_its_middle_slice(monkeypatch, wedge_data):
    """Slices of different noise, reconstructed slab by slab: every slab runs the middle slice's setting."""
    from napari_ganrec.volume import reconstruct_volume

    sino, angles, _ = wedge_data
    stack = np.stack([sino, phantoms.add_poisson_noise(sino, photons=3e3, seed=2), sino])
    seen = []
    init = RWTV.__init__

    def spy(self, projector, sinograms, config=None, **kw):
        seen.append(config)
        init(self, projector, sinograms, config, **kw)

    monkeypatch.setattr(RWTV, "__init__", spy)
    reconstruct_volume(stack, angles, method="rwtv", iterations=3, warm_iterations=2, batch=1, device="cpu")
    middle = RWTVConfig().resolved(stack[1])
    assert len(seen) == 3 and all(c.tv_weight == middle.tv_weight and c.eps == middle.eps for c in seen)
    assert middle.tv_weight > 0.1


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 2, 2, 2)), "n_angles, n_det"),
    (np.zeros((2, 40)), "at least 3 angles"),
    (np.full((10, 10), np.nan), "NaN or inf"),
])
def test_noise_estimate_refuses_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        estimate_noise(bad)


@pytest.mark.parametrize("kwargs, match", [
    ({"tv_weight": "strong"}, "RWTVConfig.tv_weight must be 'auto' or a finite number >= 0"),
    ({"tv_weight": -0.1}, "RWTVConfig.tv_weight"),
    ({"eps": 0}, "RWTVConfig.eps must be 'auto' or a finite number > 0"),
    ({"eps": float("inf")}, "RWTVConfig.eps"),
    ({"noise": -1.0}, "RWTVConfig.noise"),
    ({"noise": "auto"}, "RWTVConfig.noise must be None"),
])
def test_config_refuses_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RWTVConfig(**kwargs)


def test_auto_is_refused_where_it_means_nothing(wedge_data):
    with pytest.raises(ValueError, match="only for reweighted TV"):
        TVConfig(tv_weight="auto")
    with pytest.raises(ValueError, match="TVConfig.tv_weight must be a finite number"):
        TVConfig(tv_weight="0.1")
    sino, angles, _ = wedge_data
    with pytest.raises(ValueError, match="only for reweighted TV"):
        ng.reconstruct(sino, angles, method="tv", iterations=2, device="cpu", tv_weight="auto")
    with pytest.raises(ValueError, match="relative_noise must be a finite number"):
        auto_strength(-0.01)
    with pytest.raises(ValueError, match="relative_noise"):
        auto_strength("a lot")
    assert validate_weight("auto") == "auto"
    with pytest.raises(ValueError, match="tv_weight must be a finite number >= 0, got 'auto'"):
        validate_weight("auto", allow_auto=False)


def test_cli_refuses_a_word_other_than_auto(tmp_path, capsys):
    from napari_ganrec.cli import main

    with pytest.raises(SystemExit):
        main(["reconstruct", "x.npy", "-o", str(tmp_path / "o.tif"), "--tv-weight", "strong"])
    assert "--tv-weight: must be a number >= 0 or 'auto', got 'strong'" in capsys.readouterr().err


def test_quality_benchmark_has_the_automatic_and_the_best_grid_rows(capsys):
    from _benchmarks import load_benchmark

    quality = load_benchmark("quality")
    assert quality.main(["--sizes", "32", "--cases", "noisy-0-120", "--iterations", "3", "--tv-iterations", "3",
                         "--sirt-iterations", "3", "--methods", "rwtv", "--rwtv-grid", "0.1:0.1", "0.3:1.0",
                         "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| reweighted TV, automatic strength | 0." in out
    assert "| reweighted TV, best of grid | 0." in out
