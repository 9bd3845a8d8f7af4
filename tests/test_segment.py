"""Tests of napari_ganrec.segment on synthetic porous particles with known pores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
from skimage.filters import threshold_li, threshold_otsu
from skimage.measure import label as sk_label

from napari_ganrec import phantoms
from napari_ganrec import segment as sg

N = 48


@pytest.fixture(scope="module", params=[0, 1])
def particle(request):
    ph = phantoms.porous_particle(N, nz=N, seed=request.param)
    return ph, ph.rasterize()


def _pv_porosity(ph) -> float:
    """Partial-volume true porosity: pore fraction / particle fraction summed over voxels."""
    particle_ball = ph.balls[0]
    only_particle = phantoms.Phantom(n=ph.n, nz=ph.nz, balls=[particle_ball]).rasterize()
    with_pores = phantoms.Phantom(n=ph.n, nz=ph.nz, balls=[particle_ball, *ph.pores]).rasterize()
    return float((only_particle - with_pores).sum() / only_particle.sum())


def _match(table, ph, shape):
    """For every true pore, the table row whose centroid is nearest to its centre."""
    c = np.stack([table[f"centroid_{a}"] - s / 2 for a, s in zip("zyx", shape)], axis=1)
    rows = [int(np.argmin(((c - np.asarray(b.center)) ** 2).sum(axis=1))) for b in ph.pores]
    return rows, c


def _ball(shape, center, radius):
    z, y, x = np.indices(shape)
    return (z - center[0]) ** 2 + (y - center[1]) ** 2 + (x - center[2]) ** 2 <= radius**2


# ----------------------------------------------------------------------- accuracy on the truth
def test_ground_truth_porosity_count_and_diameters(particle):
    ph, vol = particle
    res = sg.segment(vol)
    analytic = sum(b.radius**3 for b in ph.pores) / ph.balls[0].radius ** 3
    assert abs(res.porosity - analytic) < 0.005
    assert abs(res.porosity - _pv_porosity(ph)) < 0.005
    # pores never touch in this phantom: the count is exact and each pore is found once
    assert res.pore_count == len(ph.pores)
    rows, c = _match(res.table, ph, vol.shape)
    assert len(set(rows)) == len(ph.pores)
    for b, r in zip(ph.pores, rows):
        assert np.linalg.norm(c[r] - np.asarray(b.center)) < 0.5
        assert abs(res.table["equivalent_diameter_voxels"][r] - 2 * b.radius) < 1.0
    # closed pores only; balls are round; the particle is the ball (within its surface layer)
    assert not res.table["touches_surface"].any()
    assert np.all((res.table["sphericity"] > 0.8) & (res.table["sphericity"] <= 1.0))
    true_particle = 4 / 3 * math.pi * ph.balls[0].radius ** 3
    assert abs(res.particle_volume_voxels / true_particle - 1) < 0.02
    # the mask contains every pore and the labels are sequential
    assert np.all(res.particle_mask[res.labels > 0])
    assert set(np.unique(res.labels)) == set(range(res.pore_count + 1))
    assert res.labels.dtype == np.int32


def test_air_is_never_a_pore_and_inclusions_do_not_move_the_threshold():
    shape = (40, 40, 40)
    vol = np.zeros(shape, np.float32)
    vol[_ball(shape, (20, 20, 20), 15)] = 1.0
    res = sg.segment(vol)
    assert res.pore_count == 0 and res.porosity == 0.0
    # add one pore and big dense inclusions (value 3): the pore threshold stays between 0 and 1
    vol[_ball(shape, (20, 20, 14), 4)] = 0.0
    vol[_ball(shape, (20, 20, 27), 4)] = 3.0
    vol[_ball(shape, (13, 20, 20), 4)] = 3.0
    res = sg.segment(vol, particle_threshold=0.5)
    assert 0.0 < res.pore_threshold <= 0.5
    assert res.pore_count == 1
    assert res.table["volume_voxels"][0] == _ball(shape, (20, 20, 14), 4).sum()


def test_open_pore_touches_surface_after_closing():
    shape = (48, 48, 48)
    vol = np.zeros(shape, np.float32)
    vol[_ball(shape, (24, 24, 24), 18)] = 1.0
    vol[_ball(shape, (24, 24, 18), 3)] = 0.0  # closed pore
    vol[_ball(shape, (24, 24, 24 + 17), 3)] = 0.0  # a dent cut by the surface
    no_close = sg.segment(vol)
    assert no_close.pore_count == 1 and not no_close.table["touches_surface"][0]
    closed = sg.segment(vol, closing=5)
    assert closed.pore_count == 2
    t = closed.table
    open_row = int(np.argmax(t["centroid_x"]))
    assert t["touches_surface"][open_row] and not t["touches_surface"][1 - open_row]
    assert closed.open_porosity > 0 and closed.closed_porosity > 0
    assert math.isclose(closed.open_porosity + closed.closed_porosity, closed.porosity)


def test_min_size_and_watershed_split():
    shape = (40, 40, 40)
    vol = np.zeros(shape, np.float32)
    vol[_ball(shape, (20, 20, 20), 17)] = 1.0
    vol[_ball(shape, (20, 20, 15), 5)] = 0.0
    vol[_ball(shape, (20, 20, 23.5), 5)] = 0.0  # touches the first one
    vol[30, 20, 20] = 0.0  # a one-voxel pore
    assert sg.segment(vol, min_size=1).pore_count == 2
    merged = sg.segment(vol, min_size=2)
    assert merged.pore_count == 1
    split = sg.segment(vol, min_size=2, watershed=True)
    assert split.pore_count == 2
    assert split.pore_volume_voxels == merged.pore_volume_voxels
    assert sorted(np.round(split.table["centroid_x"])) == [15, 24]
    assert np.all(np.abs(split.table["equivalent_diameter_voxels"] - 10) < 1.5)


def test_voxel_size_units_and_distribution(particle):
    ph, vol = particle
    res = sg.segment(vol, voxel_size=(2.0, 0.5, 0.5))
    t = res.table
    np.testing.assert_allclose(t["volume"], t["volume_voxels"] * 0.5)
    np.testing.assert_allclose(t["equivalent_diameter"], (6 * t["volume"] / np.pi) ** (1 / 3))
    counts, edges = res.size_distribution(bins=5)
    assert counts.sum() == res.pore_count and edges.size == 6
    vols, _ = res.size_distribution(bins=5, weights="volume")
    assert math.isclose(vols.sum(), float(np.sum(np.pi * t["equivalent_diameter"] ** 3 / 6)))
    s = res.summary()
    assert s["pore_count"] == res.pore_count and math.isclose(
        s["particle_volume"], 0.5 * res.particle_volume_voxels
    )


# ------------------------------------------------------------------------ building blocks
def test_histogram_thresholds_match_skimage():
    rng = np.random.default_rng(0)
    vals = np.concatenate([rng.normal(0.2, 0.05, 20000), rng.normal(0.8, 0.08, 60000)])
    vol = vals.astype(np.float32).reshape(20, 40, 100)
    counts, edges = sg.volume_histogram(vol, bins=1024, chunk=3)
    assert counts.sum() == vol.size
    assert abs(sg.threshold_from_histogram(counts, edges, "otsu") - threshold_otsu(vol)) < 0.01
    assert abs(sg.threshold_from_histogram(counts, edges, "li") - threshold_li(vol)) < 0.01
    with pytest.raises(ValueError, match="method"):
        sg.threshold_from_histogram(counts, edges, "triangle")


def test_label_pores_equals_skimage_label():
    rng = np.random.default_rng(1)
    pores = rng.random((20, 24, 28)) < 0.3
    for conn in (1, 2, 3):
        labels, n = sg.label_pores(pores, connectivity=conn)
        expected = sk_label(pores, connectivity=conn)
        assert n == expected.max()
        np.testing.assert_array_equal(labels, expected)
    labels, n = sg.label_pores(pores, min_size=5)
    sizes = np.bincount(labels.ravel())[1:]
    assert n == sizes.size and sizes.min() >= 5


def test_chunked_denoise_and_segmentation_match_whole_volume():
    vol = phantoms.porous_particle(32, nz=32, seed=3).rasterize()
    noisy = (vol + np.random.default_rng(0).normal(0, 0.15, vol.shape)).astype(np.float32)
    for method in ("gaussian", "median", "nlm"):
        whole = sg.denoise_volume(noisy, method, chunk=32)
        np.testing.assert_allclose(sg.denoise_volume(noisy, method, chunk=5), whole, atol=1e-6)
        inplace = noisy.copy()
        out = sg.denoise_volume(inplace, method, chunk=4, inplace=True)
        assert out is inplace
        np.testing.assert_allclose(inplace, whole, atol=1e-6)
        assert np.abs(whole - vol).mean() < 0.6 * np.abs(noisy - vol).mean()
    a = sg.segment(noisy, denoise="gaussian", min_size=4)
    b = sg.segment(noisy, denoise="gaussian", min_size=4, chunk=3)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.particle_mask, b.particle_mask)
    assert a.pore_count > 0


def test_memmap_input_is_not_modified(tmp_path):
    vol = phantoms.porous_particle(32, nz=32, seed=4).rasterize()
    path = tmp_path / "vol.npy"
    np.save(path, vol)
    mm = np.load(path, mmap_mode="r")
    res = sg.segment(mm, denoise="gaussian", chunk=4)
    ref = sg.segment(vol, denoise="gaussian")
    np.testing.assert_array_equal(res.labels, ref.labels)
    np.testing.assert_array_equal(np.load(path), vol)
    with pytest.raises(ValueError, match="inplace"):
        sg.segment(mm, denoise="gaussian", inplace=True)


def test_progress_is_monotonic_and_ends_done():
    vol = phantoms.porous_particle(32, nz=32, seed=5).rasterize()
    records = []
    res = sg.segment(vol, denoise="gaussian", watershed=True, chunk=4, progress=records.append)
    fr = [r.fraction for r in records]
    assert fr == sorted(fr) and fr[0] == 0.0 and fr[-1] == 1.0
    assert records[-1].stage == "done" and str(res.pore_count) in records[-1].message
    assert {"denoise", "particle", "pores", "table"} <= {r.stage for r in records}


def test_estimate_thresholds_and_preview():
    ph = phantoms.porous_particle(N, nz=N, seed=0)
    vol = ph.rasterize()
    res = sg.segment(vol)
    p, q = sg.estimate_thresholds(vol)
    assert (p, q) == pytest.approx((res.particle_threshold, res.pore_threshold))
    p2, _ = sg.estimate_thresholds(vol, max_voxels=20_000)
    assert abs(p2 - p) < 0.1
    pv = sg.preview_slice(vol[N // 2], p, q)
    assert pv.dtype == np.uint8 and set(np.unique(pv)) <= {0, 1, 2}
    np.testing.assert_array_equal(pv == 2, res.labels[N // 2] > 0)
    assert sg.estimate_thresholds(vol, 0.3, 0.2) == (0.3, 0.2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(particle_threshold="triangle"), "particle_threshold"),
        (dict(pore_threshold=float("nan")), "pore_threshold"),
        (dict(denoise="bilateral"), "denoise"),
        (dict(min_size=-1), "min_size"),
        (dict(closing=1.5), "closing"),
        (dict(connectivity=4), "connectivity"),
        (dict(voxel_size=(1, 2)), "voxel_size"),
        (dict(particle_threshold=5.0), "particle threshold"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    vol = np.zeros((8, 8, 8), np.float32)
    vol[2:6, 2:6, 2:6] = 1
    with pytest.raises(ValueError, match=match):
        sg.segment(vol, **kwargs)


def test_bad_volumes():
    with pytest.raises(ValueError, match="3-D"):
        sg.segment(np.zeros((8, 8), np.float32))
    vol = np.ones((8, 8, 8), np.float32)
    vol[3, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sg.segment(vol)
    assert sg.parse_threshold(" OTSU ") == "otsu" and sg.parse_threshold("0.25") == 0.25


def test_pore_threshold_above_particle_threshold_warns():
    vol = phantoms.porous_particle(32, nz=32, seed=0).rasterize()
    with pytest.warns(UserWarning, match="above the particle threshold"):
        sg.segment(vol, particle_threshold=0.4, pore_threshold=0.6)


# ----------------------------------------------------------------------------------- export
def test_exports_are_atomic_and_refuse_to_overwrite(tmp_path):
    vol = phantoms.porous_particle(32, nz=32, seed=6).rasterize()
    res = sg.segment(vol, voxel_size=0.7)
    csv = sg.save_table_csv(res.table, tmp_path / "pores.csv")
    lines = csv.read_text().splitlines()
    assert lines[0].split(",") == list(sg.TABLE_COLUMNS)
    assert len(lines) == res.pore_count + 1
    first = dict(zip(lines[0].split(","), lines[1].split(",")))
    assert int(first["label"]) == 1 and first["touches_surface"] in ("true", "false")
    assert float(first["volume"]) == pytest.approx(res.table["volume"][0])
    tif = sg.save_labels_tiff(res.labels, tmp_path / "labels.tif", voxel_size=0.7)
    np.testing.assert_array_equal(tifffile.imread(tif), res.labels)
    with pytest.raises(FileExistsError, match="overwrite"):
        sg.save_labels_tiff(res.labels, tif)
    with pytest.raises(FileExistsError):
        sg.save_table_csv(res.table, csv)
    sg.save_labels_tiff(res.particle_mask, tif, overwrite=True)
    np.testing.assert_array_equal(tifffile.imread(tif), res.particle_mask.astype(np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif", "pores.csv"]
    with pytest.raises(FileNotFoundError):
        sg.save_table_csv(res.table, tmp_path / "missing" / "p.csv")


def test_segment_package_modules_have_one_job_and_reexport_every_name():
    """segment/ is split by job (issue 12); the old flat names keep working."""
    from pathlib import Path

    import napari_ganrec.segment as pkg

    folder = Path(pkg.__file__).parent
    sizes = {p.name: len(p.read_text().splitlines()) for p in folder.glob("*.py")}
    assert {"threshold.py", "mask.py", "labels.py", "table.py", "pipeline.py", "export.py"} <= set(sizes)
    assert max(sizes.values()) < 400, sizes
    for name in pkg.__all__:
        assert getattr(sg, name) is not None
    assert sg.parse_threshold("Otsu") == "otsu" and sg.TABLE_COLUMNS[0] == "label"


def test_automatic_particle_threshold_of_a_constant_volume_is_an_error():
    with pytest.raises(ValueError, match="the volume is constant .every voxel is 0.5.: there is no contrast"):
        sg.segment(np.full((6, 12, 12), 0.5, np.float32))
