"""Readers: every format gives the projections, angles (degrees), flats, darks and metadata."""

from __future__ import annotations

import numpy as np
import pytest
from _io_fixtures import ANGLES, N_ANG, N_DET, N_ROW, TOOTH, raw_stack, write_dxchange, write_nxtomo

from napari_ganrec.io import LazyStack, TomoData, detect_format, read_tomo


def _expected_sino(p):
    return np.ascontiguousarray(p.transpose(1, 0, 2))


def test_dxchange_reads_lazily_and_normalises(tmp_path):
    proj, flats, darks, p = raw_stack()
    path = write_dxchange(tmp_path / "scan.h5", proj, flats, darks)
    assert detect_format(path) == "dxchange"
    with read_tomo(path) as d:
        assert isinstance(d, TomoData)
        assert isinstance(d.projections, LazyStack)
        assert d.shape == (N_ANG, N_ROW, N_DET)
        np.testing.assert_allclose(d.angles, ANGLES)
        assert d.flats.shape == (4, N_ROW, N_DET) and d.darks.shape == (3, N_ROW, N_DET)
        assert d.metadata["format"] == "dxchange"
        s = d.sinograms(rows=slice(1, 3))
        assert s.shape == (2, N_ANG, N_DET) and s.dtype == np.float32
        np.testing.assert_allclose(s, _expected_sino(p)[1:3], atol=1e-5)
        np.testing.assert_allclose(d.sinograms(0)[0], p[:, 0, :], atol=1e-5)


def test_dxchange_radian_units_are_converted(tmp_path):
    proj, flats, darks, _ = raw_stack()
    path = write_dxchange(tmp_path / "r.h5", proj, flats, darks, np.deg2rad(ANGLES), "rad")
    with read_tomo(path) as d:
        np.testing.assert_allclose(d.angles, ANGLES)


def test_nxtomo_splits_projections_flats_darks(tmp_path):
    proj, flats, darks, p = raw_stack(1)
    path = write_nxtomo(tmp_path / "scan.nxs", proj, flats, darks)
    assert detect_format(path) == "nxtomo"
    with read_tomo(path) as d:
        assert d.shape == (N_ANG, N_ROW, N_DET)
        np.testing.assert_allclose(d.angles, ANGLES)
        assert d.flats.shape[0] == 4 and d.darks.shape[0] == 3
        np.testing.assert_array_equal(np.asarray(d.projections[:]), proj)
        np.testing.assert_allclose(d.sinograms(), _expected_sino(p), atol=1e-5)
        assert d.metadata["entry"] == "/entry0000"


def test_mrc_with_rawtlt_sidecar(tmp_path):
    import mrcfile

    proj, _, _, _ = raw_stack(2)
    path = tmp_path / "tilt.mrc"
    with mrcfile.new(path) as m:
        m.set_data(proj)
        m.voxel_size = 2.5
    tilts = np.linspace(-60, 60, N_ANG)
    (tmp_path / "tilt.rawtlt").write_text("\n".join(f"{t:.2f}" for t in tilts))
    with read_tomo(path) as d:
        np.testing.assert_allclose(d.angles, tilts, atol=0.006)
        np.testing.assert_array_equal(np.asarray(d.projections[:]), proj)
        assert d.metadata["angle_source"] == "sidecar"
        assert d.metadata["voxel_size"][2] == pytest.approx(2.5)


def test_mrc_fei_extended_header_angles(tmp_path):
    import mrcfile
    from mrcfile.dtypes import get_ext_header_dtype

    proj, _, _, _ = raw_stack(3)
    tilts = np.linspace(-45, 45, N_ANG)
    ext = np.zeros(N_ANG, dtype=get_ext_header_dtype(b"FEI1"))
    ext["Metadata size"] = ext.dtype.itemsize
    ext["Alpha tilt"] = tilts
    path = tmp_path / "fei.mrc"
    with mrcfile.new(path) as m:
        m.set_data(proj)
        m.set_extended_header(ext)
        m.header.exttyp = b"FEI1"
    with read_tomo(path) as d:
        np.testing.assert_allclose(d.angles, tilts)
        assert d.metadata["angle_source"] == "fei_extended_header"


