"""3-D wedge filling (napari_ganrec.volume.wedgefill3d): options, angle conventions, tiny runs, benchmark."""

import dataclasses

import numpy as np
import pytest
import torch
from _benchmarks import load_benchmark

from napari_ganrec import phantoms
from napari_ganrec.geometry import angles_from_range, circle_mask
from napari_ganrec.methods.wedge import measured_mask, missing_sector, remove_wedge
from napari_ganrec.volume import WedgeFill3DConfig, wedgefill_volume
from napari_ganrec.volume.wedgefill3d import LABEL, axial_planes, plane_directions, plane_mask

TINY = WedgeFill3DConfig(directions=1, iterations=3, batch=4, data_batch=2, pool_iterations=4)


@pytest.fixture(scope="module")
def volume16():
    """A 16^3 porous particle at +-35 degrees (51 angles): truth, sinograms, angles, a first volume."""
    import napari_ganrec as ng

    torch.set_num_threads(1)
    ph = phantoms.porous_particle(16, nz=16, seed=0, n_pores=6)
    ang = angles_from_range(-35, 35, 51)
    sinos = np.ascontiguousarray(phantoms.simulate_projections(ph, ang, factor=1).transpose(1, 0, 2))
    first = ng.reconstruct(sinos, ang, method="rwtv", iterations=30, device="cpu",
                           rwtv={"tv_weight": 0.1, "eps": 0.1})
    return ph.rasterize(), sinos, ang, first


# ------------------------------------------------------------------ options
@pytest.mark.parametrize("field, value", [
    ("directions", 0), ("iterations", 0), ("batch", 0), ("data_batch", -1), ("data_weight", -0.1),
    ("data_weight", float("nan")), ("lr", 0.0), ("rounds", 0), ("pool_iterations", 0), ("tv_weight", -1.0),
    ("eps", 0.0), ("channels", 0), ("depth", 0), ("depth", 9), ("average_last", -1), ("min_wedge_deg", 180.0),
    ("directions", 2.5), ("iterations", True), ("keep_measured", "yes"),
])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=f"WedgeFill3DConfig.{field} is out of range"):
        WedgeFill3DConfig(**{field: value})


def test_label_is_honest():
    assert LABEL == "3-D wedge filling"


# ------------------------------------------------------------------ angle conventions
def test_plane_mask_is_the_slices_wedge_for_every_kz():
    """Planes of direction 0 stacked over the normal are the volume with y and z swapped: the 3-D
    mask must then be every slice's 2-D mask, whatever kz."""
    n = 15
    sector = missing_sector(angles_from_range(0, 90, 90))
    fm = plane_mask(n, n, sector, 0.0)  # (a=y, z, u=x)
    want = measured_mask(n, sector)  # (y, x)
    for kz in range(n):
        assert torch.equal(fm[:, kz, :], want)


def _wedged(vol, sector):
    return remove_wedge(vol, measured_mask(vol.shape[-1], sector))


def test_planes_of_the_wedged_volume_are_the_masked_planes():
    n = 15
    gen = torch.Generator().manual_seed(0)
    vol = torch.rand(n, n, n, generator=gen)
    sector = missing_sector(angles_from_range(0, 90, 90))
    for theta in (0.0, 90.0):  # exact turns (no interpolation)
        planes = axial_planes(vol, theta)
        masked = torch.fft.ifftn(torch.fft.fftn(planes) * plane_mask(n, n, sector, theta)).real
        torch.testing.assert_close(axial_planes(_wedged(vol, sector), theta), masked, atol=1e-4, rtol=0)


def test_a_measured_direction_gives_planes_without_wedge_and_a_missing_one_does_not():
    """The planes' sum along their normal (the radiograph at u's angle) keeps everything when u was
    measured, and loses the wedge when it was not; the masks say the same at k_a = 0."""
    n = 15
    gen = torch.Generator().manual_seed(1)
    vol = torch.rand(n, n, n, generator=gen)
    sector = missing_sector(angles_from_range(0, 90, 90))  # 0..89 measured, 90 missing
    wedged = _wedged(vol, sector)
    for theta, measured in ((0.0, True), (90.0, False)):
        clean = axial_planes(vol, theta).sum(0)
        cut = axial_planes(wedged, theta).sum(0)
        err = float((clean - cut).abs().max() / clean.abs().max())
        assert (err < 1e-4) == measured, (theta, err)
        assert bool(plane_mask(n, n, sector, theta)[0].min() == 1) == measured


