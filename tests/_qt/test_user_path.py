"""The user's whole way on a real scan (APS tooth, DXchange with flats and darks), clicking what a
user clicks: File > Open, the Plugins menu's widgets, buttons and choices found by their labels.

Runs under Xvfb (.ci/run); skips where ../shared/data/tooth.h5 is absent. Kept fast: FBP at full
size (the projector's system matrix is built once and shared by the GUI and CLI runs), GANrec on
a detector binned by 4 with a few iterations.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from _ui import assert_framed, check, choose, click, set_number

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _io_fixtures import TOOTH  # noqa: E402

from napari_ganrec.widget_model.run import METHOD_LABELS  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not TOOTH.exists(), reason=f"{TOOTH} is not here (the shared data set)"),
    pytest.mark.skipif(not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")),
                       reason="napari viewer tests need a display with OpenGL (xvfb-run)"),
]

TIMEOUT = 300_000  # ms: a 640 px FBP on a busy two-core machine
PLUGIN = "napari-ganrec"


def _open_tooth(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open(str(TOOTH), plugin=PLUGIN)  # File > Open, with our reader
    assert [ly.name for ly in layers] == ["tooth projections"]
    proj = layers[0]
    assert proj.data.shape == (181, 2, 640)
    assert proj.metadata["flats"].shape == (10, 2, 640) and proj.metadata["darks"].shape == (10, 2, 640)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "GANrec reconstruction")
    return viewer, proj, widget


def _wait_done(qtbot, widget):
    qtbot.waitUntil(lambda: widget.state.status in ("finished", "failed", "stopped"), timeout=TIMEOUT)
    assert widget.state.status == "finished", widget.state.message


def _wait_framed(qtbot, viewer, layer):
    def framed():
        try:
            assert_framed(viewer, layer)
        except AssertionError:
            return False
        return True

    qtbot.waitUntil(framed, timeout=TIMEOUT)
    assert_framed(viewer, layer)


def test_gui_defaults_give_the_cli_slice(make_napari_viewer, qtbot, tmp_path):
    """File > Open, FBP, Run with every other default: the CLI's slice (same centre, same values)."""
    from napari_ganrec.cli import main

    viewer, proj, widget = _open_tooth(make_napari_viewer)
    qtbot.waitUntil(lambda: widget.auto_center is not None, timeout=TIMEOUT)
    est = widget.auto_center
    assert est.method == "vo" and "Vo's method" in widget.center_label.text()
    assert "raw counts" in widget.kind_label.text()  # flats and darks applied, then -log
    assert widget.slice_range() == (1, 2)
    choose(widget, "method", METHOD_LABELS["fbp"])
    click(qtbot, widget, "Run")
    _wait_done(qtbot, widget)
    layer = widget.controller.image_layer
    gui = np.asarray(layer.data)
    md = layer.metadata
    assert md["center"] == est.center and md["center_method"] == "vo"
    assert md["data_kind"] == "raw" and md["binning"]["factor"] == 1
    _wait_framed(qtbot, viewer, layer)

    out = tmp_path / "cli.tif"
    assert main(["reconstruct", str(TOOTH), "-o", str(out), "--method", "fbp", "--slices", "1:2",
                 "--device", "cpu"]) == 0
    cli = tifffile.imread(out)
    cli = cli.reshape(gui.shape)
    corr = float(np.corrcoef(gui.ravel(), cli.ravel())[0, 1])
    scale = float(np.std(gui) / np.std(cli))
    print(f"\ntooth.h5 defaults: centre {est.center:.2f} px ({est.label}), GUI vs CLI correlation "
          f"{corr:.4f}, scale {scale:.3f}")
    assert corr >= 0.98
    assert abs(scale - 1) <= 0.10


