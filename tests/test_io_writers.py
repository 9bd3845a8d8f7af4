"""Writers: round trips keep data and metadata; atomic; no silent overwrite."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

import napari_ganrec
from napari_ganrec.io import read_volume, write_labels, write_volume
from napari_ganrec.io._common import sidecar_path

META = {"method": "ganrec", "angles": [0.0, 1.5, 3.0], "center": 31.25, "iterations": 200,
        "seed": 7}
SUFFIXES = [".tif", ".h5", ".npy", ".npz", ".mrc"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_volume_round_trip(tmp_path, suffix):
    vol = np.random.default_rng(0).normal(size=(3, 16, 16)).astype(np.float32)
    path = write_volume(tmp_path / f"rec{suffix}", vol, META)
    data, meta = read_volume(path)
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, vol)
    for k, v in META.items():
        assert meta[k] == v, k
    assert meta["version"] == napari_ganrec.__version__
    assert meta["kind"] == "reconstruction"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_tiff_has_metadata_in_file_and_sidecar(tmp_path):
    import tifffile

    path = write_volume(tmp_path / "rec.tif", np.ones((2, 8, 8)), META)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 2
        embedded = tif.shaped_metadata[0]
        assert embedded["method"] == "ganrec" and embedded["center"] == 31.25
    side = json.loads(sidecar_path(path).read_text())
    assert side["iterations"] == 200 and side["angles"] == META["angles"]


@pytest.mark.parametrize("suffix", [".tif", ".h5", ".npz"])
def test_labels_round_trip(tmp_path, suffix):
    labels = np.zeros((4, 10, 10), np.int64)
    labels[1, 2:5, 2:5] = 3
    labels[2, 6:8, 1:9] = 300
    path = write_labels(tmp_path / f"lab{suffix}", labels, {"threshold": 0.4})
    data, meta = read_volume(path)
    np.testing.assert_array_equal(data, labels)
    assert data.dtype == np.uint16 and meta["kind"] == "labels" and meta["threshold"] == 0.4


def test_no_overwrite_without_flag(tmp_path):
    path = write_volume(tmp_path / "rec.tif", np.ones((8, 8)), META)
    with pytest.raises(FileExistsError, match="rec.tif"):
        write_volume(path, np.zeros((8, 8)), META)
    assert read_volume(path)[0].max() == 1
    write_volume(path, np.zeros((8, 8)), META, overwrite=True)
    assert read_volume(path)[0].max() == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="read-only"):
            write_volume(folder / "rec.tif", np.ones((8, 8)), META)
    finally:
        folder.chmod(0o700)


def test_read_only_folder_is_detected(tmp_path, monkeypatch):
    """Also under root: the access check names the folder."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if m == os.W_OK else real(p, m))
    with pytest.raises(PermissionError, match="read-only"):
        write_volume(tmp_path / "rec.h5", np.ones((8, 8)), META)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_leaves_no_partial_file(tmp_path, monkeypatch):
    import tifffile

    target = tmp_path / "rec.tif"

    def full_disk(path, data, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"II*\x00 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", full_disk)
    with pytest.raises(OSError, match="no space left") as info:
        write_volume(target, np.ones((4, 8, 8)), META)
    assert info.value.errno == errno.ENOSPC and "rec.tif" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # neither target, side-car nor temporary file


def test_disk_full_keeps_existing_file(tmp_path, monkeypatch):
    import h5py

    target = write_volume(tmp_path / "rec.h5", np.ones((8, 8)), META)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.File, "create_dataset", full_disk)
    with pytest.raises(OSError, match="no space left"):
        write_volume(target, np.zeros((8, 8)), META, overwrite=True)
    assert read_volume(target)[0].max() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.h5"]


def test_bad_output_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown output type"):
        write_volume(tmp_path / "rec.png", np.ones((8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        write_volume(tmp_path / "rec.tif", np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="integers"):
        write_labels(tmp_path / "l.tif", np.ones((8, 8)) * 0.5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_volume(tmp_path / "missing" / "rec.tif", np.ones((8, 8)))
