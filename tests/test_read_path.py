"""The one read path (napari_ganrec.io.line_integrals): what the data hold, and one slice reading
like many for every --data choice (issue #12: the volume path divided by the flats)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from _io_fixtures import ANGLES, N_ANG, N_DET, N_ROW, raw_stack, write_dxchange, write_nxtomo

from napari_ganrec.cli import main
from napari_ganrec.io import (
    DataKind,
    NotLineIntegralsError,
    TomoData,
    line_integrals,
    read_tomo,
    resolve_kind,
    tomodata_from_layer,
)
from napari_ganrec.volume import LoaderSource, PathSource


def _line_integrals(n_ang=N_ANG, n_row=N_ROW, n_det=N_DET, peak=0.3, seed=0):
    """A weakly absorbing sample: line integrals in [0, peak], air (edges) at 0."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, n_det)
    body = np.clip(1 - (x / 0.6) ** 2, 0, None)
    p = body[None, None, :] * rng.uniform(0.5, 1.0, (n_ang, n_row, 1))
    return (peak * p).astype(np.float32)


# ----------------------------------------------------------------------------- resolve_kind
def test_flats_and_darks_say_raw_and_are_applied(tmp_path):
    proj, flats, darks, p = raw_stack()
    with read_tomo(write_dxchange(tmp_path / "r.h5", proj, flats, darks)) as d:
        k = resolve_kind(d)
        assert k == DataKind("raw", "the file has flats and darks", False)
        np.testing.assert_allclose(line_integrals(d), p.transpose(1, 0, 2), atol=1e-5)


def test_weak_line_integrals_are_not_taken_for_transmission(tmp_path):
    """Issue #14: line integrals <= 1.05 were -log'd a second time."""
    p = _line_integrals(peak=0.3)
    np.save(tmp_path / "p.npy", p)
    with read_tomo(tmp_path / "p.npy", angles=ANGLES) as d:
        k = resolve_kind(d)
        assert k.kind == "line_integrals" and k.assumed and "dark detector edges" in k.reason
        with pytest.warns(UserWarning, match="--data"):
            out = line_integrals(d)
        np.testing.assert_array_equal(out, p.transpose(1, 0, 2))


def test_transmission_with_air_at_one_is_transmission(tmp_path):
    p = _line_integrals(peak=2.0)
    np.save(tmp_path / "t.npy", np.exp(-p))
    with read_tomo(tmp_path / "t.npy", angles=ANGLES) as d:
        k = resolve_kind(d)
        assert k.kind == "transmission" and k.assumed
        np.testing.assert_allclose(line_integrals(d, kind=k), p.transpose(1, 0, 2), atol=1e-5)


def test_negative_values_are_line_integrals(tmp_path):
    p = _line_integrals(peak=3.0) - 0.5
    np.save(tmp_path / "n.npy", p)
    with read_tomo(tmp_path / "n.npy", angles=ANGLES) as d:
        k = resolve_kind(d)
        assert k.kind == "line_integrals" and k.assumed and "below" not in k.reason


def test_raw_counts_without_flats_are_an_error_not_negative_line_integrals(tmp_path):
    """Issue #14: the API gave negative line integrals, the CLI took counts for line integrals."""
    proj, _, _, _ = raw_stack()
    np.save(tmp_path / "c.npy", proj.astype(np.uint16))
    with read_tomo(tmp_path / "c.npy", angles=ANGLES) as d:
        k = resolve_kind(d)
        assert k.kind == "raw" and k.assumed and "counts" in k.reason
        with pytest.raises(NotLineIntegralsError, match="raw counts need flats"):
            line_integrals(d, kind=k)
        with pytest.raises(NotLineIntegralsError, match="raw counts need flats"):
            d.sinograms()
        # saying what they are works
        np.testing.assert_array_equal(line_integrals(d, choice="line-integrals"),
                                      proj.astype(np.uint16).astype(np.float32).transpose(1, 0, 2))

    # integer counts of a sample wider than the field (dark edges) are still counts
    wide = proj.astype(np.uint16)
    wide[..., :2] = wide[..., -2:] = 3
    np.save(tmp_path / "w.npy", wide)
    with read_tomo(tmp_path / "w.npy", angles=ANGLES) as d:
        k = resolve_kind(d)
        assert k.kind == "raw" and "integer values (uint16)" in k.reason


def test_declared_kind_wins_over_values(tmp_path):
    """Our own metadata says what the file holds: no guess from the values."""
    t = np.exp(-_line_integrals(peak=2.0))  # would be guessed as transmission
    tifffile.imwrite(tmp_path / "l.tif", t, metadata={"kind": "line_integrals", "angles": list(ANGLES)})
    with read_tomo(tmp_path / "l.tif") as d:
        k = resolve_kind(d)
        assert k.kind == "line_integrals" and not k.assumed and "metadata" in k.reason
        np.testing.assert_array_equal(line_integrals(d), t.transpose(1, 0, 2))


