"""Bad or odd input on the API and the command line (issue 14): a clear ``ValueError`` naming the
problem and what to do, or a correct result with a warning; never a silently wrong result."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import napari_ganrec as ng
from napari_ganrec import phantoms
from napari_ganrec.cli import main
from napari_ganrec.geometry import (
    MAX_SEED,
    Geometry,
    validate_center,
    validate_rows,
    validate_seed,
    validate_weight,
)
from napari_ganrec.volume import reconstruct_volume

ANGLES = np.linspace(0.0, 180.0, 30, endpoint=False)


@pytest.fixture(scope="module")
def sino():
    return phantoms.simulate_sinogram(phantoms.shepp_logan(32), ANGLES).astype(np.float32)


def _rec(sino, angles, **kw):
    kw.setdefault("method", "fbp")
    kw.setdefault("device", "cpu")
    return ng.reconstruct(sino, angles, **kw)


# ----------------------------------------------------------------------------- silently wrong before
def test_all_angles_equal_is_refused(sino):
    with pytest.raises(ValueError, match="all 30 angles are equal .10 degrees.*different angles"):
        _rec(sino, np.full(30, 10.0))
    with pytest.raises(ValueError, match="all 30 angles are equal"):
        reconstruct_volume(np.stack([sino, sino]), np.full(30, 10.0), method="fbp", device="cpu")


def test_a_single_angle_is_refused(sino):
    with pytest.raises(ValueError, match="single projection angle.*two or more"):
        _rec(sino[:1], [0.0])
    # a geometry to forward-project one view is still fine
    assert Geometry.create([30.0], 16).n_angles == 1


def test_nan_centre_is_refused_not_taken_for_the_middle(sino):
    with pytest.raises(ValueError, match="center is NaN.*middle of the detector is 16"):
        _rec(sino, ANGLES, center=float("nan"))
    with pytest.raises(ValueError, match="center is NaN"):
        reconstruct_volume(np.stack([sino, sino]), ANGLES, method="fbp", device="cpu", center=np.nan)
    with pytest.raises(ValueError, match="center is NaN"):
        Geometry(tuple(ANGLES), 32, float("nan"))
    # None is the documented default: the middle
    assert Geometry.create(ANGLES, 32).center == 16.0
    assert Geometry.create(ANGLES, 32, None).center == 16.0


def test_rows_outside_the_data_are_refused_not_clipped(sino):
    stack = np.stack([sino] * 4)
    with pytest.raises(ValueError, match="rows 2:10 is outside the 4 slice"):
        reconstruct_volume(stack, ANGLES, rows=(2, 10), method="fbp", device="cpu")
    with pytest.raises(ValueError, match="rows -1:2 is outside"):
        reconstruct_volume(stack, ANGLES, rows=(-1, 2), method="fbp", device="cpu")
    with pytest.raises(ValueError, match="selects no slice"):
        reconstruct_volume(stack, ANGLES, rows=(3, 1), method="fbp", device="cpu")
    with pytest.raises(ValueError, match="bounds must be integers"):
        reconstruct_volume(stack, ANGLES, rows=(0.5, 2), method="fbp", device="cpu")
    out = reconstruct_volume(stack, ANGLES, rows=(2, 4), method="fbp", device="cpu")
    assert out.shape == (2, 32, 32)
    assert np.allclose(out[0], _rec(sino, ANGLES), atol=1e-5)


def test_validate_rows_accepts_open_slices_and_gives_exact_bounds():
    assert validate_rows(None, 4) == (0, 4)
    assert validate_rows(slice(2, None), 4) == (2, 4)
    assert validate_rows(slice(None, 3), 4) == (0, 3)
    assert validate_rows((np.int64(1), np.int64(4)), 4) == (1, 4)
    with pytest.raises(ValueError, match="step 1"):
        validate_rows(slice(0, 4, 2), 4)
    with pytest.raises(ValueError, match="slice or .start, stop."):
        validate_rows(2, 4)


def test_seed_none_and_out_of_range_are_clear_errors(sino):
    with pytest.raises(ValueError, match="seed must be an integer.*got None.*secrets.randbelow"):
        _rec(sino, ANGLES, method="ganrec", iterations=1, seed=None)
    with pytest.raises(ValueError, match="seed must be an integer from 0 to 2\\*\\*63-1"):
        _rec(sino, ANGLES, method="ganrec", iterations=1, seed=2**70)
    with pytest.raises(ValueError, match="seed must be an integer.*got None"):
        reconstruct_volume(np.stack([sino, sino]), ANGLES, method="ganrec", iterations=1, device="cpu", seed=None)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="seed"):
            validate_seed(bad)
    assert validate_seed(MAX_SEED) == MAX_SEED and validate_seed(np.int64(7)) == 7 and validate_seed(3.0) == 3


def test_the_largest_seed_runs_and_is_reproducible(sino):
    a = _rec(sino, ANGLES, method="ganrec", iterations=2, seed=MAX_SEED)
    b = _rec(sino, ANGLES, method="ganrec", iterations=2, seed=MAX_SEED)
    assert np.array_equal(a, b) and np.isfinite(a).all()


def test_nan_tv_weight_is_refused_instead_of_an_all_nan_image(sino):
    with pytest.raises(ValueError, match="tv_weight must be a finite number >= 0, got nan"):
        _rec(sino, ANGLES, method="tv", iterations=2, tv_weight=float("nan"))
    with pytest.raises(ValueError, match="tv_weight"):
        validate_weight(-0.1)
    assert validate_weight(None) is None and validate_weight(0) == 0.0


# ------------------------------------------------------------------------------- misleading before
def test_transposed_sinogram_is_named(sino):
    with pytest.raises(ValueError, match="looks transposed.*sinogram.T"):
        _rec(sino.T, ANGLES)


def test_duplicate_angles_warn_and_still_reconstruct(sino):
    angles = ANGLES.copy()
    angles[-1] = angles[-2]
    with pytest.warns(UserWarning, match="repeat 1 value"):
        rec = _rec(sino, angles)
    assert rec.shape == (32, 32) and np.isfinite(rec).all()


def test_integer_sinogram_warns_that_line_integrals_are_expected(sino):
    counts = np.round(sino * 100).astype(np.int16)
    with pytest.warns(UserWarning, match="integers or booleans .int16.*line integrals"):
        rec = _rec(counts, ANGLES)
    assert np.allclose(rec, _rec(counts.astype(np.float32), ANGLES))


def test_unsorted_angles_are_a_valid_acquisition(sino):
    order = np.random.default_rng(1).permutation(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shuffled = _rec(sino[order], ANGLES[order])
    assert np.allclose(shuffled, _rec(sino, ANGLES), atol=1e-5)


def test_validate_center_automatic_says_it_was_automatic():
    with pytest.raises(ValueError, match="automatic centre of rotation, -922.6 px.*outside the detector.*--center"):
        validate_center(-922.6, 64, automatic=True)
    with pytest.raises(ValueError, match="center must lie on the detector .0 to 64"):
        validate_center(70, 64)
    with pytest.raises(ValueError, match="number of pixels"):
        validate_center("left", 64)
    assert validate_center(None, 64) is None and validate_center(np.float32(31.5), 64) == 31.5


# ------------------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def stack_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_cli")
    p = phantoms.porous_particle(32, nz=4, n_pores=4, seed=1)
    angles = np.linspace(0, 120, 40, endpoint=False)
    np.save(d / "proj.npy", phantoms.simulate_projections(p, angles))
    np.savetxt(d / "equal.txt", np.full(40, 5.0))
    np.savetxt(d / "radians.txt", np.deg2rad(angles))
    return d


def _cli(stack_file, tmp_path, *extra, out="r.tif"):
    return main(["reconstruct", str(stack_file / "proj.npy"), "-o", str(tmp_path / out), "--device", "cpu",
                 "--method", "fbp", *extra])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--angles", "0:3.1416"], "looks like radians; --angles takes degrees .e.g. --angles 0:180"),
        (["--angles", "10:10"], "all 40 angles are equal"),
        (["--angles", "0:120", "--center", "nan"], "--center is NaN"),
        (["--angles", "0:120", "--center", "99"], "--center must lie on the detector .0 to 32"),
        (["--angles", "0:120", "--slices", "3:1"], "selects no row"),
        (["--angles", "0:120", "--slices", "2:9"], "outside the 4 rows of the input .0:4."),
        (["--angles", "0:120", "--center", "16", "--iterations", "0", "--method", "sirt"], "iterations must be"),
        (["--angles", "0:120", "--center", "16", "--slab", "0"], "slab_size must be a positive integer"),
        (["--angles", "0:120", "--center", "16", "--method", "tv", "--tv-weight", "nan", "--slices", "0:1"],
         "--tv-weight must be a finite number"),
    ],
)
def test_cli_bad_arguments_are_clear_errors(stack_file, tmp_path, capsys, extra, message):
    assert _cli(stack_file, tmp_path, *extra) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "r.tif").exists()


def test_cli_equal_angles_from_a_file(stack_file, tmp_path, capsys):
    assert _cli(stack_file, tmp_path, "--angles-file", str(stack_file / "equal.txt")) == 2
    # the angle-file reader names the file and the repeated value
    err = capsys.readouterr().err
    assert "equal.txt" in err and "all 40 angles are equal (5" in err


def test_cli_automatic_centre_off_the_detector_says_it_was_automatic(stack_file, tmp_path, capsys):
    with pytest.warns(UserWarning, match="radians"):
        code = _cli(stack_file, tmp_path, "--angles-file", str(stack_file / "radians.txt"))
    err = capsys.readouterr().err
    assert code == 2
    assert "the automatic centre of rotation" in err and "check the angles" in err and "--center C" in err
    assert "center must lie" not in err  # it does not blame a centre the user never gave


@pytest.mark.parametrize("seed", [str(2**70), "-5", "1.5", "none"])
def test_cli_bad_seed_is_an_argument_error(stack_file, tmp_path, capsys, seed):
    with pytest.raises(SystemExit) as info:
        _cli(stack_file, tmp_path, "--angles", "0:120", "--seed", seed)
    assert info.value.code == 2
    assert "argument --seed: must be an integer from 0 to 2**63-1, or 'random'" in capsys.readouterr().err


def test_cli_random_seed_is_drawn_and_recorded(stack_file, tmp_path):
    from napari_ganrec.io import read_volume

    args = ["--angles", "0:120", "--center", "16", "--slices", "1:2", "--method", "ganrec", "--iterations", "2",
            "--seed", "random"]
    assert _cli(stack_file, tmp_path, *args, out="a.tif") == 0
    assert _cli(stack_file, tmp_path, *args, out="b.tif") == 0
    rec_a, meta_a = read_volume(tmp_path / "a.tif")
    _, meta_b = read_volume(tmp_path / "b.tif")
    assert isinstance(meta_a["seed"], int) and 0 <= meta_a["seed"] <= MAX_SEED
    assert meta_a["seed"] != meta_b["seed"]
    # the recorded seed repeats the run exactly
    args[-1] = str(meta_a["seed"])
    assert _cli(stack_file, tmp_path, *args, out="c.tif") == 0
    assert np.array_equal(read_volume(tmp_path / "c.tif")[0], rec_a)


@pytest.mark.parametrize(
    "out, slices, message",
    [
        ("x.png", "0:1", "unknown output type '.png' for one slice; use one of .tif"),
        ("x.png", "0:4", "unknown output type '.png' for 4 slices"),
        ("noext", "0:4", "unknown output type '(none)'"),
    ],
)
def test_cli_unknown_output_type_is_refused_before_any_work(stack_file, tmp_path, capsys, out, slices, message):
    assert _cli(stack_file, tmp_path, "--angles", "0:120", "--slices", slices, out=out) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "centre" not in err  # refused before the centre search


def test_cli_existing_single_slice_output_is_refused_before_reconstructing(stack_file, tmp_path, capsys, monkeypatch):
    from napari_ganrec import api

    (tmp_path / "r.tif").write_bytes(b"keep")
    called = []
    monkeypatch.setattr(api, "iter_reconstruct", lambda *a, **k: called.append(1) or iter(()))
    assert _cli(stack_file, tmp_path, "--angles", "0:120", "--slices", "0:1", "--center", "16") == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert not called and (tmp_path / "r.tif").read_bytes() == b"keep"


def test_cli_output_that_is_a_folder(stack_file, tmp_path, capsys):
    (tmp_path / "out.tif").mkdir()
    assert _cli(stack_file, tmp_path, "--angles", "0:120", out="out.tif") == 2
    assert "is a folder; give a file name" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- more cases
def test_radians_warn_once_and_still_reconstruct(sino):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _rec(sino, np.deg2rad(ANGLES))
        reconstruct_volume(np.stack([sino, sino]), np.deg2rad(ANGLES), method="fbp", device="cpu")
    radians = [w for w in caught if "look like radians" in str(w.message)]
    assert len(radians) == 2  # one per call


def test_an_empty_stack_is_refused_not_returned_as_none(sino):
    with pytest.raises(ValueError, match="the data hold no slice"):
        reconstruct_volume(np.zeros((0, 30, 32), np.float32), ANGLES, method="fbp", device="cpu")


def test_an_integer_out_array_is_refused_before_it_truncates(sino):
    out = np.zeros((2, 32, 32), np.int32)
    with pytest.raises(ValueError, match="out holds int32, which would truncate"):
        reconstruct_volume(np.stack([sino, sino]), ANGLES, method="fbp", device="cpu", out=out)
    good = np.zeros((2, 32, 32), np.float32)
    reconstruct_volume(np.stack([sino, sino]), ANGLES, method="fbp", device="cpu", out=good)
    assert np.allclose(good[1], _rec(sino, ANGLES), atol=1e-5)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("scan.npy", "must be an array, got the path 'scan.npy'; read files with napari_ganrec.io.read_tomo"),
        (None, "sinogram is None"),
        (np.ones(32), "must be 2-D .n_angles, n_det. or 3-D"),
        (np.ones((30, 1)), "detector of 1 pixel"),
        (np.ones((30, 32), np.complex64), "must be real"),
    ],
)
def test_bad_sinograms_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        _rec(bad, ANGLES)


def test_missing_angles_are_named(sino):
    with pytest.raises(ValueError, match="angles are required: one angle per projection, in degrees; got None"):
        _rec(sino, None)