def test_plane_directions_are_measured_and_spread():
    for start, stop, count in ((-35, 35, 51), (0, 90, 90), (0, 120, 120)):
        sector = missing_sector(angles_from_range(start, stop, count))
        dirs = plane_directions(sector, 4, 0.5)
        for d in dirs:
            rel = (d - sector.start) % 180.0
            assert not 0 < rel < sector.width, (start, stop, d)
        assert len(set(round(d, 6) for d in dirs)) == 4
    assert plane_directions(missing_sector(angles_from_range(-35, 35, 51)), 1, 0.5) == pytest.approx([0.0], abs=1e-9)


# ------------------------------------------------------------------ input checks
def test_bad_inputs_raise_clear_errors(volume16):
    _, sinos, ang, first = volume16
    with pytest.raises(ValueError, match="two distinct angles"):
        wedgefill_volume(first, sinos[:, :2], np.array([10.0, 190.0]), TINY)
    full = angles_from_range(0, 180, 51)
    with pytest.raises(ValueError, match="no missing wedge"):
        wedgefill_volume(first, sinos, full, TINY)
    with pytest.raises(ValueError, match="no missing wedge"):
        wedgefill_volume(first, sinos, ang, dataclasses.replace(TINY, min_wedge_deg=150.0))
    with pytest.raises(ValueError, match="at least as many slices"):
        wedgefill_volume(first[:10], sinos[:10], ang, TINY)
    with pytest.raises(ValueError, match="sinograms must be"):
        wedgefill_volume(first, sinos[:, :-1], ang, TINY)
    with pytest.raises(ValueError, match="sinograms must be"):
        wedgefill_volume(first, sinos[:-1], ang, TINY)
    with pytest.raises(ValueError, match="first_volume must be"):
        wedgefill_volume(first[..., :-1], sinos, ang, TINY)
    bad = first.copy()
    bad[3, 4, 5] = np.nan
    with pytest.raises(ValueError, match="first_volume holds NaN"):
        wedgefill_volume(bad, sinos, ang, TINY)
    bad = sinos.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="sinograms holds NaN"):
        wedgefill_volume(first, bad, ang, TINY)
    with pytest.raises(ValueError, match="angles hold NaN"):
        wedgefill_volume(first, sinos, np.where(np.arange(ang.size) == 2, np.nan, ang), TINY)
    with pytest.raises(ValueError, match="config must be"):
        wedgefill_volume(first, sinos, ang, {"iterations": 3})


# ------------------------------------------------------------------ tiny runs
def test_tiny_volume_run_changes_the_image_and_is_deterministic(volume16):
    _, sinos, ang, first = volume16
    seen = []
    cfg = dataclasses.replace(TINY, iterations=4)
    out = wedgefill_volume(first, sinos, ang, cfg, seed=3, progress=seen.append)
    assert out.shape == first.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0
    assert np.all(out[:, ~circle_mask(16)] == 0)
    assert np.abs(out - first).max() > 1e-4 * first.max()
    assert [r["iteration"] for r in seen] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in seen)
    assert np.array_equal(out, wedgefill_volume(first, sinos, ang, cfg, seed=3))
    assert not np.array_equal(out, wedgefill_volume(first, sinos, ang, cfg, seed=4))


def test_keep_measured_changes_only_the_wedge(volume16):
    _, sinos, ang, first = volume16
    out = wedgefill_volume(first, sinos, ang, dataclasses.replace(TINY, keep_measured=True, data_batch=0), seed=0)
    fmask = measured_mask(16, missing_sector(ang))
    diff = torch.from_numpy(out - np.clip(first, 0, None) * circle_mask(16))
    inside = torch.from_numpy(circle_mask(16)).float()
    # the network's change lies in the wedge; the clamp and the circle move a little of it out
    measured = torch.fft.fft2(diff).abs().pow(2) * fmask
    wedge = torch.fft.fft2(diff).abs().pow(2) * (1 - fmask)
    assert float(wedge.sum()) > 0 and float(measured.sum()) < 0.5 * float(wedge.sum())
    assert float((diff * (1 - inside)).abs().max()) == 0