def test_a_reconstruction_is_refused(tmp_path):
    from napari_ganrec.io import write_volume

    write_volume(tmp_path / "rec.tif", np.ones((3, 8, 8), np.float32), {"angles": list(range(3))})
    with read_tomo(tmp_path / "rec.tif") as d, pytest.raises(NotLineIntegralsError, match="reconstruction"):
        resolve_kind(d)


def test_nxtomo_image_key_says_raw(tmp_path):
    from _io_fixtures import write_nxtomo

    proj, flats, darks, p = raw_stack()
    with read_tomo(write_nxtomo(tmp_path / "n.nxs", proj, flats, darks)) as d:
        assert resolve_kind(d).kind == "raw"
        np.testing.assert_allclose(line_integrals(d), p.transpose(1, 0, 2), atol=1e-5)


def test_bad_choice_and_rows():
    d = TomoData(np.ones((3, 2, 4), np.float32), np.arange(3.0))
    with pytest.raises(ValueError, match="data must be one of"):
        resolve_kind(d, "counts")
    with pytest.raises(ValueError, match="outside the detector"):
        line_integrals(d, 5, choice="line-integrals")
    with pytest.raises(ValueError, match="selects none"):
        line_integrals(d, slice(2, 2), choice="line-integrals")


# ----------------------------------------------------------------------------- layers
def test_layer_reads_like_the_file(tmp_path):
    from napari_ganrec.io._napari_io import read_layers

    proj, flats, darks, p = raw_stack()
    path = write_dxchange(tmp_path / "r.h5", proj, flats, darks)
    ((data, kw, _),) = read_layers(str(path))
    layer_tomo = tomodata_from_layer(data, kw["metadata"])
    with read_tomo(path) as d:
        np.testing.assert_array_equal(line_integrals(layer_tomo), line_integrals(d))
    # a pre-processed layer is not corrected twice, even with the parent's flats and format still in
    # its metadata (the pre-processing widget copies the parent's metadata and sets kind)
    nx = write_nxtomo(tmp_path / "n.nxs", proj, flats, darks)
    ((_, nkw, _),) = read_layers(str(nx))
    pre_meta = {**nkw["metadata"], "kind": "line_integrals"}
    pre = tomodata_from_layer(p, pre_meta)
    k = resolve_kind(pre)
    assert k.kind == "line_integrals" and "metadata" in k.reason
    np.testing.assert_array_equal(line_integrals(pre), p.transpose(1, 0, 2))
    with pytest.raises(ValueError, match="no projection angles"):
        tomodata_from_layer(p, {})
    with pytest.raises(ValueError, match="flats have frames"):
        tomodata_from_layer(p, {"angles_deg": ANGLES, "flats": flats[:, :1]})


# ----------------------------------------------------------------------------- one == many
CHOICES = ["auto", "raw", "transmission", "line-integrals"]


def _inputs(tmp_path):
    """(path, choice) pairs that are valid: raw counts with flats, for every --data choice."""
    proj, flats, darks, _ = raw_stack()
    scaled = (proj / 1000.0).astype(np.float32)  # in [0.1, 1]: valid as transmission too
    return write_dxchange(tmp_path / "r.h5", scaled, flats / 1000.0, darks / 1000.0)


@pytest.mark.parametrize("choice", CHOICES)
def test_one_slice_equals_many_slices_api(tmp_path, choice):
    path = _inputs(tmp_path)
    with read_tomo(path) as d:
        many = line_integrals(d, slice(0, N_ROW), choice=choice)
        for r in range(N_ROW):
            np.testing.assert_array_equal(line_integrals(d, r, choice=choice)[0], many[r])
        src = PathSource(path, data=choice)
        np.testing.assert_array_equal(src.read(0, N_ROW), many)
        np.testing.assert_array_equal(src.read(1, 2)[0], many[1])
        np.testing.assert_array_equal(LoaderSource(d, data=choice).read(0, N_ROW), many)
        np.testing.assert_array_equal(d.sinograms(data=choice), many)


def test_line_integrals_choice_keeps_the_values_of_a_file_with_flats(tmp_path):
    """Issue #12: with --data line-integrals one slice gave up to 2.00, several slices 0.50."""
    path = _inputs(tmp_path)
    with read_tomo(path) as d:
        raw = np.asarray(d.projections[:], np.float32).transpose(1, 0, 2)
        np.testing.assert_array_equal(PathSource(path, data="line-integrals").read(0, N_ROW), raw)
        np.testing.assert_array_equal(line_integrals(d, choice="line-integrals"), raw)


