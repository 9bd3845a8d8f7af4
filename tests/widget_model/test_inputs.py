"""Inputs of an interactive run: slicing layouts, angle sources, coverage, FBP previews."""

import numpy as np
import pytest

from napari_ganrec import phantoms
from napari_ganrec.geometry import angles_from_range
from napari_ganrec.widget_model.inputs import (
    Binning,
    angles_from_metadata,
    angular_coverage,
    center_from_metadata,
    cpu_hint,
    extract_sinograms,
    fbp_preview,
    input_shape,
    layer_line_integrals,
    projection_view,
    read_angles_file,
    scan_centers,
    slice_marker_lines,
)


@pytest.fixture(scope="module")
def stack():
    # (angles, rows, detector) with distinct values everywhere
    return np.arange(5 * 4 * 6, dtype=np.float32).reshape(5, 4, 6)


def test_input_shape_per_layout():
    assert input_shape((5, 6)) == input_shape((5, 6), "horizontal")
    assert input_shape((5, 6)).layout == "sinogram"
    v = input_shape((5, 4, 6), "vertical")
    assert (v.n_angles, v.n_slices, v.n_det) == (5, 4, 6)
    h = input_shape((5, 4, 6), "horizontal")
    assert (h.n_angles, h.n_slices, h.n_det) == (5, 6, 4)
    s = input_shape((5, 4, 6), "sinograms")
    assert (s.n_angles, s.n_slices, s.n_det) == (4, 5, 6)
    with pytest.raises(ValueError, match="2-D .* or 3-D"):
        input_shape((2, 3, 4, 5))
    with pytest.raises(ValueError, match="layout must be one of"):
        input_shape((2, 3, 4), "diagonal")


def test_extract_sinograms_layouts(stack):
    v = extract_sinograms(stack, "vertical", 1, 3)
    assert v.shape == (2, 5, 6) and v.dtype == np.float32
    np.testing.assert_array_equal(v[0], stack[:, 1, :])
    np.testing.assert_array_equal(v[1], stack[:, 2, :])
    h = extract_sinograms(stack, "horizontal", 2)
    np.testing.assert_array_equal(h[0], stack[:, :, 2])
    s = extract_sinograms(stack, "sinograms", 4)
    np.testing.assert_array_equal(s[0], stack[4])
    two_d = extract_sinograms(stack[:, 0, :], "vertical")
    np.testing.assert_array_equal(two_d[0], stack[:, 0, :])
    # the result is a copy the worker owns
    v[0, 0, 0] = -1
    assert stack[0, 1, 0] != -1
    assert v.flags.c_contiguous


def test_extract_sinograms_bad_slices(stack):
    with pytest.raises(ValueError, match="slice 4 is outside"):
        extract_sinograms(stack, "vertical", 4)
    with pytest.raises(ValueError, match="slice range 1:9"):
        extract_sinograms(stack, "vertical", 1, 9)


def test_tilt_axis_along_x_gives_the_same_sinograms():
    p = phantoms.porous_particle(32, nz=4, seed=1)
    a = angles_from_range(-30, 30, 11)
    proj = phantoms.simulate_projections(p, a)  # (A, rows, det), axis along rows
    tilted = np.ascontiguousarray(np.swapaxes(proj, 1, 2))  # the axis now runs along x
    np.testing.assert_array_equal(extract_sinograms(proj, "vertical", 2),
                                  extract_sinograms(tilted, "horizontal", 2))


def test_slice_marker_lines():
    (line,) = slice_marker_lines((5, 4, 6), "vertical", 2)
    np.testing.assert_allclose(line, [[2, -0.5], [2, 5.5]])
    lines = slice_marker_lines((5, 4, 6), "horizontal", 1, 4)
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0], [[-0.5, 1], [3.5, 1]])
    np.testing.assert_allclose(lines[1], [[-0.5, 3], [3.5, 3]])
    assert slice_marker_lines((5, 6), "vertical", 0) == []
    assert slice_marker_lines((5, 4, 6), "sinograms", 0) == []


def test_angles_and_center_from_metadata():
    a = np.linspace(-35, 35, 51)
    np.testing.assert_array_equal(angles_from_metadata({"angles": a}), a)
    np.testing.assert_array_equal(angles_from_metadata({"theta": list(a)}, 51), a)
    assert angles_from_metadata({"angles": a}, 50) is None  # wrong count is ignored
    assert angles_from_metadata({}) is None
    assert angles_from_metadata({"angles": "x"}) is None
    assert center_from_metadata({"center": 31.5}) == 31.5
    assert center_from_metadata({"centre": np.array([12.0])}) == 12.0
    assert center_from_metadata({"center": None}) is None


