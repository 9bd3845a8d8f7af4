"""Electron-tomography tilt series as FEI/Thermo software writes them (issue #14): no 'MAP ' id,
tilt angles in the old FEI extended header (empty exttyp), int16 with an offset of -32768, tilt
axis along x, pixel size in the header."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ganrec.io import TomoFormatError, line_integrals, read_tomo, resolve_kind
from napari_ganrec.io.mrc import detect_tilt_axis

mrcfile = pytest.importorskip("mrcfile")
from scipy.ndimage import rotate  # noqa: E402

TILTS = np.linspace(-60.0, 60.0, 9)


def _tilt_series(tilts=TILTS, ny=20, nx=32, seed=0):
    """Projections (n_tilts, ny, nx) of blobs (inside the rotation circle) tilted about the y axis."""
    rng = np.random.default_rng(seed)
    nz = nx
    vol = np.zeros((nz, ny, nx), np.float32)
    for _ in range(12):
        r, phi = rng.uniform(0, nx / 2 - 5), rng.uniform(0, 2 * np.pi)
        z, x = int(nz / 2 + r * np.sin(phi)), int(nx / 2 + r * np.cos(phi))
        y = rng.integers(2, ny - 2)
        vol[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] += rng.uniform(0.5, 1.0)
    out = []
    for t in tilts:
        r = rotate(vol, t, axes=(0, 2), reshape=False, order=1)  # rotation in the z-x plane
        out.append(r.sum(axis=0))
    return np.asarray(out, np.float32)


def _old_fei_ext(tilts, n_records=1024, pixel_m=None, tilt_axis_deg=0.0, order="<"):
    rec = np.zeros((n_records, 32), dtype=order + "f4")
    rec[: len(tilts), 0] = tilts  # a_tilt
    rec[: len(tilts), 10] = tilt_axis_deg
    if pixel_m is not None:
        rec[: len(tilts), 11] = pixel_m
    return np.frombuffer(rec.tobytes(), dtype="V1")


def _write(path, data, ext=None, voxel=None, drop_map_id=False):
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)
        if ext is not None:
            m.set_extended_header(ext)
            m.header.exttyp = b""
        if voxel is not None:
            m.voxel_size = voxel
        else:
            m.header.cella = (0.0, 0.0, 0.0)
    if drop_map_id:
        raw = bytearray(path.read_bytes())
        raw[208:212] = b"\x00\x00\x00\x00"
        path.write_bytes(bytes(raw))
    return path


def test_old_fei_header_angles_without_map_id_int16_offset_and_pixel_size(tmp_path):
    proj = _tilt_series()
    counts = (1000 + 2000 * proj / proj.max()).astype(np.int32)
    stored = (counts - 32768).astype(np.int16)  # FEI: intensities stored with an offset of -32768
    path = _write(tmp_path / "fei_old.mrc", stored, ext=_old_fei_ext(TILTS, pixel_m=3.1e-10),
                  drop_map_id=True)
    with pytest.warns(UserWarning, match="read permissively"):
        d = read_tomo(path)
    with d:
        np.testing.assert_allclose(d.angles, TILTS, atol=1e-5)
        assert d.metadata["angle_source"] == "old_fei_extended_header"
        assert d.metadata["pixel_size"] == 3.1  # rounded from the float32 metres
        assert d.metadata["pixel_size_unit"] == "angstrom"
        assert d.metadata["int16_offset"] == -32768
        assert d.metadata["tilt_axis"] == "y"
        k = resolve_kind(d)
        assert k.kind == "line_integrals" and not k.assumed and "offset of -32768" in k.reason
        # used as they are: never -log'd as if they were raw counts
        np.testing.assert_array_equal(line_integrals(d), stored.astype(np.float32).transpose(1, 0, 2))


def test_header_pixel_size_wins_and_is_along_the_detector(tmp_path):
    proj = _tilt_series()
    path = _write(tmp_path / "px.mrc", proj, voxel=(2.0, 4.0, 1.0))  # (x, y, z) in Angstrom
    np.savetxt(tmp_path / "px.rawtlt", TILTS)
    with read_tomo(path) as d:
        assert d.metadata["pixel_size"] == pytest.approx(2.0)
        assert d.metadata["voxel_size"] == pytest.approx([1.0, 4.0, 2.0])


def test_tilt_axis_along_x_is_detected_and_said(tmp_path):
    proj = _tilt_series()
    assert detect_tilt_axis(proj)[0] == "y"
    assert detect_tilt_axis(proj.transpose(0, 2, 1))[0] == "x"
    path = _write(tmp_path / "x.mrc", np.ascontiguousarray(proj.transpose(0, 2, 1)), voxel=(2.0, 3.0, 1.0))
    np.savetxt(tmp_path / "x.rawtlt", TILTS)
    with pytest.warns(UserWarning, match="tilt axis runs along x"):
        d = read_tomo(path)
    with d:
        assert d.metadata["tilt_axis"] == "x" and "detected" in d.metadata["tilt_axis_source"]
        assert d.shape == proj.shape
        np.testing.assert_array_equal(np.asarray(d.projections[:]), proj)
        assert d.metadata["pixel_size"] == pytest.approx(3.0)  # the header's y is now the detector axis
    with read_tomo(path, tilt_axis="y") as d:  # asked: as stored
        assert d.metadata["tilt_axis"] == "y" and d.metadata["tilt_axis_source"] == "argument"
        assert d.shape == (len(TILTS), proj.shape[2], proj.shape[1])
    with pytest.raises(ValueError, match="tilt_axis must be one of"):
        read_tomo(path, tilt_axis="z")


def test_unclear_tilt_axis_falls_back_to_y_with_a_warning(tmp_path):
    flat = np.ones((len(TILTS), 8, 8), np.float32)
    path = _write(tmp_path / "u.mrc", flat)
    np.savetxt(tmp_path / "u.rawtlt", TILTS)
    with pytest.warns(UserWarning, match="could not be told"):
        d = read_tomo(path)
    with d:
        assert d.metadata["tilt_axis"] == "y" and "default" in d.metadata["tilt_axis_source"]


def test_complex_mrc_is_refused(tmp_path):
    path = _write(tmp_path / "c.mrc", (np.ones((3, 4, 5)) * (1 + 2j)).astype(np.complex64))
    np.savetxt(tmp_path / "c.rawtlt", [0, 10, 20])
    with pytest.raises(TomoFormatError, match="complex"):
        read_tomo(path)


def test_an_imod_rec_volume_is_not_taken_for_a_tilt_series(tmp_path):
    path = _write(tmp_path / "vol.rec", np.ones((3, 8, 8), np.float32))
    np.savetxt(tmp_path / "vol.rawtlt", [0, 10, 20])
    with read_tomo(path, tilt_axis="y") as d, pytest.raises(ValueError, match="reconstruction"):
        resolve_kind(d)