def test_the_whole_way_from_the_scan_to_the_pores(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer, proj, widget = _open_tooth(make_napari_viewer)

    # the automatic centre, shown with the method that found it (Vo's, for 180 degrees)
    qtbot.waitUntil(lambda: widget.auto_center is not None, timeout=TIMEOUT)
    c = widget.auto_center.center
    assert 280 < c < 310 and widget.center_spin.value() == pytest.approx(c, abs=0.005)
    assert "Vo's method" in widget.center_label.text()
    # 640 px on the CPU: the widget suggests binning before anything runs
    choose(widget, "device", "cpu")
    assert "640 px" in widget.hint_label.text() and "binning 2" in widget.hint_label.text()

    # FBP preview at full size: the canvas leaves the projections for the slice
    click(qtbot, widget, "FBP preview")
    qtbot.waitUntil(lambda: widget.preview_layer is not None, timeout=TIMEOUT)
    preview = widget.preview_layer
    assert preview.data.shape == (640, 640) and preview.metadata["center"] == c
    _wait_framed(qtbot, viewer, preview)
    assert not proj.visible
    qtbot.waitUntil(lambda: widget.fbp_button.isEnabled(), timeout=TIMEOUT)

    # GANrec on one row, detector binned by 4 (the hint goes), a few iterations
    choose(widget, "method", METHOD_LABELS["ganrec"])
    choose(widget, "binning", "4")
    check(widget, "bin rows", False)
    assert widget.hint_label.text() == ""
    widget.solver_options.ganrec.editors["channels"].setValue(8)  # a small GANrec: few seconds on the CPU
    widget.solver_options.ganrec.editors["n_conv"].setValue(3)
    set_number(widget, "iterations", 4)
    click(qtbot, widget, "Run")
    _wait_done(qtbot, widget)
    one = widget.controller.image_layer
    assert one.data.shape == (160, 160) and np.isfinite(one.data).all() and one.data.std() > 0
    assert one.metadata["binning"] == {"factor": 4, "rows": False, "values": "per binned pixel"}
    assert one.metadata["center"] == c
    assert one.metadata["center_binned"] == pytest.approx((c - 1.5) / 4)
    assert tuple(one.scale) == (4.0, 4.0)
    _wait_framed(qtbot, viewer, one)

    # volume mode over both rows
    set_number(widget, "slice", 0)
    widget.nslices_spin.setValue(2)
    check(widget, "volume: slice by slice, warm start")
    widget.warm_spin.setValue(2)
    set_number(widget, "iterations", 3)
    click(qtbot, widget, "Run")
    _wait_done(qtbot, widget)
    vol = widget.controller.image_layer
    assert vol.data.shape == (2, 160, 160) and vol.metadata["volume_mode"]["slices"] == 2
    assert np.all(np.abs(vol.data).sum(axis=(1, 2)) > 0)
    _wait_framed(qtbot, viewer, vol)

    # the segmentation widget on the result: segment, export CSV and TIFF
    _, seg = viewer.window.add_plugin_dock_widget(PLUGIN, "3D pore segmentation")
    choose(seg, "Volume", vol.name)
    click(qtbot, seg, "Run")
    qtbot.waitUntil(lambda: seg.result is not None and not seg.running, timeout=TIMEOUT)
    labels = seg.pores_layer
    assert labels.data.shape == vol.data.shape
    _wait_framed_labels = labels.visible and viewer.dims.ndisplay == 3
    assert _wait_framed_labels
    from napari_ganrec._qt import segment_widget

    csv_path, tif_path = tmp_path / "pores.csv", tmp_path / "pores.tif"
    answers = iter([str(csv_path), str(tif_path)])
    monkeypatch.setattr(segment_widget.QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (next(answers), "")))
    click(qtbot, seg, "Export table (CSV)...")
    click(qtbot, seg, "Export labels (TIFF)...")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == seg.result.pore_count
    assert sorted(int(r["label"]) for r in rows) == list(range(1, seg.result.pore_count + 1))
    np.testing.assert_array_equal(tifffile.imread(tif_path), seg.result.labels)
