"""The 'Advanced' section: a preset and the solver's parameters for the chosen method."""

from __future__ import annotations

import dataclasses
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..classical import FILTERS
from ..ganrec import PRESETS, GANrecConfig

# GANrec fields a user may reasonably tune, in display order (the rest stay at the preset's)
GANREC_FIELDS = (
    "lr_g", "lr_d", "l1_weight", "gan_weight", "l2_weight", "tv_weight", "dropout", "units",
    "channels", "n_conv", "kernel", "d_steps", "average_last", "output", "normalize_candidate",
    "spectral_norm", "circle", "prior_iterations", "reweight_every", "tv_eps", "init",
    "init_iterations", "support", "lr_decay",
)
OUTPUT_CHOICES = ("linear", "relu", "softplus")
CHOICES = {"output": OUTPUT_CHOICES, "init": ("none", "fbp", "sirt", "tv"), "filter_name": FILTERS}
TV_DEFAULT = 0.03
# GANrec execution choices (napari_ganrec.acceleration.Acceleration fields; None: automatic)
EXECUTION = {
    "auto": None,
    "float32, eager": {"amp": "off", "compile": "off", "channels_last": "off"},
    "bfloat16, eager": {"amp": "bf16", "compile": "off"},
    "compiled": {"compile": "on"},
}


def _field_doc(name: str) -> str:
    """The line under ``name : type`` in GANrecConfig's docstring (a tooltip)."""
    lines = (GANrecConfig.__doc__ or "").splitlines()
    for i, line in enumerate(lines):
        head, sep, _ = line.strip().partition(" : ")
        if sep and name in [p.strip() for p in head.split(",")]:
            return lines[i + 1].strip() if i + 1 < len(lines) else ""
    return ""


class _Form(QWidget):
    """A form of named editors with ``values()`` and ``set_values()``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.editors: dict[str, QWidget] = {}

    def add(self, name: str, value: Any, tooltip: str = "") -> None:
        if isinstance(value, bool):
            w = QCheckBox()
            w.setChecked(value)
        elif name in CHOICES:
            w = QComboBox()
            w.addItems(CHOICES[name])
            w.setCurrentText(str(value))
        elif isinstance(value, int) or (value is None and name == "units"):
            w = QSpinBox()
            w.setRange(0, 100_000)
            w.setValue(0 if value is None else int(value))
            if name == "units":
                w.setSpecialValueText("auto")
        else:
            w = QLineEdit(repr(float(value)) if value is not None else "")
        w.setToolTip(tooltip)
        w.setObjectName(name)
        self.editors[name] = w
        self.form.addRow(name, w)

    def set_values(self, values: dict[str, Any]) -> None:
        for name, v in values.items():
            w = self.editors.get(name)
            if isinstance(w, QCheckBox):
                w.setChecked(bool(v))
            elif isinstance(w, QComboBox):
                w.setCurrentText(str(v))
            elif isinstance(w, QSpinBox):
                w.setValue(0 if v is None else int(v))
            elif isinstance(w, QLineEdit):
                w.setText(repr(float(v)))

    def values(self) -> dict[str, Any]:
        """Current values; raises ValueError naming a field that is not a number."""
        out: dict[str, Any] = {}
        for name, w in self.editors.items():
            if isinstance(w, QCheckBox):
                out[name] = w.isChecked()
            elif isinstance(w, QComboBox):
                out[name] = w.currentText()
            elif isinstance(w, QSpinBox):
                out[name] = None if (name == "units" and w.value() == 0) else w.value()
            else:
                text = w.text().strip()
                try:
                    out[name] = float(text)
                except ValueError:
                    raise ValueError(
                        f"solver option {name} must be a number, got {text!r}"
                    ) from None
        return out


class SolverOptions(QWidget):
    """Preset and parameters of the chosen method.

    :meth:`options` returns only what differs from the preset (GANrec) or the engine's default
    (TV weight, FBP filter), so a run's metadata lists exactly what the user changed.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.setCurrentText("default")
        self.preset.setToolTip("GANrec presets: 'paper' is the published recipe, 'fast' a small "
                               "L1-only network for quick looks")
        top = QFormLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addRow("preset", self.preset)
        self.execution = QComboBox()
        self.execution.addItems(list(EXECUTION))
        self.execution.setToolTip(
            "How GANrec runs on the device. auto: on CUDA bfloat16 generator, channels-last, "
            "fused Adam, losses read every 25 iterations; on the CPU plain float32. 'compiled' "
            "adds torch.compile (slow first iterations; eager if it fails). 'float32, eager' "
            "turns all of that off (e.g. to compare or to debug).")
        top.addRow("execution", self.execution)
        layout.addLayout(top)
        self.stack = QStackedWidget()
        layout.addWidget(self.stack)

        self.ganrec = _Form()
        cfg = PRESETS["default"]
        for name in GANREC_FIELDS:
            self.ganrec.add(name, getattr(cfg, name), _field_doc(name))
        self.tv = _Form()
        self.tv.add("tv_weight", TV_DEFAULT, "dimensionless TV weight (larger: smoother)")
        self.sirt = _Form()
        self.fbp = _Form()
        self.fbp.add("filter_name", "ramp", "FBP filter")
        self._pages = {"ganrec": self.ganrec, "tv": self.tv, "sirt": self.sirt, "fbp": self.fbp}
        for page in self._pages.values():
            self.stack.addWidget(page)
        self.preset.currentTextChanged.connect(self._apply_preset)
        self.method = "ganrec"

    def set_method(self, method: str) -> None:
        """Show the parameters of ``method``."""
        self.method = method
        self.stack.setCurrentWidget(self._pages[method])
        self.preset.setEnabled(method == "ganrec")
        self.execution.setEnabled(method == "ganrec")

    def _apply_preset(self, name: str) -> None:
        if name in PRESETS:
            cfg = PRESETS[name]
            self.ganrec.set_values({f: getattr(cfg, f) for f in GANREC_FIELDS})

    def preset_name(self) -> str:
        return self.preset.currentText()

    def options(self) -> dict[str, Any]:
        """Options of the current method that differ from the defaults (ValueError if invalid)."""
        if self.method == "ganrec":
            base = PRESETS[self.preset_name()]
            vals = self.ganrec.values()
            changed = {k: v for k, v in vals.items() if v != getattr(base, k)}
            try:  # check ranges now, on the main thread, with the engine's own messages
                dataclasses.replace(base, **changed)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
            execution = EXECUTION[self.execution.currentText()]
            if execution is not None:
                changed["acceleration"] = dict(execution)
            return changed
        if self.method == "tv":
            w = self.tv.values()["tv_weight"]
            if w < 0:
                raise ValueError(f"tv_weight must be >= 0, got {w}")
            return {} if w == TV_DEFAULT else {"tv_weight": w}
        if self.method == "fbp":
            f = self.fbp.values()["filter_name"]
            return {} if f == "ramp" else {"filter_name": f}
        return {}
