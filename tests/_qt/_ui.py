"""Drive the widgets as a user does: buttons, choices and boxes found by their labels."""

def button(widget, text: str):
    """The one push button of ``widget`` labelled ``text`` (what a user reads, and clicks)."""
    from qtpy.QtWidgets import QPushButton

    root = getattr(widget, "native", widget)  # magicgui containers wrap a QWidget
    found = [b for b in root.findChildren(QPushButton) if b.text() == text]
    assert len(found) == 1, f"{len(found)} buttons labelled {text!r}"
    return found[0]


def click(qtbot, widget, text: str) -> None:
    """Click the button labelled ``text``, as a user does."""
    from qtpy.QtCore import Qt

    b = button(widget, text)
    assert b.isEnabled() and not b.isHidden(), f"button {text!r} cannot be clicked now"
    qtbot.mouseClick(b, Qt.MouseButton.LeftButton)


def field(widget, label: str, kind):
    """The first widget of type ``kind`` in the form row labelled ``label``."""
    from qtpy.QtWidgets import QFormLayout

    root = getattr(widget, "native", widget)

    def search(item):
        w = item.widget()
        if w is not None:
            if isinstance(w, kind):
                return w
            found = w.findChildren(kind)
            return found[0] if found else None
        lay = item.layout()
        if lay is not None:
            for i in range(lay.count()):
                hit = search(lay.itemAt(i))
                if hit is not None:
                    return hit
        return None

    for form in root.findChildren(QFormLayout):
        for r in range(form.rowCount()):
            lab = form.itemAt(r, QFormLayout.ItemRole.LabelRole)
            if lab is not None and lab.widget() is not None and lab.widget().text() == label:
                hit = search(form.itemAt(r, QFormLayout.ItemRole.FieldRole))
                if hit is not None:
                    return hit
    raise AssertionError(f"no {kind.__name__} in a row labelled {label!r}")


def choose(widget, label: str, text: str) -> None:
    """Pick ``text`` in the combo box of the form row labelled ``label``."""
    from qtpy.QtWidgets import QComboBox

    combo = field(widget, label, QComboBox)
    idx = combo.findText(text)
    assert idx >= 0, f"{label!r} offers no {text!r}: {[combo.itemText(i) for i in range(combo.count())]}"
    combo.setCurrentIndex(idx)


def check(widget, text: str, on: bool = True) -> None:
    """Tick (or untick) the check box labelled ``text``."""
    from qtpy.QtWidgets import QCheckBox

    root = getattr(widget, "native", widget)
    found = [c for c in root.findChildren(QCheckBox) if c.text() == text]
    assert len(found) == 1, f"{len(found)} check boxes labelled {text!r}"
    found[0].setChecked(on)


def set_number(widget, label: str, value) -> None:
    """Type ``value`` into the first spin box of the form row labelled ``label``."""
    from qtpy.QtWidgets import QAbstractSpinBox

    spin = field(widget, label, QAbstractSpinBox)
    spin.setValue(value)


def assert_framed(viewer, layer, atol_px: float = 1.0) -> None:
    """The canvas shows ``layer``: visible, alone among images, its slice in view, camera on it."""
    import numpy as np
    from napari.layers import Image

    assert layer.visible
    others = [ly.name for ly in viewer.layers if isinstance(ly, Image) and ly.visible
              and ly is not layer and ly.name != layer.name]
    assert not others, f"other images still shown: {others}"
    ext = np.asarray(layer.extent.world, dtype=float)  # (2, ndim): min, max corner
    centre = ext.mean(axis=0)
    disp = list(viewer.dims.displayed)
    off = viewer.dims.ndim - layer.ndim
    cam = np.asarray(viewer.camera.center, dtype=float)[-len(disp):]
    want = np.array([centre[d - off] for d in disp])
    scale = np.asarray(layer.scale, dtype=float)[[d - off for d in disp]]
    np.testing.assert_allclose(cam, want, atol=atol_px * scale.max())
    for axis in viewer.dims.not_displayed:  # the slice shown lies inside the layer
        la = axis - off
        if 0 <= la < layer.ndim:
            assert ext[0, la] <= viewer.dims.point[axis] <= ext[1, la], (axis, viewer.dims.point)