def test_a_longer_tiny_run_does_not_lose_quality(volume16):
    from napari_ganrec.evaluation import ssim

    truth, sinos, ang, first = volume16
    out = wedgefill_volume(first, sinos, ang, WedgeFill3DConfig(directions=2, iterations=40, batch=4,
                                                                pool_iterations=30), seed=0)
    idx = [k for k in range(16) if (truth[k] > 0).sum() >= 0.5 * (truth > 0).sum(axis=(1, 2)).max()]
    before = np.mean([ssim(truth[k], first[k]) for k in idx])
    after = np.mean([ssim(truth[k], out[k]) for k in idx])
    assert after > before - 0.02, (before, after)


@pytest.mark.parametrize("change", [
    {"directions": 2}, {"batch": 2}, {"data_batch": 0}, {"data_weight": 5.0}, {"lr": 3e-3}, {"rounds": 2},
    {"pool_iterations": 8}, {"tv_weight": 0.5}, {"eps": 0.5}, {"channels": 8}, {"depth": 2}, {"average_last": 0},
    {"iterations": 5}, {"keep_measured": True},
])
def test_every_option_changes_the_result(volume16, change):
    _, sinos, ang, first = volume16
    start = TINY if "eps" not in change else dataclasses.replace(TINY, pool_iterations=101)  # eps acts from 100
    base = wedgefill_volume(first, sinos, ang, start, seed=0)
    other = wedgefill_volume(first, sinos, ang, dataclasses.replace(start, **change), seed=0)
    assert np.isfinite(other).all()
    assert not np.allclose(base, other, atol=1e-7, rtol=0), change


def test_benchmark_runs_at_a_tiny_size(capsys):
    bench = load_benchmark("wedgefill3d")
    assert bench.main(["--sizes", "16", "--phantoms", "porous", "--cases", "pm35", "--iterations", "4",
                       "--rwtv-grid", "0.1:0.1", "0.1:0.3", "--factor", "1", "--compare-2d", "1",
                       "--wedgefill-iterations", "2",
                       "--wf-options", "directions=1", "iterations=2", "pool_iterations=3", "batch=4"]) == 0
    out = capsys.readouterr().out
    assert "| 16 | porous | ±35 (51) |" in out
    assert "3-D wedge filling SSIM (PSNR)" in out and "2-D rwtv+wedgefill" in out
    row = [line for line in out.splitlines() if line.startswith("| 16 | porous | ±35 (51) | 0.1/")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert 0 < float(cells[5].split()[0]) <= 1 and 0 < float(cells[6].split()[0]) <= 1


def test_strength_is_automatic_as_reweighted_tvs_and_one_for_the_volume(volume16):
    """tv_weight/eps "auto" (the default): reweighted TV's choice for the middle slice; on clean data
    that is 0.1/0.1, so the run equals one given those numbers."""
    from napari_ganrec.methods.rwtv import RWTVConfig

    _, sinos, ang, first = volume16
    cfg = WedgeFill3DConfig()
    assert (cfg.tv_weight, cfg.eps) == ("auto", "auto")
    noisy = phantoms.add_poisson_noise(sinos[8], 3e3, seed=1)
    rw = RWTVConfig().resolved(noisy)
    chosen = cfg.resolved(noisy)
    assert rw.tv_weight > 0.1 and (chosen.tv_weight, chosen.eps) == (rw.tv_weight, rw.eps)
    assert WedgeFill3DConfig(tv_weight=0.05).resolved(noisy).tv_weight == 0.05  # a number given wins
    auto = wedgefill_volume(first, sinos, ang, dataclasses.replace(TINY, tv_weight="auto", eps="auto"), seed=3)
    fixed = wedgefill_volume(first, sinos, ang, dataclasses.replace(TINY, tv_weight=0.1, eps=0.1), seed=3)
    assert np.array_equal(auto, fixed)
    with pytest.raises(ValueError, match="WedgeFill3DConfig.tv_weight is out of range: 'strong'"):
        WedgeFill3DConfig(tv_weight="strong")
