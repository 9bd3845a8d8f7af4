"""Tests of ``napari-ganrec segment``."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_ganrec import phantoms
from napari_ganrec import segment as sg
from napari_ganrec.cli import main


@pytest.fixture(scope="module")
def volume():
    return phantoms.porous_particle(32, nz=32, seed=2).rasterize()


@pytest.fixture
def recon(tmp_path, volume):
    path = tmp_path / "recon.tif"
    tifffile.imwrite(path, volume)
    return path


def test_segment_writes_labels_csv_and_mask(tmp_path, recon, volume, capsys):
    out, csv, mask = tmp_path / "labels.tif", tmp_path / "pores.csv", tmp_path / "mask.tif"
    rc = main(["segment", str(recon), "-o", str(out), "--csv", str(csv), "--mask", str(mask), "-q"])
    assert rc == 0
    ref = sg.segment(volume)
    np.testing.assert_array_equal(tifffile.imread(out), ref.labels)
    np.testing.assert_array_equal(tifffile.imread(mask), ref.particle_mask.astype(np.uint8))
    assert len(csv.read_text().splitlines()) == ref.pore_count + 1
    printed = capsys.readouterr().out
    assert f"{ref.pore_count} pores" in printed and f"{100 * ref.porosity:.3f} %" in printed


def test_threshold_value_and_options(tmp_path, recon, volume):
    out = tmp_path / "labels.tif"
    args = ["segment", str(recon), "-o", str(out), "--threshold", "0.3", "--min-size", "20"]
    assert main([*args, "--voxel-size", "2", "--denoise", "gaussian", "-q"]) == 0
    ref = sg.segment(volume, pore_threshold=0.3, min_size=20, denoise="gaussian")
    np.testing.assert_array_equal(tifffile.imread(out), ref.labels)


def test_refuses_to_overwrite_unless_asked(tmp_path, recon, capsys):
    out = tmp_path / "labels.tif"
    out.write_bytes(b"precious")
    assert main(["segment", str(recon), "-o", str(out), "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main(["segment", str(recon), "-o", str(out), "-q", "--overwrite"]) == 0
    assert tifffile.imread(out).ndim == 3


def test_bad_input(tmp_path, capsys):
    assert main(["segment", str(tmp_path / "none.tif"), "-o", str(tmp_path / "o.tif")]) == 2
    assert "does not exist" in capsys.readouterr().err
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((8, 8), np.float32))
    assert main(["segment", str(flat), "-o", str(tmp_path / "o.tif")]) == 2
    assert "3-D" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(flat), "-o", str(tmp_path / "o.tif"), "--threshold", "magic"])
    assert exc.value.code == 2
    assert "otsu" in capsys.readouterr().err


def test_npy_input_and_progress(tmp_path, volume, capsys):
    src = tmp_path / "recon.npy"
    np.save(src, volume)
    assert main(["segment", str(src), "-o", str(tmp_path / "l.tif"), "--threshold", "li"]) == 0
    assert "done" in capsys.readouterr().err


# ------------------------------------------------------------------------------ bad input (issue 14)
@pytest.mark.parametrize(
    "args, message",
    [
        (["-o", "{d}/o.png"], "-o {d}/o.png: labels and masks are written as TIFF"),
        (["-o", "{d}/o.tif", "--mask", "{d}/m.npy"], "--mask {d}/m.npy: labels and masks are written as TIFF"),
        (["-o", "{d}/recon.tif", "--overwrite"], "is the input volume; write the results to another file"),
    ],
)
def test_outputs_are_checked_before_any_work(tmp_path, recon, capsys, monkeypatch, args, message):
    called = []
    monkeypatch.setattr(sg, "segment", lambda *a, **k: called.append(1))
    before = recon.read_bytes()
    rc = main(["segment", str(recon), *[a.format(d=tmp_path) for a in args], "-q"])
    assert rc == 2 and message.format(d=tmp_path) in capsys.readouterr().err
    assert not called and recon.read_bytes() == before


def test_a_missing_output_folder_is_created_like_reconstruct(tmp_path, recon, volume, capsys):
    out = tmp_path / "new" / "labels.tif"
    assert main(["segment", str(recon), "-o", str(out), "--csv", str(tmp_path / "t" / "p.csv"), "-q"]) == 0
    np.testing.assert_array_equal(tifffile.imread(out), sg.segment(volume).labels)
    assert (tmp_path / "t" / "p.csv").is_file()
    assert f"created folder {out.parent}" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [(b"", "is empty (0 bytes)"), (b"not a tiff", "is not a readable TIFF")])
def test_unreadable_input_names_the_file(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(content)
    assert main(["segment", str(bad), "-o", str(tmp_path / "o.tif"), "-q"]) == 2
    assert f"input {bad} {message}" in capsys.readouterr().err


def test_a_constant_volume_is_refused(tmp_path, capsys):
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.ones((8, 16, 16), np.float32))
    assert main(["segment", str(flat), "-o", str(tmp_path / "o.tif"), "-q"]) == 2
    assert "the volume is constant (every voxel is 1): there is no contrast" in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()


def test_reads_what_reconstruct_writes_in_hdf5(tmp_path, volume):
    from napari_ganrec.io import write_volume

    h5 = write_volume(tmp_path / "rec.h5", volume.astype(np.float32), {"method": "fbp"})
    out = tmp_path / "labels.tif"
    assert main(["segment", str(h5), "-o", str(out), "-q"]) == 0
    np.testing.assert_array_equal(tifffile.imread(out), sg.segment(volume).labels)