def test_read_angles_file(tmp_path):
    f = tmp_path / "tilt.txt"
    f.write_text("# tilt angles\n-30\n-15, 0\n15 30\n")
    np.testing.assert_array_equal(read_angles_file(f), [-30, -15, 0, 15, 30])
    with pytest.raises(ValueError, match="tilt.txt.* has 5 values but the sinogram has 4"):
        read_angles_file(f, 4)
    bad = tmp_path / "bad.txt"
    bad.write_text("0\n1\nten\n")
    with pytest.raises(ValueError, match=r"bad.txt', line 3: 'ten' is not a number"):
        read_angles_file(bad)
    with pytest.raises(ValueError, match="missing.txt.* cannot be read"):
        read_angles_file(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no angles"):
        read_angles_file(empty)


def test_angular_coverage():
    full = angular_coverage(angles_from_range(0, 180, 90))
    assert full.wedges == () and full.covered == pytest.approx(180)
    wedge = angular_coverage(angles_from_range(-35, 35, 51))
    assert len(wedge.wedges) == 1
    # 70 degrees measured plus half a step at each end
    assert wedge.covered == pytest.approx(70 + 1.4, abs=0.01)
    lo, hi = wedge.wedges[0]
    assert lo == pytest.approx(35.7) and hi == pytest.approx(144.3)
    r120 = angular_coverage(angles_from_range(0, 120, 61))
    assert r120.missing == pytest.approx(58, abs=0.01)
    # 0-360 degrees covers each direction twice: full coverage
    assert angular_coverage(angles_from_range(0, 360, 180)).wedges == ()


def test_scan_centers():
    np.testing.assert_allclose(scan_centers(32, 2, 1), [30, 31, 32, 33, 34])
    np.testing.assert_allclose(scan_centers(10, 1, 0.5), [9, 9.5, 10, 10.5, 11])
    np.testing.assert_allclose(scan_centers(10, 0, 1), [10])
    with pytest.raises(ValueError, match="step must be positive"):
        scan_centers(10, 1, 0)


@pytest.fixture(scope="module")
def shifted():
    """A 48 px sinogram whose rotation axis sits at 22.0 (not the detector middle, 24)."""
    p = phantoms.porous_particle(48, seed=2)
    a = angles_from_range(0, 180, 60)
    return phantoms.simulate_sinogram(p, a, center=22.0), a, phantoms.ground_truth(p)


def test_fbp_preview_matches_truth(shifted):
    sino, a, truth = shifted
    good = fbp_preview(sino[None], a, 22.0)[0]
    wrong = fbp_preview(sino[None], a, 24.0)[0]
    assert good.shape == (48, 48) and good.dtype == np.float32
    err_good = np.abs(good - truth).mean()
    assert err_good < 0.6 * np.abs(wrong - truth).mean()
    assert err_good < 0.1  # values near the phantom's (0, 1, 2)


def test_the_widget_centre_scan_is_the_centre_module_one():
    """One centre scan: the widget's comes from napari_ganrec.center (run_inputs has none)."""
    import napari_ganrec.widget_model.inputs as ri

    assert not hasattr(ri, "center_scan") and "center_scan" not in ri.__all__


def test_binning_bins_detector_and_rows_and_scales_the_centre():
    b = Binning(2)
    s = np.arange(4 * 3 * 8, dtype=np.float32).reshape(4, 3, 8)  # (rows, angles, det)
    out = b.apply(s)
    assert out.shape == (2, 3, 4)
    np.testing.assert_allclose(out[0, 0, 0], s[0:2, 0, 0:2].mean())
    np.testing.assert_allclose(out[1, 2, 3], s[2:4, 2, 6:8].mean())
    # detector bin j is centred at 2j + 0.5: centre 10.5 -> 5.0, and back
    assert b.center(10.5) == 5.0 and b.unbinned_center(5.0) == 10.5
    assert Binning(4).center(295.5) == pytest.approx((295.5 - 1.5) / 4)
    assert Binning(1).center(12.25) == 12.25
    # detector only
    d = Binning(4, rows=False)
    assert d.apply(s).shape == (4, 3, 2) and d.row_factor == 1
    assert d.rows_used(1, 2) == (1, 2)
    # rows: a remainder is dropped, too few rows is a clear error
    assert b.rows_used(0, 5) == (0, 4)
    with pytest.raises(ValueError, match="untick 'bin rows'"):
        b.rows_used(1, 2)
    with pytest.raises(ValueError, match="positive integer"):
        Binning(0)
    assert Binning(2).metadata() == {"factor": 2, "rows": True, "values": "per binned pixel"}


def test_binned_fbp_is_the_unbinned_one_at_the_binned_scale(shifted):
    """The binned run reconstructs the same slice: the centre scaled with the binning, values per
    binned pixel (twice the unbinned ones for binning 2)."""
    sino, a, truth = shifted
    full = fbp_preview(sino[None], a, 22.0)[0]
    b = Binning(2, rows=False)
    half = fbp_preview(b.apply(sino[None]), a, b.center(22.0))[0]
    assert half.shape == (24, 24)
    down = full.reshape(24, 2, 24, 2).mean(axis=(1, 3))
    assert np.corrcoef(half.ravel(), down.ravel())[0, 1] > 0.95
    assert half.sum() == pytest.approx(2 * down.sum(), rel=0.1)


def test_cpu_hint_only_for_wide_slices_on_the_cpu(monkeypatch):
    assert cpu_hint(512, "cpu") == ""
    hint = cpu_hint(640, "cpu")
    assert "640 px" in hint and "binning 2" in hint and "\n" not in hint
    assert "binning 4" in cpu_hint(1280, "cpu", 1)
    assert cpu_hint(160, "cpu", 4) == ""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "640 px" in cpu_hint(640, "auto")  # auto resolves to the CPU here


def test_projection_view_of_every_layout(stack):
    v, _ = projection_view(stack, "vertical")
    assert v is stack
    h, md = projection_view(stack, "horizontal", {"flats": np.zeros((2, 4, 6))})
    assert h.shape == (5, 6, 4) and md["flats"].shape == (2, 6, 4)
    s, _ = projection_view(stack, "sinograms")  # (slices, angles, det) -> (angles, slices, det)
    assert s.shape == (4, 5, 6)
    np.testing.assert_array_equal(s[:, 1, :], stack[1])
    two, _ = projection_view(stack[0], "vertical")
    assert two.shape == (4, 1, 6)


def test_layer_line_integrals_correct_raw_counts_like_the_cli():
    """A layer of raw counts with flats and darks in its metadata (as the reader leaves them) is
    flat/dark corrected and -log'd by io.line_integrals; a pre-processed layer is used as it is."""
    from napari_ganrec.io import TomoData, line_integrals

    rng = np.random.default_rng(0)
    p = rng.uniform(0.1, 2.0, (7, 3, 10)).astype(np.float32)  # line integrals (angles, rows, det)
    flats = np.full((2, 3, 10), 1000.0, np.float32)
    darks = np.full((2, 3, 10), 20.0, np.float32)
    raw = (20 + 980 * np.exp(-p)).astype(np.float32)
    a = angles_from_range(0, 180, 7)
    md = {"angles_deg": a, "flats": flats, "darks": darks, "kind": "raw", "source": "x.h5"}
    sinos, kind = layer_line_integrals(raw, md, "vertical", a, 1, 3)
    assert kind.kind == "raw"
    assert sinos.shape == (2, 7, 10)
    np.testing.assert_allclose(sinos, p[:, 1:3].transpose(1, 0, 2), rtol=1e-3, atol=1e-4)
    cli = line_integrals(TomoData(raw, a, flats, darks, {"kind": "raw", "source": "x.h5"}), slice(1, 3))
    np.testing.assert_array_equal(sinos, cli)
    pre, kind = layer_line_integrals(p, {"angles_deg": a, "kind": "line_integrals"}, "vertical", a, 0, 1)
    assert kind.kind == "line_integrals"
    np.testing.assert_array_equal(pre[0], p[:, 0])  # not corrected twice


def test_layer_line_integrals_refuse_counts_without_flats():
    from napari_ganrec.io import NotLineIntegralsError

    raw = np.full((7, 2, 10), 900.0, np.float32)
    a = angles_from_range(0, 180, 7)
    with pytest.raises(NotLineIntegralsError):
        layer_line_integrals(raw, {"angles_deg": a, "kind": "raw"}, "vertical", a, 0, 1)
