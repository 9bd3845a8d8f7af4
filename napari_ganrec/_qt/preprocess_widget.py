"""Dock widget: pre-process a projection layer and find the centre of rotation.

Pick an image layer ``(n_angles, n_rows, n_det)``; flats and darks come from other layers or from
the layer's metadata (as the reader stores them). *Apply* runs the chain of
:func:`napari_ganrec.preprocess.preprocess` and adds a new layer (the input is never touched).
*Find centre* estimates the centre on one detector row (:func:`napari_ganrec.center.find_center`);
*Centre scan* adds a stack of FBP reconstructions over candidate centres (slider axis = centre).
Heavy work runs in a thread worker; layers are added on the main thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)

from .. import center as center_mod
from .. import preprocess as pp
from ..widget_model.inputs import layer_line_integrals

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["PreprocessWidget"]

_FROM_METADATA = "(layer metadata)"
_NONE = "(none)"


class PreprocessWidget(Container):
    """Pre-processing and centre-of-rotation dock widget (see the module docstring).

    napari opens it from the Plugins menu with the viewer as ``napari_viewer``.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        viewer = self.viewer = napari_viewer
        self.layer = ComboBox(label="projections", choices=self._image_layers)
        self.flats = ComboBox(label="flats", choices=self._field_choices)
        self.darks = ComboBox(label="darks", choices=self._field_choices)
        self.log = CheckBox(label="-log", value=True)
        self.zingers = CheckBox(label="remove zingers", value=False)
        self.zinger_threshold = FloatSpinBox(label="zinger threshold", value=0.3, min=0.0,
                                             max=100.0, step=0.05)
        self.crop_left = SpinBox(label="crop left", value=0, min=0, max=100000)
        self.crop_right = SpinBox(label="crop right", value=0, min=0, max=100000)
        self.bin = SpinBox(label="bin", value=1, min=1, max=16)
        self.axis = ComboBox(label="rotation axis", choices=["vertical", "horizontal"])
        self.apply_button = PushButton(text="Apply -> new layer")
        self.row = SpinBox(label="row (centre)", value=0, min=0, max=100000)
        self.center = FloatSpinBox(label="centre", value=0.0, min=0.0, max=100000.0, step=0.25)
        self.find_button = PushButton(text="Find centre")
        self.scan_range = FloatSpinBox(label="scan +- px", value=5.0, min=0.25, max=1000.0)
        self.scan_step = FloatSpinBox(label="scan step", value=0.5, min=0.05, max=50.0)
        self.scan_button = PushButton(text="Centre scan -> stack")
        self.status = Label(value="")
        self.extend([
            self.layer, self.flats, self.darks, self.axis, self.crop_left, self.crop_right,
            self.zingers, self.zinger_threshold, self.log, self.bin, self.apply_button,
            self.row, self.center, self.find_button, self.scan_range, self.scan_step,
            self.scan_button, self.status,
        ])
        self.apply_button.changed.connect(self.apply)
        self.find_button.changed.connect(self.find_center)
        self.scan_button.changed.connect(self.center_scan)
        self.layer.changed.connect(self._layer_changed)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        self._worker = None
        self._layer_changed()

    # ------------------------------------------------------------------ choices
    def _image_layers(self, _widget=None):
        from napari.layers import Image

        return [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]

    def _field_choices(self, _widget=None):
        return [_FROM_METADATA, _NONE] + self._image_layers()

    def _refresh(self, _event=None):
        for w in (self.layer, self.flats, self.darks):
            w.reset_choices()

    def _layer_changed(self, _value=None):
        layer = self._current_layer()
        if layer is not None and np.ndim(layer.data) == 3:
            n_det = layer.data.shape[-1]
            self.center.value = n_det / 2.0
            self.row.max = max(layer.data.shape[1] - 1, 0)

    def _current_layer(self):
        name = self.layer.value
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _field(self, choice: str, key: str, layer):
        if choice == _NONE:
            return None
        if choice == _FROM_METADATA:
            return layer.metadata.get(key)
        return np.asarray(self.viewer.layers[choice].data, dtype=np.float32)

    def _angles(self, layer) -> np.ndarray:
        angles = layer.metadata.get("angles_deg")
        if angles is None:
            raise ValueError(f"layer {layer.name!r} has no angles in its metadata "
                             "('angles_deg', degrees)")
        return np.asarray(angles, dtype=np.float64)

    # ------------------------------------------------------------------ actions
    def settings(self) -> dict:
        """The pre-processing options as keyword arguments of :func:`preprocess.preprocess`."""
        layer = self._current_layer()
        n_det = layer.data.shape[-1] if layer is not None else 0
        cols = None
        if self.crop_left.value or self.crop_right.value:
            cols = (int(self.crop_left.value), n_det - int(self.crop_right.value))
        return {
            "log": bool(self.log.value),
            "zinger_threshold": float(self.zinger_threshold.value) if self.zingers.value else None,
            "cols": cols,
            "bin_factor": int(self.bin.value),
            "axis": self.axis.value,
        }

    def compute(self) -> tuple[np.ndarray, dict]:
        """Run the chain on the current layer: ``(new data, new layer kwargs)``."""
        layer = self._current_layer()
        if layer is None:
            raise ValueError("pick a projection layer first")
        data = np.asarray(layer.data, dtype=np.float32)
        if data.ndim != 3:
            raise ValueError(f"layer {layer.name!r} must be (n_angles, n_rows, n_det), "
                             f"got shape {data.shape}")
        kwargs = self.settings()
        flats = self._field(self.flats.value, "flats", layer)
        darks = self._field(self.darks.value, "darks", layer)
        out = pp.preprocess(data, flats, darks, **kwargs)
        meta = {k: v for k, v in layer.metadata.items() if k not in ("flats", "darks")}
        meta["kind"] = "line_integrals" if kwargs["log"] else "transmission"
        meta["preprocess"] = {k: v for k, v in kwargs.items()}
        meta["parent_layer"] = layer.name
        if kwargs["bin_factor"] > 1:
            meta["binning"] = kwargs["bin_factor"]
        return out, {"name": f"{layer.name} preprocessed", "metadata": meta}

    def apply(self, _=None):
        """Add the pre-processed copy of the layer as a new layer."""
        try:
            out, kwargs = self.compute()
        except ValueError as exc:
            self.status.value = f"error: {exc}"
            raise
        self.viewer.add_image(out, **kwargs)
        self.status.value = f"added {kwargs['name']!r} {out.shape}"

    def _sinogram(self, layer) -> np.ndarray:
        """Line integrals of the chosen row through the CLI's read path (flats and darks as chosen)."""
        md = dict(layer.metadata)
        for key, box in (("flats", self.flats), ("darks", self.darks)):
            md[key] = self._field(box.value, key, layer)
        sino, _ = layer_line_integrals(layer.data, md, self.axis.value, self._angles(layer),
                                       int(self.row.value), int(self.row.value) + 1)
        return sino[0]

    def _run(self, fn, on_done):
        from napari.qt.threading import create_worker

        worker = create_worker(fn)
        worker.returned.connect(on_done)
        worker.errored.connect(lambda exc: setattr(self.status, "value", f"error: {exc}"))
        self._worker = worker
        worker.start()
        return worker

    def find_center(self, _=None):
        """Estimate the centre on the chosen row (in a worker); fills the centre box."""
        layer = self._current_layer()
        if layer is None:
            self.status.value = "pick a projection layer first"
            return None
        sino, angles = self._sinogram(layer), self._angles(layer)
        self.status.value = "finding the centre..."

        def done(est):
            self.center.value = est.center
            layer.metadata["center"] = est.center
            self.status.value = f"centre {est.center:.2f} ({est.label})"

        return self._run(lambda: center_mod.estimate_center(sino, angles), done)

    def center_scan(self, _=None):
        """Add a stack of FBP slices for centres ``centre +- range`` (in a worker)."""
        layer = self._current_layer()
        if layer is None:
            self.status.value = "pick a projection layer first"
            return None
        sino, angles = self._sinogram(layer), self._angles(layer)
        c0, r, step = float(self.center.value), float(self.scan_range.value), self.scan_step.value
        centers = np.arange(c0 - r, c0 + r + 1e-9, float(step))
        self.status.value = f"scanning {centers.size} centres..."

        def done(stack):
            scores = center_mod.scan_metric(stack)
            best = float(centers[int(np.argmax(scores))])
            self.viewer.add_image(stack, name=f"{layer.name} centre scan", metadata={
                "centers": centers, "sharpness": scores, "best_center": best,
                "row": int(self.row.value), "parent_layer": layer.name,
            })
            self.status.value = f"scan: sharpest at {best:.2f} (slider = centre index)"

        return self._run(lambda: center_mod.center_scan(sino, angles, centers), done)
