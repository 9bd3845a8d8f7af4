"""What the reconstruction form's choices mean: data kinds, angle sources, centre scans, run context."""

import numpy as np
import pytest

from napari_ganrec import phantoms
from napari_ganrec.geometry import angles_from_range
from napari_ganrec.projector import project
from napari_ganrec.widget_model.form import (
    ANGLE_SOURCES,
    DATA_CHOICES,
    auto_center_job,
    choose_angles,
    data_kind_text,
    prepare_input,
    run_context,
    scan_plan,
)
from napari_ganrec.widget_model.inputs import Binning, input_shape


def test_the_form_offers_the_cli_data_choices_and_three_angle_sources():
    assert DATA_CHOICES == {"auto (from the file)": "auto", "raw counts": "raw",
                            "transmission": "transmission", "line integrals": "line-integrals"}
    assert ANGLE_SOURCES == ("layer metadata", "range", "file")


def test_data_kind_text_says_what_is_done_and_whether_it_was_guessed():
    assert data_kind_text("raw", "the file has flats", False) == (
        "raw counts: flat/dark corrected and -log'd before the run (the file has flats)")
    assert data_kind_text("line_integrals", "values look like -log", True) == (
        "line integrals: used as they are (assumed: values look like -log)")
    with pytest.raises(ValueError, match="kind must be one of"):
        data_kind_text("counts", "", False)


def test_choose_angles_from_each_source(tmp_path):
    md = {"angles": np.linspace(-35, 35, 5)}
    np.testing.assert_allclose(choose_angles("layer metadata", layer_name="x", metadata=md, n_angles=5),
                               [-35, -17.5, 0, 17.5, 35])
    np.testing.assert_allclose(choose_angles("range", layer_name="x", metadata=None, n_angles=4,
                                             start=0.0, stop=180.0), angles_from_range(0.0, 180.0, 4))
    f = tmp_path / "a.txt"
    f.write_text("0\n10\n20\n")
    np.testing.assert_allclose(choose_angles("file", layer_name="x", metadata=None, n_angles=3,
                                             file_path=f" {f} "), [0, 10, 20])


def test_choose_angles_says_what_is_missing():
    with pytest.raises(ValueError, match="layer 'proj' has no 'angles' metadata with 7 values"):
        choose_angles("layer metadata", layer_name="proj", metadata={"angles": [0, 1]}, n_angles=7)
    with pytest.raises(ValueError, match="choose an angles file"):
        choose_angles("file", layer_name="x", metadata=None, n_angles=3, file_path="  ")
    with pytest.raises(ValueError, match="angle source must be one of"):
        choose_angles("guess", layer_name="x", metadata=None, n_angles=3)


def test_scan_plan_keeps_centres_on_the_detector_and_bins_them():
    centers, binned = scan_plan(1.0, 2.0, 1.0, n_det=8, binning=Binning(2))
    np.testing.assert_allclose(centers, [0.0, 1.0, 2.0, 3.0])  # -1 is off the detector
    np.testing.assert_allclose(binned, [-0.25, 0.25, 0.75, 1.25])  # (c - 0.5) / 2
    with pytest.raises(ValueError, match="step must be positive"):
        scan_plan(4.0, 2.0, 0.0, n_det=8, binning=Binning(1))


def test_run_context_scales_the_pixels_by_the_binning():
    info = input_shape((21, 6, 32), "vertical")
    ctx = run_context(source="proj", layer_scale=(1.0, 0.5, 0.25), info=info, binning=Binning(2, rows=True),
                      center=16.0, center_binned=7.75, center_method="com", kind="raw",
                      kind_reason="flats", rows_read=(2, 6), slices=(2, 7))
    assert ctx["source"] == "proj" and ctx["layout"] == "vertical" and ctx["slices"] == (2, 7)
    assert ctx["scale"] == (0.5, 0.5) and ctx["slice_scale"] == 2.0
    assert ctx["extra"] == {"center": 16.0, "center_binned": 7.75, "center_method": "com", "data_kind": "raw",
                            "data_kind_reason": "flats", "rows_read": [2, 6],
                            "binning": {"factor": 2, "rows": True, "values": "per binned pixel"}}
    # a horizontal stack's detector runs along the rows; a single sinogram has no slice range
    horiz = run_context(source="p", layer_scale=(1.0, 0.5, 0.25), info=input_shape((21, 32, 6), "horizontal"),
                        binning=Binning(1), center=1, center_binned=1, center_method="typed", kind="raw",
                        kind_reason="", rows_read=(0, 1), slices=(0, 1))
    assert horiz["scale"] == (0.5, 0.5) and horiz["slice_scale"] == 1.0
    sino = run_context(source="s", layer_scale=(1.0, 1.0), info=input_shape((21, 32)), binning=Binning(1),
                       center=16, center_binned=16, center_method="typed", kind="line_integrals",
                       kind_reason="", rows_read=(0, 1), slices=(0, 1))
    assert sino["slices"] is None


def test_prepare_input_reads_the_rows_the_binning_uses_then_asks_the_centre():
    calls = []
    sinos = np.arange(4 * 3 * 8, dtype=np.float32).reshape(4, 3, 8)

    def read(r0, r1):
        calls.append(("read", r0, r1))
        return sinos[: r1 - r0], "kind"

    def center():
        calls.append(("center",))
        return 4.5

    p = prepare_input(read, center, angles=[0, 60, 120], binning=Binning(2, rows=True), slices=(1, 6),
                      n_slices=8)
    assert calls == [("read", 1, 5), ("center",)]  # 5 rows binned by 2: rows 1-4
    assert p.sinograms.shape == (2, 3, 4) and p.kind == "kind"
    assert p.rows_read == (1, 5) and p.slices == (1, 6)
    assert p.center == 4.5 and p.center_binned == 2.0
    np.testing.assert_allclose(p.sinograms[0, 0], sinos[:2, 0].reshape(2, 4, 2).mean(axis=(0, 2)))
    # a preview reads the first binned slice only
    calls.clear()
    p = prepare_input(read, center, angles=[0, 60, 120], binning=Binning(2, rows=True), slices=(1, 6),
                      n_slices=8, preview=True)
    assert calls[0] == ("read", 1, 3) and p.sinograms.shape == (1, 3, 4) and p.slices == (1, 3)


def test_prepare_input_refuses_a_centre_off_the_binned_detector():
    with pytest.raises(ValueError, match="cent"):
        prepare_input(lambda r0, r1: (np.ones((1, 3, 8), np.float32), None), lambda: 100.0,
                      angles=[0, 60, 120], binning=Binning(1), slices=(0, 1), n_slices=1)


def test_auto_center_job_finds_the_centre_of_its_row_from_copied_values():
    n = 32
    img = phantoms.ground_truth(phantoms.porous_particle(n, nz=1, seed=1))[0]
    angles = angles_from_range(0.0, 180.0, 60)
    sino = project(img, angles, center=15.0)
    stack = np.stack([sino, sino], axis=1)  # (angles, rows, detector)
    md = {"kind": "line_integrals"}
    key, compute, row = auto_center_job(stack, md, layout="vertical", angles=angles, row=1,
                                        choice="line-integrals", identity=(7,))
    md["kind"] = "raw"  # the job took its own copy
    assert row == 1 and key[:4] == (7, "vertical", 1, "line-integrals") and len(key[4]) == 60
    key2, _, _ = auto_center_job(stack, md, layout="vertical", angles=list(angles), row=1,
                                 choice="line-integrals", identity=(7,))
    assert key2 == key  # same input, same key
    assert compute().center == pytest.approx(15.0, abs=0.6)