@pytest.mark.parametrize("choice", CHOICES)
def test_one_slice_equals_many_slices_cli(tmp_path, choice):
    path = _inputs(tmp_path)
    common = ["--method", "fbp", "--device", "cpu", "--center", str(N_DET / 2), "--data", choice]
    many = tmp_path / "many.tif"
    assert main(["reconstruct", str(path), "-o", str(many), "--slices", f"0:{N_ROW}", *common]) == 0
    stack = tifffile.imread(many)
    for r in range(N_ROW):
        one = tmp_path / f"one{r}.tif"
        assert main(["reconstruct", str(path), "-o", str(one), "--slices", f"{r}:{r + 1}", *common]) == 0
        np.testing.assert_allclose(tifffile.imread(one), stack[r], rtol=0, atol=1e-6)


def test_cli_warns_when_it_guesses_and_refuses_counts_without_flats(tmp_path, capsys):
    np.save(tmp_path / "p.npy", _line_integrals(peak=0.3))
    args = ["--angles", f"0:180:{N_ANG}", "--method", "fbp", "--device", "cpu", "--center", str(N_DET / 2)]
    assert main(["reconstruct", str(tmp_path / "p.npy"), "-o", str(tmp_path / "o.tif"), *args]) == 0
    err = capsys.readouterr().err
    assert "warning: assumed" in err and "line integrals" in err and "--data" in err
    proj, _, _, _ = raw_stack()
    np.save(tmp_path / "c.npy", proj.astype(np.uint16))
    assert main(["reconstruct", str(tmp_path / "c.npy"), "-o", str(tmp_path / "c.tif"), *args]) == 2
    assert "raw counts need flats" in capsys.readouterr().err
    assert not (tmp_path / "c.tif").exists()


def test_cli_flats_and_darks_files_make_raw_counts_readable(tmp_path, capsys):
    """Counts without flats are refused; --flats/--darks give what a file with flats gives."""
    proj, flats, darks, _ = raw_stack()
    h5 = write_dxchange(tmp_path / "r.h5", proj, flats, darks)
    tifffile.imwrite(tmp_path / "counts.tif", proj.astype(np.uint16), metadata={"angles": list(ANGLES)})
    np.save(tmp_path / "flats.npy", flats)
    tifffile.imwrite(tmp_path / "darks.tif", darks)
    common = ["--method", "fbp", "--device", "cpu", "--center", str(N_DET / 2), "--slices", f"0:{N_ROW}"]
    assert main(["reconstruct", str(h5), "-o", str(tmp_path / "a.tif"), *common]) == 0
    assert main(["reconstruct", str(tmp_path / "counts.tif"), "-o", str(tmp_path / "b.tif"), *common,
                 "--flats", str(tmp_path / "flats.npy"), "--darks", str(tmp_path / "darks.tif")]) == 0
    np.testing.assert_allclose(tifffile.imread(tmp_path / "b.tif"), tifffile.imread(tmp_path / "a.tif"),
                               atol=2e-3)
    assert main(["reconstruct", str(tmp_path / "counts.tif"), "-o", str(tmp_path / "c.tif"), *common,
                 "--tilt-axis", "x"]) == 2
    assert "tilt_axis='x' is for MRC" in capsys.readouterr().err


def test_guessed_kind_is_the_same_for_one_slice_and_many(tmp_path, capsys):
    """The auto guess samples the whole detector, not the rows asked for, and the volume source
    carries the resolved kind (also through pickling, as to a Dask worker)."""
    import pickle

    p = _line_integrals(peak=0.3, n_row=6)
    np.save(tmp_path / "w.npy", p)
    args = ["--angles", f"0:180:{N_ANG}", "--method", "fbp", "--device", "cpu", "--center", str(N_DET / 2)]
    assert main(["reconstruct", str(tmp_path / "w.npy"), "-o", str(tmp_path / "m.tif"), "--slices", "0:6", *args]) == 0
    assert main(["reconstruct", str(tmp_path / "w.npy"), "-o", str(tmp_path / "o.tif"), "--slices", "4:5", *args]) == 0
    np.testing.assert_allclose(tifffile.imread(tmp_path / "o.tif"), tifffile.imread(tmp_path / "m.tif")[4], atol=1e-6)
    with pytest.warns(UserWarning, match="assumed"):
        src = PathSource(tmp_path / "w.npy", open_kwargs={"angles": ANGLES})
    assert src.kind.kind == "line_integrals" and src.kind.assumed
    again = pickle.loads(pickle.dumps(src))
    assert again.kind == src.kind
    np.testing.assert_array_equal(again.read(2, 5), p[:, 2:5].transpose(1, 0, 2))
