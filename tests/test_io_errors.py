"""Bad input: each gets a clear error naming the file and the problem."""

from __future__ import annotations

import numpy as np
import pytest
from _io_fixtures import ANGLES, N_ANG, raw_stack, write_dxchange

from napari_ganrec.io import TomoFormatError, read_tomo


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        read_tomo(tmp_path / "nope.h5")


@pytest.mark.parametrize("name", ["e.h5", "e.tif", "e.mrc", "e.npy", "e.npz"])
def test_empty_files(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(TomoFormatError, match=f"{name}: the file is empty"):
        read_tomo(tmp_path / name, angles=ANGLES)


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_files(tmp_path):
    import mrcfile
    import tifffile

    proj, flats, darks, _ = raw_stack()
    paths = [write_dxchange(tmp_path / "t.h5", proj, flats, darks)]
    tifffile.imwrite(tmp_path / "t.tif", proj)
    paths.append(tmp_path / "t.tif")
    with mrcfile.new(tmp_path / "t.mrc") as m:
        m.set_data(proj)
    paths.append(tmp_path / "t.mrc")
    np.save(tmp_path / "t.npy", proj)
    paths.append(tmp_path / "t.npy")
    np.savez(tmp_path / "t.npz", projections=proj, angles=ANGLES)
    paths.append(tmp_path / "t.npz")
    for p in paths:
        _truncate(p)
        with pytest.raises(TomoFormatError, match=p.name) as info:
            with read_tomo(p, angles=ANGLES) as d:
                np.asarray(d.projections[:])  # lazy formats fail at the latest on reading
        assert "truncated" in str(info.value) or "cannot" in str(info.value)


def test_hdf5_without_expected_datasets(tmp_path):
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["something/else"] = np.zeros((3, 4))
    with pytest.raises(TomoFormatError, match=r"other\.h5: an HDF5 file without the expected"):
        read_tomo(tmp_path / "other.h5")
    with pytest.raises(TomoFormatError, match="no /exchange/data"):
        read_tomo(tmp_path / "other.h5", format="dxchange")


def test_angle_count_mismatch(tmp_path):
    proj, flats, darks, _ = raw_stack()
    path = write_dxchange(tmp_path / "a.h5", proj, flats, darks, theta=ANGLES[:-2])
    with pytest.raises(TomoFormatError, match=f"a.h5: {N_ANG - 2} angles for {N_ANG} projections"):
        read_tomo(path)
    np.save(tmp_path / "p.npy", proj)
    with pytest.raises(TomoFormatError, match="p.npy: 3 angles"):
        read_tomo(tmp_path / "p.npy", angles=[0, 1, 2])


def test_missing_angles(tmp_path):
    proj, _, _, _ = raw_stack()
    np.save(tmp_path / "p.npy", proj)
    with pytest.raises(TomoFormatError, match="p.npy: no projection angles"):
        read_tomo(tmp_path / "p.npy")


def test_flats_with_a_different_shape(tmp_path):
    proj, flats, darks, _ = raw_stack()
    path = write_dxchange(tmp_path / "f.h5", proj, flats[:, :, :-1], darks)
    with pytest.raises(TomoFormatError, match=r"f.h5: flats .* shape \(3, 15\)"):
        read_tomo(path)
    np.save(tmp_path / "p.npy", proj)
    with pytest.raises(TomoFormatError, match="p.npy: darks have frames"):
        read_tomo(tmp_path / "p.npy", angles=ANGLES, darks=darks[:, :2])


def test_non_finite_values(tmp_path):
    proj, flats, darks, _ = raw_stack()
    proj[0, 1, 2] = np.nan
    path = write_dxchange(tmp_path / "n.h5", proj, flats, darks)
    with pytest.raises(TomoFormatError, match="n.h5: projections frame 0 contains NaN"):
        read_tomo(path)
    np.savez(tmp_path / "n.npz", projections=proj, angles=ANGLES)
    with pytest.raises(TomoFormatError, match="n.npz: .*NaN"):
        read_tomo(tmp_path / "n.npz")


def test_one_pixel_wide_detector(tmp_path):
    proj, flats, darks, _ = raw_stack()
    path = write_dxchange(tmp_path / "w.h5", proj[:, :, :1], flats[:, :, :1], darks[:, :, :1])
    with pytest.raises(TomoFormatError, match="w.h5: the detector is 1 pixel"):
        read_tomo(path)
    np.save(tmp_path / "w.npy", proj[:, :1, :1])
    with pytest.raises(TomoFormatError, match="w.npy: the detector is 1 pixel"):
        read_tomo(tmp_path / "w.npy", angles=ANGLES)


def test_one_row_detector_is_read_as_one_sinogram(tmp_path):
    proj, flats, darks, p = raw_stack()
    path = write_dxchange(tmp_path / "r.h5", proj[:, 1, :], flats[:, 1:2], darks[:, 1:2])
    with read_tomo(path) as d:
        assert d.shape == (N_ANG, 1, proj.shape[2])
        np.testing.assert_allclose(d.sinograms()[0], p[:, 1, :], atol=1e-5)


def test_radians_warn(tmp_path):
    proj, flats, darks, _ = raw_stack()
    path = write_dxchange(tmp_path / "rad.h5", proj, flats, darks, np.deg2rad(ANGLES), None)
    with pytest.warns(UserWarning, match="rad.h5: .*look like radians"):
        read_tomo(path).close()
    np.save(tmp_path / "p.npy", proj)
    with pytest.warns(UserWarning, match="radians"):
        read_tomo(tmp_path / "p.npy", angles=np.deg2rad(ANGLES)).close()


def test_unknown_suffix_and_bad_angle_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(TomoFormatError, match="x.png: unknown file type"):
        read_tomo(tmp_path / "x.png")
    proj, _, _, _ = raw_stack()
    np.save(tmp_path / "p.npy", proj)
    (tmp_path / "p.tlt").write_text("0\n1\nabc\n")
    with pytest.raises(TomoFormatError, match=r"p.tlt: line 3: 'abc'"):
        read_tomo(tmp_path / "p.npy")


def test_one_angle_file_parser(tmp_path, monkeypatch):
    """#12: run_inputs.read_angles_file is a call to io.read_angle_file (one parser)."""
    from napari_ganrec.io import _common, read_angle_file
    from napari_ganrec.widget_model import inputs as run_inputs

    f = tmp_path / "a.tlt"
    f.write_text("-30, -15 # first\n0\n15 30\n")
    np.testing.assert_array_equal(read_angle_file(f), run_inputs.read_angles_file(f))
    calls = []
    real = _common.read_angle_file
    monkeypatch.setattr("napari_ganrec.io.read_angle_file", lambda p: calls.append(p) or real(p))
    run_inputs.read_angles_file(f)
    assert calls == [f]
    bad = tmp_path / "b.tlt"
    bad.write_text("0\nten\n")
    with pytest.raises(TomoFormatError, match="line 2: 'ten' is not a number"):
        read_angle_file(bad)
    with pytest.raises(ValueError, match="b.tlt', line 2: 'ten' is not a number"):
        run_inputs.read_angles_file(bad)