def test_tiff_multipage_and_folder(tmp_path):
    import tifffile

    proj, flats, darks, p = raw_stack(4)
    tifffile.imwrite(tmp_path / "stack.tif", proj)
    np.savetxt(tmp_path / "stack.tlt", ANGLES)
    with read_tomo(tmp_path / "stack.tif", flats=flats, darks=darks) as d:
        assert isinstance(d.projections, LazyStack)
        np.testing.assert_allclose(d.angles, ANGLES)
        np.testing.assert_allclose(d.sinograms(), _expected_sino(p), atol=1e-5)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(proj):
        tifffile.imwrite(folder / f"proj_{i}.tif", frame)  # natural order: 2 before 10
    with read_tomo(folder, angles=ANGLES, flats=flats, darks=darks) as d:
        assert d.metadata["format"] == "tiff-folder"
        np.testing.assert_array_equal(np.asarray(d.projections[:]), proj)
    tifffile.imwrite(tmp_path / "flats.tif", flats)
    with read_tomo(folder, angles=ANGLES, flats=tmp_path / "flats.tif") as d:
        assert d.flats.shape == flats.shape


def test_numpy_npy_and_npz(tmp_path):
    proj, flats, darks, p = raw_stack(5)
    np.save(tmp_path / "p.npy", proj)
    with read_tomo(tmp_path / "p.npy", angles=ANGLES, flats=flats, darks=darks) as d:
        np.testing.assert_allclose(d.sinograms(), _expected_sino(p), atol=1e-5)
    np.savez(tmp_path / "p.npz", projections=proj, angles=ANGLES, flats=flats, darks=darks)
    with read_tomo(tmp_path / "p.npz") as d:
        np.testing.assert_allclose(d.angles, ANGLES)
        np.testing.assert_allclose(d.sinograms(), _expected_sino(p), atol=1e-5)
    # a single sinogram (n_angles, n_det) is a one-row detector
    np.save(tmp_path / "s.npy", p[:, 0, :])
    with read_tomo(tmp_path / "s.npy", angles=ANGLES) as d:
        assert d.shape == (N_ANG, 1, N_DET)
        np.testing.assert_allclose(d.sinograms(log=False)[0], p[:, 0, :])


def test_angle_file_argument(tmp_path):
    proj, flats, darks, _ = raw_stack()
    np.save(tmp_path / "p.npy", proj)
    (tmp_path / "a.txt").write_text(" ".join(str(a) for a in ANGLES) + "  # degrees\n")
    with read_tomo(tmp_path / "p.npy", angles=tmp_path / "a.txt") as d:
        np.testing.assert_allclose(d.angles, ANGLES)


def test_lazy_stack_reads_only_requested_rows():
    calls = []

    class Source:
        shape = (5, 4, 6)
        dtype = np.dtype(np.float32)

        def __getitem__(self, key):
            calls.append(key)
            return np.arange(5 * 4 * 6, dtype=np.float32).reshape(5, 4, 6)[key]

    s = LazyStack(Source(), index=[0, 1, 3, 4])
    out = s[:, 1:2, :]
    assert out.shape == (4, 1, 6)
    assert calls == [(slice(0, 2), slice(1, 2), slice(None)), (slice(3, 5), slice(1, 2),
                                                                slice(None))]
    assert s[2].shape == (4, 6)
    assert s.to_dask()[2].compute().shape == (4, 6)


@pytest.mark.skipif(not TOOTH.is_file(), reason="shared/data/tooth.h5 not available")
def test_tooth_reads_as_aps_dxchange():
    with read_tomo(TOOTH) as d:
        assert d.shape == (181, 2, 640)
        assert d.flats.shape == (10, 2, 640) and d.darks.shape == (10, 2, 640)
        assert d.angles[0] == 0 and 178 < d.angles[-1] < 180
        s = d.sinograms(rows=slice(0, 1))
        assert s.shape == (1, 181, 640) and np.all(np.isfinite(s))
        assert 1.0 < s.max() < 3.0 and s.min() > -0.5  # -log of a transmission, not raw counts
