"""The pre-processing dock widget adds new layers and never touches the input."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ganrec._qt.preprocess_widget import PreprocessWidget
from napari_ganrec.phantoms import ground_truth, porous_particle
from napari_ganrec.projector import project


def _open(viewer) -> PreprocessWidget:
    """The widget as the Plugins menu opens it."""
    _, w = viewer.window.add_plugin_dock_widget("napari-ganrec", "Pre-processing and centre")
    assert isinstance(w, PreprocessWidget)
    return w


@pytest.fixture
def raw_layer_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    img = ground_truth(porous_particle(32, seed=2))
    angles = np.arange(0, 180, 4.0)
    sino = project(img, angles, center=17.5)  # (A, D)
    p = 0.1 * np.repeat(sino[:, None, :], 2, axis=1)  # line integrals up to ~1
    raw = (20 + 980 * np.exp(-p)).astype(np.float32)
    viewer.add_image(raw, name="raw", metadata={
        "angles_deg": angles, "flats": np.full((3, 2, 32), 1000.0, np.float32),
        "darks": np.full((2, 2, 32), 20.0, np.float32)})
    return viewer, raw.copy(), p


def test_apply_adds_a_new_layer(raw_layer_viewer, qtbot):
    viewer, raw, p = raw_layer_viewer
    w = _open(viewer)
    w.layer.value = "raw"
    w.apply()
    assert len(viewer.layers) == 2
    new = viewer.layers["raw preprocessed"]
    np.testing.assert_allclose(new.data, p, atol=1e-3)
    assert new.metadata["kind"] == "line_integrals"
    np.testing.assert_array_equal(viewer.layers["raw"].data, raw)  # input untouched
    w.bin.value = 2
    w.apply()
    assert viewer.layers[-1].data.shape == (p.shape[0], 1, 16)


def test_find_center_and_scan(raw_layer_viewer, qtbot):
    viewer, _, _ = raw_layer_viewer
    w = _open(viewer)
    w.layer.value = "raw"
    worker = w.find_center()
    qtbot.waitUntil(lambda: "centre " in w.status.value, timeout=20000)
    assert w.center.value == pytest.approx(17.5, abs=0.5)
    assert "Vo's method" in w.status.value  # the method that found it
    w.scan_range.value = 2.0
    w.scan_step.value = 0.5
    worker = w.center_scan()
    qtbot.waitUntil(lambda: "centre scan" in "".join(layer.name for layer in viewer.layers),
                    timeout=20000)
    scan = viewer.layers["raw centre scan"]
    assert scan.data.shape == (9, 32, 32)
    np.testing.assert_allclose(scan.metadata["centers"], w.center.value + np.arange(-2, 2.01, 0.5))
    assert scan.metadata["sharpness"].shape == (9,)
    del worker
