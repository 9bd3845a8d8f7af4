"""Pre-processing: normalisation never logs non-positive values; crop, bin, axes, zingers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ganrec import preprocess as pp


def test_normalize_and_log_recover_line_integrals():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 2, (5, 3, 8)).astype(np.float32)
    flats = np.full((2, 3, 8), 1000.0)
    darks = np.full((2, 3, 8), 50.0)
    raw = 50 + 950 * np.exp(-p)
    out = pp.minus_log(pp.normalize(raw, flats, darks))
    np.testing.assert_allclose(out, p, atol=1e-4)
    assert raw.shape == out.shape


def test_normalize_floors_and_clips():
    raw = np.array([[[0.0, 40.0, 2000.0, 60.0]]])
    flat = np.array([[[1000.0, 1000.0, 1000.0, 50.0]]])  # last pixel: flat <= dark (dead)
    dark = np.array([[[50.0, 50.0, 50.0, 50.0]]])
    with pytest.warns(UserWarning, match="2 projection pixel.*1 flat pixel"):
        t = pp.normalize(raw, flat, dark, min_transmission=1e-3, max_transmission=1.0)
    assert np.all(t >= 1e-3) and np.all(t <= 1.0) and np.all(np.isfinite(t))
    line = pp.minus_log(t)
    assert np.all(np.isfinite(line)) and line.max() == pytest.approx(-np.log(1e-3), rel=1e-5)
    assert pp.minus_log(np.array([-1.0, 0.0]))[0] == pytest.approx(-np.log(1e-6), rel=1e-5)


def test_normalize_errors():
    p = np.ones((2, 3, 4))
    with pytest.raises(ValueError, match=r"flats have frames of shape \(3, 5\)"):
        pp.normalize(p, np.ones((1, 3, 5)))
    with pytest.raises(ValueError, match="projections contains 3 NaN"):
        pp.normalize(np.where(np.eye(4)[None, :3] > 0, np.nan, 1.0))
    with pytest.raises(ValueError, match="min_transmission"):
        pp.normalize(p, min_transmission=0)


def test_zingers_removed_only_where_outliers():
    rng = np.random.default_rng(1)
    a = rng.normal(100, 1, (3, 10, 10)).astype(np.float32)
    b = a.copy()
    b[1, 4, 5] = 1000.0
    out = pp.remove_zingers(b, threshold=0.2, relative=True)
    assert abs(out[1, 4, 5] - 100) < 5
    mask = np.ones_like(a, bool)
    mask[1, 4, 5] = False
    np.testing.assert_array_equal(out[mask], b[mask])
    assert b[1, 4, 5] == 1000.0  # input untouched


def test_crop_bin_and_sinogram_conversion():
    a = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    c = pp.crop(a, rows=(1, 5), cols=(2, -2))
    np.testing.assert_array_equal(c, a[:, 1:5, 2:-2])
    b = pp.bin_stack(a, 2)
    assert b.shape == (4, 3, 4)
    assert b[0, 0, 0] == pytest.approx(a[0, :2, :2].mean())
    assert pp.bin_stack(a, (1, 2), angle_factor=2).shape == (2, 6, 4)
    np.testing.assert_allclose(pp.bin_angles([0, 1, 2, 3], 2), [0.5, 2.5])
    s = pp.to_sinograms(a)
    assert s.shape == (6, 4, 8) and np.array_equal(s[2], a[:, 2, :])
    np.testing.assert_array_equal(pp.to_projections(s), a)
    with pytest.raises(ValueError, match="selects nothing"):
        pp.crop(a, cols=(5, 5))
    with pytest.raises(ValueError, match="positive integer"):
        pp.bin_stack(a, 0)


def test_orient_axis():
    a = np.random.default_rng(2).random((2, 5, 7)).astype(np.float32)
    h = pp.orient_axis(a.transpose(0, 2, 1), "horizontal")
    np.testing.assert_array_equal(h, a)
    np.testing.assert_array_equal(pp.orient_axis(a, flip=True), a[:, :, ::-1])
    r = pp.orient_axis(a, rotate_deg=90.0)
    assert r.shape == a.shape
    with pytest.raises(ValueError, match="axis must be"):
        pp.orient_axis(a, "diagonal")


def test_preprocess_chain_matches_steps():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, (4, 6, 8)).astype(np.float32)
    raw = 10 + 990 * np.exp(-p)
    flats = np.full((3, 6, 8), 1000.0)
    darks = np.full((2, 6, 8), 10.0)
    out = pp.preprocess(raw, flats, darks, cols=(2, 8), bin_factor=2)
    np.testing.assert_allclose(out, pp.bin_stack(p[:, :, 2:8], 2), atol=1e-4)


def test_check_flats_darks_tells_noise_from_wrong_fields():
    """#14: all-zero flats, swapped flats/darks and darks of another exposure are errors; a few
    pixels below the dark (noise in opaque regions) are counted, not refused."""
    rng = np.random.default_rng(1)
    flat = np.full((4, 50), 1000.0, np.float32)
    dark = np.full((4, 50), 100.0, np.float32)
    proj = rng.uniform(300, 900, (6, 4, 50)).astype(np.float32)
    assert pp.check_flats_darks(proj, flat, dark) == (0, 0)
    proj[0, 0, :10] = 90.0  # 10 of 1200 below the dark: < 5 %
    assert pp.check_flats_darks(proj, flat, dark) == (10, 0)
    with pytest.raises(ValueError, match="at or below the dark"):
        pp.check_flats_darks(proj, flat, dark * 5)  # darks of another gain
    with pytest.raises(ValueError, match="flats are all zero"):
        pp.check_flats_darks(proj, np.zeros_like(flat), dark)
    with pytest.raises(ValueError, match="swapped"):
        pp.check_flats_darks(proj, dark, flat)
    dead = flat.copy()
    dead[0, :5] = 50.0  # 5 of 200 flat pixels below the dark: 2.5 % > 1 %
    with pytest.raises(ValueError, match="5 of 200 pixels the flat is not brighter"):
        pp.check_flats_darks(proj, dead, dark)
    assert pp.check_flats_darks(proj, dead, dark, max_bad_fraction=None)[1] == 5
