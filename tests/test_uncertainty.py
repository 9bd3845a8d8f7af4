"""Seed ensembles and the calibration of their spread (napari_ganrec.uncertainty)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ganrec.uncertainty import calibration_scale, coverage, gaussian_coverage, seed_ensemble


@pytest.fixture(scope="module")
def small(wedge_data):
    sino, angles, gt = wedge_data
    return sino[::2, 8:-8], angles[::2], gt[8:-8, 8:-8]  # 32 px, 30 angles


def test_coverage_counts_errors_within_k_sigma():
    gt = np.zeros(8)
    mean = np.array([0.5, -1.5, 2.5, -3.5, 0.5, 1.5, -2.5, 3.5])
    std = np.ones(8)
    assert coverage(mean, std, gt) == {1.0: 0.25, 2.0: 0.5, 3.0: 0.75}
    assert coverage(mean, 2 * std, gt, ks=(1,)) == {1.0: 0.5}
    mask = np.array([True] * 4 + [False] * 4)
    assert coverage(mean, std, gt, ks=(4,), mask=mask) == {4.0: 1.0}
    assert calibration_scale(mean, std, gt) == pytest.approx(np.quantile(np.abs(mean), gaussian_coverage(1)))


def test_a_calibrated_gaussian_gives_the_textbook_coverage():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.5, 2.0, (400, 400))
    gt = rng.normal(size=sigma.shape)
    mean = gt + sigma * rng.normal(size=sigma.shape)
    cov = coverage(mean, sigma, gt)  # square: inside the reconstruction circle
    for k, expected in ((1.0, 0.683), (2.0, 0.954), (3.0, 0.997)):
        assert cov[k] == pytest.approx(expected, abs=0.005)
        assert gaussian_coverage(k) == pytest.approx(expected, abs=5e-4)
    assert calibration_scale(mean, sigma, gt) == pytest.approx(1.0, abs=0.02)
    assert calibration_scale(mean, sigma / 3, gt) == pytest.approx(3.0, abs=0.06)  # too small a spread


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.zeros(3), np.ones(4), np.zeros(3)), {}, "one shape"),
    ((np.zeros(3), -np.ones(3), np.zeros(3)), {}, "std must be >= 0"),
    ((np.full(3, np.nan), np.ones(3), np.zeros(3)), {}, "mean holds NaN"),
    ((np.zeros(3), np.ones(3), np.zeros(3)), {"ks": (0,)}, "ks must be positive"),
    ((np.zeros(3), np.ones(3), np.zeros(3)), {"mask": np.zeros(3, bool)}, "mask selects no pixel"),
    ((np.zeros(3), np.ones(3), np.zeros(3)), {"mask": np.ones(4, bool)}, "does not fit"),
])
def test_coverage_refuses_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        coverage(*args, **kwargs)


def test_seed_ensemble_of_ganrec_has_a_spread(small):
    sino, angles, _ = small
    ens = seed_ensemble(sino, angles, method="ganrec", seeds=3, iterations=4, device="cpu")
    n = sino.shape[-1]
    assert ens.mean.shape == ens.std.shape == (n, n) and ens.members.shape == (3, n, n)
    assert ens.seeds == (0, 1, 2) and ens.method == "ganrec"
    assert ens.std.max() > 0 and not np.allclose(ens.members[0], ens.members[1])
    np.testing.assert_allclose(ens.mean, ens.members.mean(axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ens.std, ens.members.std(axis=0, ddof=1), rtol=1e-5, atol=1e-7)


def test_seed_ensemble_of_the_chain_with_given_seeds(small):
    sino, angles, _ = small
    ens = seed_ensemble(sino, angles, method="rwtv+ganrec", seeds=[5, 9], iterations={"rwtv": 5, "ganrec": 3},
                        device="cpu")
    assert ens.seeds == (5, 9) and ens.method == "rwtv+ganrec" and ens.std.max() > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "rwtv"}, "no network stage"),
    ({"seeds": 1}, "seeds must be a count >= 2"),
    ({"seeds": [3, 3]}, "at least 2 distinct seeds"),
    ({"seeds": "four"}, "seeds must be a count"),
    ({"seed": 1}, "takes seeds=..., not seed="),
])
def test_seed_ensemble_refuses_bad_input(small, kwargs, match):
    sino, angles, _ = small
    with pytest.raises(ValueError, match=match):
        seed_ensemble(sino, angles, **{"iterations": 2, "device": "cpu", **kwargs})


def test_uncertainty_benchmark_prints_its_table(capsys):
    from _benchmarks import load_benchmark

    bench = load_benchmark("uncertainty")
    assert bench.main(["--size", "32", "--cases", "0-120", "--seeds", "2", "--iterations", "2",
                       "--rwtv-iterations", "2", "--chain-ganrec-iterations", "2"]) == 0
    out = capsys.readouterr().out
    assert "| 0-120 | ganrec (ganrec:2) | 0." in out and "| 0-120 | rwtv+ganrec (rwtv:2+ganrec:2) | 0." in out
    assert "| (calibrated Gaussian) | | | | | 0.683 | 0.954 | 0.997 | 1.00 |" in out
