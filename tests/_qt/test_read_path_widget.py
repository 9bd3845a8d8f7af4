"""The reconstruction widget reads like the CLI: raw counts corrected, binning applied, problems said.

Small synthetic layers with the metadata our reader leaves (flats, darks, kind, angles), opened
through the Plugins menu's call; runs are FBP on 32-64 px.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from _ui import check, choose, click

from napari_ganrec import reconstruct
from napari_ganrec.geometry import angles_from_range
from napari_ganrec.phantoms import ground_truth, porous_particle
from napari_ganrec.projector import project
from napari_ganrec.widget_model.run import METHOD_LABELS

pytestmark = pytest.mark.skipif(
    not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")),
    reason="napari viewer tests need a display with OpenGL (run under xvfb-run, as .ci/run does)",
)
TIMEOUT = 60_000
N = 32
CENTER = 16.5


@pytest.fixture(scope="module")
def scan():
    """Raw counts of a 32 px particle over 180 degrees, 4 rows, with flats and darks."""
    img = ground_truth(porous_particle(N, seed=2))
    angles = angles_from_range(0, 180, 45)
    p = 0.05 * project(img, angles, center=CENTER)  # (A, D) line integrals
    p4 = np.repeat(p[:, None, :], 4, axis=1).astype(np.float32)
    raw = (20 + 980 * np.exp(-p4)).astype(np.float32)
    md = {"angles_deg": angles, "flats": np.full((3, 4, N), 1000.0, np.float32),
          "darks": np.full((2, 4, N), 20.0, np.float32), "kind": "raw",
          "kind_reason": "the file has flats and darks", "source": "synthetic.h5"}
    return raw, md, p, angles


def _open(make_napari_viewer, qtbot, data, md, name="scan projections"):
    viewer = make_napari_viewer()
    viewer.add_image(data, name=name, metadata=md)
    _, widget = viewer.window.add_plugin_dock_widget("napari-ganrec", "GANrec reconstruction")
    qtbot.waitUntil(lambda: widget.warmed_up, timeout=TIMEOUT)
    return viewer, widget


def test_raw_counts_are_corrected_before_the_run(make_napari_viewer, qtbot, scan):
    raw, md, p, angles = scan
    viewer, widget = _open(make_napari_viewer, qtbot, raw, md)
    assert "raw counts: flat/dark corrected and -log'd" in widget.kind_label.text()
    from napari_ganrec.io import resolve_kind, tomodata_from_layer

    reason = resolve_kind(tomodata_from_layer(raw, md)).reason  # the CLI's words for why
    assert reason in widget.kind_label.text()
    qtbot.waitUntil(lambda: widget.auto_center is not None, timeout=TIMEOUT)
    assert widget.auto_center.method == "vo"
    assert widget.auto_center.center == pytest.approx(CENTER, abs=0.3)
    sinos, params, ctx = widget.capture()
    np.testing.assert_allclose(sinos, p, rtol=1e-3, atol=1e-4)  # line integrals, not counts
    choose(widget, "method", METHOD_LABELS["fbp"])
    click(qtbot, widget, "Run")
    qtbot.waitUntil(lambda: widget.state.status in ("finished", "failed"), timeout=TIMEOUT)
    assert widget.state.status == "finished", widget.state.message
    rec = widget.controller.image_layer.data
    ref = reconstruct(p, angles, method="fbp", center=widget.auto_center.center, device="cpu")
    np.testing.assert_allclose(rec, ref, atol=1e-4 * float(np.abs(ref).max()))
    md_out = widget.controller.image_layer.metadata
    assert md_out["data_kind"] == "raw" and md_out["rows_read"] == [2, 3]


def test_a_preprocessed_layer_is_not_corrected_twice(make_napari_viewer, qtbot, scan):
    raw, md, p, angles = scan
    pre = np.repeat(p[:, None, :], 4, axis=1).astype(np.float32)
    viewer, widget = _open(make_napari_viewer, qtbot, pre,
                           {"angles_deg": angles, "kind": "line_integrals", "source": "pre"},
                           name="pre")
    assert "line integrals: used as they are" in widget.kind_label.text()
    sinos, _, _ = widget.capture()
    np.testing.assert_array_equal(sinos, p)


def test_counts_that_cannot_be_corrected_are_refused_with_the_reason(make_napari_viewer, qtbot, scan):
    raw, md, p, angles = scan
    bare = {"angles_deg": angles, "kind": "raw", "source": "noflats.h5"}  # counts without flats
    viewer, widget = _open(make_napari_viewer, qtbot, raw, bare, name="counts")
    assert widget.problem_label.isVisible() or not widget.isVisible()
    assert not widget.problem_label.isHidden()
    assert "Cannot reconstruct 'counts'" in widget.problem_label.text()
    assert not widget.preprocess_button.isHidden()
    n_layers = len(viewer.layers)
    assert not widget.run()  # never reconstructs counts
    assert len(viewer.layers) == n_layers and not widget.controller.busy
    # the offered way out: the pre-processing widget, opened as the Plugins menu opens it
    from napari_ganrec._qt.preprocess_widget import PreprocessWidget

    widget.preprocess_button.click()
    assert any(isinstance(w, PreprocessWidget) for w in viewer.window.dock_widgets.values())


def test_binning_is_applied_to_detector_and_rows(make_napari_viewer, qtbot, scan):
    raw, md, p, angles = scan
    viewer, widget = _open(make_napari_viewer, qtbot, raw, md)
    widget.set_center(CENTER)
    choose(widget, "binning", "2")
    widget.slice_spin.setValue(0)
    widget.nslices_spin.setValue(4)
    sinos, params, ctx = widget.capture()
    assert sinos.shape == (2, 45, 16)  # 4 rows -> 2 slices, 32 px -> 16
    assert params.center == pytest.approx((CENTER - 0.5) / 2)
    assert ctx["extra"]["binning"] == {"factor": 2, "rows": True, "values": "per binned pixel"}
    assert ctx["scale"] == (2.0, 2.0) and ctx["slice_scale"] == 2.0
    np.testing.assert_allclose(sinos[0], p.reshape(45, 16, 2).mean(axis=2), rtol=1e-3, atol=1e-4)
    # one slice cannot be binned by 2 rows: said, not guessed
    widget.nslices_spin.setValue(1)
    with pytest.raises(ValueError, match="untick 'bin rows'"):
        widget.capture()
    check(widget, "bin rows", False)
    choose(widget, "method", METHOD_LABELS["fbp"])
    click(qtbot, widget, "Run")
    qtbot.waitUntil(lambda: widget.state.status in ("finished", "failed"), timeout=TIMEOUT)
    layer = widget.controller.image_layer
    assert layer.data.shape == (16, 16) and tuple(layer.scale) == (2.0, 2.0)
    assert layer.metadata["center"] == CENTER
    assert layer.metadata["center_binned"] == pytest.approx((CENTER - 0.5) / 2)


def test_cpu_hint_and_time_estimate(make_napari_viewer, qtbot):
    wide = np.zeros((30, 1, 640), np.float32)
    wide[:, :, 300:340] = 1.0
    viewer, widget = _open(make_napari_viewer, qtbot, wide,
                           {"angles_deg": angles_from_range(0, 180, 30), "kind": "line_integrals"},
                           name="wide")
    choose(widget, "device", "cpu")
    assert widget.hint_label.text().startswith("640 px slices on the CPU")
    choose(widget, "binning", "2")
    check(widget, "bin rows", False)
    assert widget.hint_label.text() == ""
    # a long SIRT run: after its first iterations, the time left and the whole run's
    choose(widget, "binning", "4")
    widget.set_center(80.0 * 4 + 1.5)
    choose(widget, "method", METHOD_LABELS["sirt"])
    widget.iterations_spin.setValue(1_000_000)
    click(qtbot, widget, "Run")
    qtbot.waitUntil(lambda: widget.eta_label.text().startswith("ETA"), timeout=TIMEOUT)
    assert "whole run about" in widget.eta_label.text()
    widget.stop_button.click()
    qtbot.waitUntil(lambda: widget.state.status == "stopped", timeout=TIMEOUT)
    assert widget.eta_label.text() == ""
