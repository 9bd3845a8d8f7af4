"""GUI test of the segmentation dock (Xvfb, make_napari_viewer)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_ganrec import phantoms
from napari_ganrec import segment as sg

pytest.importorskip("qtpy")
napari = pytest.importorskip("napari")

N = 48


@pytest.fixture(scope="module")
def truth():
    ph = phantoms.porous_particle(N, nz=N, seed=0)
    return ph, ph.rasterize()


@pytest.fixture
def widget(make_napari_viewer, truth):
    from napari_ganrec._qt.segment_widget import SegmentationWidget

    viewer = make_napari_viewer()
    viewer.add_image(truth[1], name="truth", scale=(0.5, 0.5, 0.5))
    _, w = viewer.window.add_plugin_dock_widget("napari-ganrec", "3D pore segmentation")  # the menu's call
    assert isinstance(w, SegmentationWidget)
    return viewer, w


def test_segments_ground_truth(widget, truth, qtbot, tmp_path):
    viewer, w = widget
    ph, vol = truth
    assert w.layer_combo.currentText() == "truth"
    assert w.voxel_size.value() == 0.5
    # live preview: auto thresholds filled in, the histogram shows them, slice preview present
    p, q = w.thresholds()
    assert 0.3 < q <= p < 0.7
    assert set(w.value_hist.markers) == {"particle", "pore"}
    assert "segmentation preview" in viewer.layers
    viewer.dims.set_point(0, 0.5 * 20)
    preview = viewer.layers["segmentation preview"]
    assert preview.metadata["slice"] == 20
    np.testing.assert_array_equal(preview.data, sg.preview_slice(vol[20], p, q))

    w.run()
    assert w.running
    qtbot.waitUntil(lambda: not w.running, timeout=60_000)
    ref = sg.segment(vol, voxel_size=0.5)
    labels = viewer.layers["truth pores"]
    assert isinstance(labels, napari.layers.Labels)
    np.testing.assert_array_equal(labels.data, ref.labels)
    assert tuple(labels.scale) == (0.5, 0.5, 0.5)
    assert isinstance(viewer.layers["truth particle"], napari.layers.Labels)
    assert viewer.dims.ndisplay == 3
    assert "segmentation preview" not in viewer.layers
    # the table: one row per pore, as many as the phantom has; features on the layer
    assert w.table.rowCount() == len(ph.pores) == ref.pore_count
    assert sorted(w.table.labels()) == list(range(1, ref.pore_count + 1))
    feats = labels.features
    assert len(feats) == ref.pore_count
    np.testing.assert_allclose(feats["volume"], ref.table["volume"])
    assert list(feats["index"]) == list(ref.table["label"])
    # porosity shown, within 0.5 percentage points of the analytic truth
    truth_por = sum(b.radius**3 for b in ph.pores) / ph.balls[0].radius ** 3
    assert f"Porosity: {100 * ref.porosity:.2f} %" in w.porosity_label.text()
    assert abs(ref.porosity - truth_por) < 0.005
    assert w.diameter_hist.counts.sum() == ref.pore_count

    # sorting by volume (descending) reorders rows; a click centres on that pore
    from qtpy.QtCore import Qt

    from napari_ganrec._qt.segment_table import DISPLAY_COLUMNS

    col = [c for c, *_ in DISPLAY_COLUMNS].index("volume_voxels")

    w.table.sortItems(col, Qt.DescendingOrder)
    biggest = int(ref.table["label"][np.argmax(ref.table["volume_voxels"])])
    assert w.table.label_at(0) == biggest
    w.table.cellClicked.emit(0, 0)
    r = biggest - 1
    centroid = np.array([ref.table[f"centroid_{a}"][r] for a in "zyx"]) * 0.5
    np.testing.assert_allclose(viewer.camera.center, centroid, atol=1e-6)
    np.testing.assert_allclose(viewer.dims.point[0], centroid[0], atol=0.5)
    assert labels.selected_label == biggest

    # exports
    csv = w.export_csv(tmp_path / "pores.csv")
    assert len(csv.read_text().splitlines()) == ref.pore_count + 1
    tif = w.export_labels(tmp_path / "pores.tif")
    np.testing.assert_array_equal(tifffile.imread(tif), ref.labels)
    with pytest.raises(FileExistsError):
        w.export_labels(tif)


def test_value_threshold_updates_preview_and_histogram(widget, truth):
    viewer, w = widget
    _, vol = truth
    w.pore_row.mode.setCurrentText("value")
    w.pore_row.value.setValue(0.2)
    assert w.thresholds()[1] == pytest.approx(0.2)
    assert w.value_hist.markers["pore"] == pytest.approx(0.2)
    assert w.parameters()["pore_threshold"] == pytest.approx(0.2)
    k = viewer.layers["segmentation preview"].metadata["slice"]
    expected = sg.preview_slice(vol[k], w.thresholds()[0], 0.2)
    np.testing.assert_array_equal(viewer.layers["segmentation preview"].data, expected)
    w.preview_check.setChecked(False)
    assert "segmentation preview" not in viewer.layers


def test_no_volume_layer(make_napari_viewer):
    from napari_ganrec._qt.segment_widget import SegmentationWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((16, 16), np.float32), name="flat")
    w = SegmentationWidget(viewer)
    assert w.layer_combo.count() == 0 and not w.run_button.isEnabled()
    viewer.add_image(np.zeros((8, 16, 16), np.float32), name="vol")
    assert w.layer_combo.currentText() == "vol" and w.run_button.isEnabled()
    with pytest.raises(ValueError, match="run the segmentation"):
        w.export_csv("x.csv")


def test_manifest_widget_resolves_and_gets_the_viewer(make_napari_viewer):
    import importlib
    from pathlib import Path

    from npe2 import PluginManifest

    import napari_ganrec
    from napari_ganrec._qt.segment_widget import SegmentationWidget

    pm = PluginManifest.from_file(Path(napari_ganrec.__file__).parent / "napari.yaml")
    cmd = {c.id: c for c in pm.contributions.commands}["napari-ganrec.make_segmentation_widget"]
    assert any(w.command == cmd.id for w in pm.contributions.widgets)
    module, attr = cmd.python_name.split(":")
    factory = getattr(importlib.import_module(module), attr)
    assert factory is SegmentationWidget
    # napari passes the viewer to the parameter annotated/named napari_viewer
    from napari._qt.qt_main_window import _instantiate_dock_widget

    viewer = make_napari_viewer()
    w = _instantiate_dock_widget(factory, viewer)
    assert isinstance(w, SegmentationWidget)
