"""Bad or odd inputs on the reader / pre-processing side (issue #14): each ends in a clear error
naming the problem and what to do, or in a correct result with a warning. Never a silent wrong
result, never a raw library traceback."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import tifffile
from _io_fixtures import ANGLES, N_ANG, N_DET, N_ROW, raw_stack, write_dxchange

from napari_ganrec import preprocess as pp
from napari_ganrec.io import NotLineIntegralsError, TomoFormatError, line_integrals, read_tomo, tomodata_from_layer


def _read_li(path, **kw):
    with read_tomo(path, **kw) as d:
        return line_integrals(d)


# ----------------------------------------------------------------------------- flats and darks
def test_all_zero_flats(tmp_path):
    proj, flats, darks, _ = raw_stack()
    path = write_dxchange(tmp_path / "z.h5", proj, np.zeros_like(flats), np.zeros_like(darks))
    with pytest.raises(NotLineIntegralsError, match="flats are all zero"):
        _read_li(path)
    with pytest.raises(ValueError, match="flats are all zero"):
        pp.normalize(proj, np.zeros_like(flats))


def test_darks_brighter_than_flats(tmp_path):
    proj, flats, darks, _ = raw_stack()
    path = write_dxchange(tmp_path / "s.h5", proj, darks, flats)  # swapped
    with pytest.raises(NotLineIntegralsError, match="darks are brighter than the flats.*swapped"):
        _read_li(path)
    with pytest.raises(ValueError, match="swapped"):
        pp.normalize(proj, darks, flats)


def test_raw_counts_below_the_dark(tmp_path):
    proj, flats, darks, p = raw_stack()
    # darks of another gain: far above many projection pixels
    path = write_dxchange(tmp_path / "b.h5", proj, flats, darks * 6)
    with pytest.raises(NotLineIntegralsError, match="at or below the dark.*another exposure or gain|at or below"):
        _read_li(path)
    # a few noisy pixels below the dark are floored, with a warning, and the rest is right
    noisy = proj.copy()
    noisy[0, 0, 0] = 50.0
    path = write_dxchange(tmp_path / "n.h5", noisy, flats, darks)
    with pytest.warns(UserWarning, match="1 projection pixel"):
        out = _read_li(path)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0, 1:], p[1:, 0].astype(np.float32), atol=1e-5)


def test_flats_not_above_the_dark_in_many_pixels(tmp_path):
    proj, flats, darks, _ = raw_stack()
    bad = flats.copy()
    bad[:, 0, :8] = 50.0  # half a row of dead flats, below the dark of 100
    path = write_dxchange(tmp_path / "d.h5", proj, bad, darks)
    with pytest.raises(NotLineIntegralsError, match="flat is not brighter than the dark"):
        _read_li(path)


def test_darks_without_flats(tmp_path):
    proj, _, darks, _ = raw_stack()
    path = write_dxchange(tmp_path / "d.h5", proj, None, darks)
    with pytest.raises(NotLineIntegralsError, match="raw counts need flats.*darks but no flats"):
        _read_li(path)


def test_nan_in_flats_of_an_hdf5_file(tmp_path):
    proj, flats, darks, _ = raw_stack()
    flats[1, 2, 3] = np.nan
    path = write_dxchange(tmp_path / "f.h5", proj, flats, darks)
    with pytest.raises(NotLineIntegralsError, match="flats of rows 0:3 contain 1 NaN"):
        _read_li(path)


def test_nan_in_an_unsampled_frame_is_caught_on_read(tmp_path):
    proj, flats, darks, _ = raw_stack()
    proj[1, 1, 4] = np.inf  # frame 1: not among the first/middle/last the reader samples
    path = write_dxchange(tmp_path / "i.h5", proj, flats, darks)
    with read_tomo(path) as d:
        line_integrals(d, 0)  # row 0 is fine
        with pytest.raises(NotLineIntegralsError, match="projections of rows 1:2 contain 1 NaN or infinite"):
            line_integrals(d, 1)


def test_transmission_that_is_not(tmp_path):
    proj, _, _, _ = raw_stack()
    np.save(tmp_path / "c.npy", proj)
    with read_tomo(tmp_path / "c.npy", angles=ANGLES) as d:
        with pytest.raises(NotLineIntegralsError, match="not transmission"):
            line_integrals(d, choice="transmission")
    np.save(tmp_path / "n.npy", proj / 1000 - 0.5)
    with read_tomo(tmp_path / "n.npy", angles=ANGLES) as d:
        with pytest.raises(NotLineIntegralsError, match="<= 0, which no transmission is"):
            line_integrals(d, choice="transmission")


# ----------------------------------------------------------------------------- dtypes
def test_tiff_folder_of_mixed_dtypes_is_not_cast_to_the_first(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    frames = [np.full((N_ROW, N_DET), 7, np.uint8), np.full((N_ROW, N_DET), 300, np.uint16),
              np.full((N_ROW, N_DET), 70000, np.uint32)]
    for i, f in enumerate(frames):
        tifffile.imwrite(folder / f"p{i}.tif", f)
    with pytest.warns(UserWarning, match=r"mixed types \(1 uint16, 1 uint32, 1 uint8\); all are read as uint32"):
        d = read_tomo(folder, angles=[0.0, 60.0, 120.0])
    with d:
        np.testing.assert_array_equal(np.asarray(d.projections[:])[:, 0, 0], [7, 300, 70000])


def test_bool_tiff_and_bool_npy_are_refused_alike(tmp_path):
    mask = np.zeros((N_ANG, N_ROW, N_DET), bool)
    mask[:, :, 4:8] = True
    tifffile.imwrite(tmp_path / "m.tif", mask)
    np.save(tmp_path / "m.npy", mask)
    errors = []
    for name in ("m.tif", "m.npy"):
        with pytest.raises(TomoFormatError, match="boolean \\(a mask\\?\\), not projections") as info:
            read_tomo(tmp_path / name, angles=ANGLES)
        errors.append(str(info.value).split(": ", 1)[1].split(" are boolean")[1])
    assert errors[0] == errors[1]


@pytest.mark.parametrize("suffix", [".tif", ".npy"])
def test_complex_data_are_refused(tmp_path, suffix):
    c = (np.ones((N_ANG, N_ROW, N_DET)) * (1 + 1j)).astype(np.complex64)
    path = tmp_path / f"c{suffix}"
    tifffile.imwrite(path, c) if suffix == ".tif" else np.save(path, c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy ComplexWarning on the way
        with pytest.raises(TomoFormatError, match="complex.*imaginary part would be lost"):
            read_tomo(path, angles=ANGLES)


def test_complex_flats_are_refused(tmp_path):
    proj, flats, _, _ = raw_stack()
    np.save(tmp_path / "p.npy", proj)
    with pytest.raises(TomoFormatError, match="flats are complex"):
        read_tomo(tmp_path / "p.npy", angles=ANGLES, flats=flats.astype(np.complex64))


# ----------------------------------------------------------------------------- HDF5 layouts
def test_nxtomo_without_image_key(tmp_path):
    proj, _, _, _ = raw_stack()
    with h5py.File(tmp_path / "n.nxs", "w") as f:
        e = f.create_group("entry")
        e.attrs["NX_class"] = "NXentry"
        e["definition"] = "NXtomo"
        e["instrument/detector/data"] = proj
        e["sample/rotation_angle"] = ANGLES
    with pytest.raises(TomoFormatError, match="has no image_key"):
        read_tomo(tmp_path / "n.nxs")


def test_exchange_data_that_is_a_group(tmp_path):
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.create_group("exchange/data")
        f["exchange/data/frames"] = np.ones((3, 2, 4))
        f["exchange/theta"] = [0.0, 60.0, 120.0]
    with pytest.raises(TomoFormatError, match="/exchange/data is a group holding frames, not a dataset"):
        read_tomo(tmp_path / "g.h5")


# ----------------------------------------------------------------------------- TIFF shapes
def test_truncated_tiff_and_one_pixel_detector_have_their_own_messages(tmp_path):
    a = np.random.default_rng(0).random((60, 8, 16)).astype(np.float32)
    meta = {"angles": list(np.linspace(0, 180, 60))}
    tifffile.imwrite(tmp_path / "full.tif", a, metadata=meta)
    raw = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "trunc.tif").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(TomoFormatError, match="truncated: its description says 60 pages of \\(8, 16\\)"):
        read_tomo(tmp_path / "trunc.tif")
    tifffile.imwrite(tmp_path / "w1.tif", a[:, :, :1], metadata=meta)
    with pytest.raises(TomoFormatError, match=r"\(60, 8, 1\).*detector is 1 pixel\(s\) wide"):
        read_tomo(tmp_path / "w1.tif")


def test_tiff_folder_with_one_frame_of_another_shape_fails_at_open(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    tifffile.imwrite(folder / "p0.tif", np.ones((N_ROW, N_DET), np.float32))
    tifffile.imwrite(folder / "p1.tif", np.ones((N_ROW, N_DET + 1), np.float32))
    with pytest.raises(TomoFormatError, match="p1.tif: image of shape"):
        read_tomo(folder, angles=[0.0, 90.0])


# ----------------------------------------------------------------------------- layers
def test_layer_with_angles_of_the_wrong_count():
    with pytest.raises(ValueError, match="3 angles for a layer of 12 projections"):
        tomodata_from_layer(np.ones((N_ANG, N_ROW, N_DET)), {"angles_deg": [0, 1, 2]})
    with pytest.raises(ValueError, match="projection stack"):
        tomodata_from_layer(np.ones((2, 2, 2, 2)), {"angles_deg": [0, 1]})


# ----------------------------------------------------------------------------- more of our own
def test_npz_flats_of_the_wrong_shape_or_complex(tmp_path):
    proj, flats, darks, _ = raw_stack()
    np.savez(tmp_path / "f.npz", projections=proj, angles=ANGLES, flats=flats[:, :2], darks=darks)
    with pytest.raises(TomoFormatError, match=r"flats have frames of shape \(2, 16\) but the projections have"):
        read_tomo(tmp_path / "f.npz")
    np.savez(tmp_path / "c.npz", projections=proj, angles=ANGLES, flats=flats.astype(np.complex64))
    with pytest.raises(TomoFormatError, match="flats are complex"):
        read_tomo(tmp_path / "c.npz")


def test_angles_that_are_not_numbers_or_all_equal(tmp_path):
    proj, _, _, _ = raw_stack()
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f["exchange/data"] = proj
        f["exchange/theta"] = np.array([b"a"] * N_ANG)
    with pytest.raises(TomoFormatError, match="t.h5: the angles are not numbers"):
        read_tomo(tmp_path / "t.h5")
    np.save(tmp_path / "p.npy", proj)
    with pytest.raises(TomoFormatError, match="all 12 angles are equal"):
        read_tomo(tmp_path / "p.npy", angles=np.zeros(N_ANG))


def test_one_averaged_flat_frame_in_dxchange(tmp_path):
    proj, flats, darks, p = raw_stack()
    path = write_dxchange(tmp_path / "f2.h5", proj, flats.mean(0), darks.mean(0))
    np.testing.assert_allclose(_read_li(path), p.transpose(1, 0, 2), atol=1e-5)


def test_blank_projections_are_not_reconstructed(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((N_ANG, N_ROW, N_DET), np.float32))
    with read_tomo(tmp_path / "z.npy", angles=ANGLES) as d, pytest.raises(NotLineIntegralsError, match="all 0"):
        line_integrals(d)


def test_rgb_tiff_is_not_taken_for_projections(tmp_path):
    rgb = (np.random.default_rng(0).random((32, 24, 3)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with pytest.raises(TomoFormatError, match="colour images \\(3 samples per pixel"):
        read_tomo(tmp_path / "rgb.tif", angles=np.arange(32.0) * 5)


def test_flats_from_a_tiff_folder(tmp_path):
    proj, flats, darks, p = raw_stack()
    folder = tmp_path / "flats"
    folder.mkdir()
    for i, f in enumerate(flats):
        tifffile.imwrite(folder / f"f{i}.tif", f)
    np.save(tmp_path / "p.npy", proj)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = read_tomo(tmp_path / "p.npy", angles=ANGLES, flats=folder, darks=darks)
    with d:
        np.testing.assert_allclose(line_integrals(d), p.transpose(1, 0, 2), atol=1e-5)
