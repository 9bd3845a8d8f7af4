"""Writers: round trips keep data and metadata; atomic; no silent overwrite."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

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


# ------------------------------------------------------------------ temporary files, modes, folders (#14)
def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_writers_temporary_files_are_removed_by_the_next_write(tmp_path):
    from napari_ganrec.io._common import _host

    dead = _dead_pid()
    stale_old = tmp_path / f".rec.tif.tmp-{dead}"  # what distributed.assemble used to leave
    stale_new = tmp_path / f".rec.tif.tmp-{_host()}-{dead}-abc123.part"
    live = tmp_path / f".rec.tif.tmp-{_host()}-{os.getppid()}-def456.part"  # a writer still running
    other_host = tmp_path / f".rec.tif.tmp-otherhost-{dead}-ghi789.part"  # a shared file system
    for p in (stale_old, stale_new, live, other_host):
        p.write_bytes(b"x" * 1000)
    write_volume(tmp_path / "rec.tif", np.ones((2, 8, 8)), META)
    assert not stale_old.exists() and not stale_new.exists()
    assert live.exists() and other_host.exists()


def test_a_killed_assembly_is_cleaned_up_by_the_next_run(tmp_path):
    from napari_ganrec.distributed import run_distributed

    sinos = np.random.default_rng(0).random((3, 12, 16)).astype(np.float32)
    angles = np.linspace(0, 180, 12, endpoint=False)
    out = tmp_path / "vol.tif"
    stale = tmp_path / f".vol.tif.tmp-{_dead_pid()}"
    stale.write_bytes(b"\0" * 4096)
    run_distributed(sinos, out, angles, method="fbp", workers=0, device="cpu")
    assert out.exists() and not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.tif", "vol.tif.json"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_users_umask(tmp_path, umask):
    from napari_ganrec.distributed import run_distributed

    old = os.umask(umask)
    try:
        one = write_volume(tmp_path / "one.tif", np.ones((8, 8)), META)
        lab = write_labels(tmp_path / "lab.h5", np.ones((2, 8, 8), np.uint8))
        many = run_distributed(np.random.default_rng(0).random((3, 12, 16)).astype(np.float32),
                               tmp_path / "many.tif", np.linspace(0, 180, 12, endpoint=False), method="fbp",
                               workers=0, device="cpu")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for p in (one, sidecar_path(one), lab, many, sidecar_path(many)):
        assert os.stat(p).st_mode & 0o777 == expected, p


def test_library_writers_refuse_a_missing_folder_alike(tmp_path):
    from napari_ganrec.distributed import run_distributed

    with pytest.raises(FileNotFoundError, match="folder .*missing does not exist"):
        write_volume(tmp_path / "missing" / "one.tif", np.ones((8, 8)))
    with pytest.raises(FileNotFoundError, match="folder .*missing does not exist"):
        run_distributed(np.ones((2, 12, 16), np.float32), tmp_path / "missing" / "many.tif",
                        np.linspace(0, 180, 12, endpoint=False), method="fbp", workers=0, device="cpu")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("slices", ["0:1", "0:3"])
def test_cli_creates_a_missing_output_folder_for_one_slice_and_for_several(tmp_path, capsys, slices):
    from napari_ganrec.cli import main

    proj = np.exp(-np.random.default_rng(0).random((12, 3, 16))).astype(np.float32)
    np.save(tmp_path / "proj.npy", proj)
    out = tmp_path / "new" / "deeper" / "rec.tif"
    assert main(["reconstruct", str(tmp_path / "proj.npy"), "-o", str(out), "--angles", "0:180", "--method", "fbp",
                 "--device", "cpu", "--slices", slices, "--center", "8"]) == 0
    data, _ = read_volume(out)
    assert data.shape[-2:] == (16, 16) and (data.ndim == 2) == (slices == "0:1")
    assert f"created folder {out.parent}" in capsys.readouterr().out


def test_chunked_volume_from_a_zarr_store_matches_the_in_memory_writer(tmp_path):
    """distributed.assemble and io.write_volume are one writer: the same data and metadata."""
    import zarr

    from napari_ganrec.distributed import assemble

    vol = np.random.default_rng(1).random((5, 8, 8)).astype(np.float32)
    store = zarr.open_array(str(tmp_path / "s.zarr"), mode="w-", shape=vol.shape, chunks=(1, 8, 8), dtype="f4")
    store[:] = vol
    for suffix in (".tif", ".h5", ".npy"):
        a = assemble(tmp_path / "s.zarr", tmp_path / f"a{suffix}", chunk=2, metadata=META)
        b = write_volume(tmp_path / f"b{suffix}", vol, META)
        (da, ma), (db, mb) = read_volume(a), read_volume(b)
        np.testing.assert_array_equal(da, db)
        drop = {"written"}
        assert {k: v for k, v in ma.items() if k not in drop} == {k: v for k, v in mb.items() if k not in drop}
    with pytest.raises(ValueError, match="slices 2 to 3 contain NaN"):
        store[3, 0, 0] = np.nan
        assemble(tmp_path / "s.zarr", tmp_path / "nan.tif", chunk=2)
    assert not (tmp_path / "nan.tif").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_every_write_goes_through_io():
    """No module outside napari_ganrec/io renames or creates temporary files itself."""
    import re
    from pathlib import Path

    root = Path(napari_ganrec.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if "io" in path.relative_to(root).parts[:1]:
            continue
        text = path.read_text()
        for pattern in (r"os\.replace\(", r"mkstemp\(", r"\.tmp-\{", r"zarr\.open_array\([^)]*mode=\"(w|r\+)"):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(root)}: {pattern}")
    assert offenders == []


def test_a_zarr_output_records_its_metadata(tmp_path):
    import zarr

    from napari_ganrec.distributed import run_distributed
    from napari_ganrec.io.zarr_store import METADATA_KEY, PARAMS_KEY

    sinos = np.random.default_rng(0).random((3, 12, 16)).astype(np.float32)
    out = run_distributed(sinos, tmp_path / "v.zarr", np.linspace(0, 180, 12, endpoint=False), method="fbp",
                          workers=0, device="cpu", metadata=META)
    arr = zarr.open_array(str(out), mode="r")
    assert arr.shape == (3, 16, 16)
    assert arr.attrs[METADATA_KEY]["center"] == META["center"] and arr.attrs[PARAMS_KEY]["method"] == "fbp"


def test_kill_9_during_a_chunked_write_then_the_next_write_cleans_up(tmp_path):
    """A real kill: the writer dies inside write_volume; its temporary file is removed by the next run."""
    import signal
    import subprocess
    import sys
    import time

    flag = tmp_path / "started"
    script = f"""
import time, numpy as np, pathlib
from napari_ganrec.io import write_volume

class Slow:
    shape, dtype = (40, 16, 16), np.dtype("float32")
    def __getitem__(self, key):
        pathlib.Path({str(flag)!r}).touch()
        time.sleep(0.5)
        return np.ones((len(range(*key.indices(40))), 16, 16), np.float32)

write_volume({str(tmp_path / "vol.tif")!r}, Slow(), {{}}, chunk=2)
"""
    root = Path(napari_ganrec.__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root)
    try:
        deadline = time.monotonic() + 120
        while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flag.exists(), "the writer did not start"
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".vol.tif.tmp-")]
    assert left and not (tmp_path / "vol.tif").exists()
    write_volume(tmp_path / "vol.tif", np.zeros((2, 16, 16), np.float32), META)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".vol.tif.tmp-")]
    assert read_volume(tmp_path / "vol.tif")[0].shape == (2, 16, 16)
