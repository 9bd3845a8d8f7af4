"""The 'Advanced' section: the parameters of each stage of the chosen method."""

from __future__ import annotations

import dataclasses
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..methods import FILTERS, METHODS, REGISTRY, parse_method
from ..methods.wedgefill import REMOVALS

OUTPUT_CHOICES = ("linear", "relu", "softplus")
CHOICES = {"filter_name": FILTERS, "removal": REMOVALS}
# GANrec execution choices (napari_ganrec.acceleration.Acceleration fields; None: automatic)
EXECUTION = {
    "auto": None,
    "float32, eager": {"amp": "off", "compile": "off", "channels_last": "off"},
    "bfloat16, eager": {"amp": "bf16", "compile": "off"},
    "compiled": {"compile": "on"},
}
# fields that describe how a run is checked, not the method (left at their defaults)
_HIDDEN = {"snapshot_every", "max_recoveries", "disc_channels", "betas"}


def _field_doc(config_cls, name: str) -> str:
    """The line under ``name : type`` in the config's docstring (a tooltip)."""
    lines = (config_cls.__doc__ or "").splitlines()
    for i, line in enumerate(lines):
        head, sep, _ = line.strip().partition(" : ")
        if sep and name in [p.strip() for p in head.split(",")]:
            return lines[i + 1].strip() if i + 1 < len(lines) else ""
    return ""


def _number_text(value: Any) -> str:
    """What a number field shows: ``"auto"`` as it is, ``None`` as empty, a number by ``repr``."""
    if value is None:
        return ""
    return value if isinstance(value, str) else repr(float(value))


def _stage_fields(name: str) -> dict[str, Any]:
    cfg = REGISTRY[name].config()
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in _HIDDEN}


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
            w = QLineEdit(_number_text(value))
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
                w.setText(_number_text(v))

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
                if text.lower() == "auto" or not text:  # "auto": chosen from the data; empty: None
                    out[name] = "auto" if text else None
                    continue
                try:
                    out[name] = float(text)
                except ValueError:
                    raise ValueError(
                        f"solver option {name} must be a number or 'auto', got {text!r}"
                    ) from None
        return out


class SolverOptions(QWidget):
    """The parameters of each stage of the chosen method (from the registry's configs).

    :meth:`options` returns only what differs from the stage configs' defaults, so a run's
    metadata lists exactly what the user changed: flat for a single stage (``{"tv_weight": 0.1}``),
    per stage for a chain (``{"ganrec": {"lr_g": 5e-4}}``).
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QFormLayout()
        top.setContentsMargins(0, 0, 0, 0)
        self.execution = QComboBox()
        self.execution.addItems(list(EXECUTION))
        self.execution.setToolTip(
            "How the GANrec stage runs on the device. auto: on CUDA bfloat16 generator, channels-last, "
            "fused Adam, losses read every 25 iterations; on the CPU plain float32. 'compiled' "
            "adds torch.compile (slow first iterations; eager if it fails). 'float32, eager' "
            "turns all of that off (e.g. to compare or to debug).")
        top.addRow("execution", self.execution)
        layout.addLayout(top)
        self.stack = QStackedWidget()
        layout.addWidget(self.stack)
        #: ``forms[method][stage]``: the editors of one stage of one method's page
        self.forms: dict[str, dict[str, _Form]] = {}
        self._pages: dict[str, QWidget] = {}
        for method in METHODS:
            page = QWidget()
            col = QVBoxLayout(page)
            col.setContentsMargins(0, 0, 0, 0)
            self.forms[method] = {}
            for stage, _ in parse_method(method):
                form = _Form()
                cls = REGISTRY[stage].config
                for fname, value in _stage_fields(stage).items():
                    form.add(fname, value, _field_doc(cls, fname))
                self.forms[method][stage] = form
                if len(parse_method(method)) > 1:
                    col.addWidget(QLabel(REGISTRY[stage].label))
                col.addWidget(form)
            self._pages[method] = page
            self.stack.addWidget(page)
        for name in REGISTRY:  # the single-stage forms, by stage name (self.ganrec, self.tv...)
            setattr(self, name, self.forms[name][name])
        self.method = METHODS[0]
        self.set_method(self.method)

    def set_method(self, method: str) -> None:
        """Show the parameters of ``method``."""
        self.method = method
        self.stack.setCurrentWidget(self._pages[method])
        self.execution.setEnabled("ganrec" in self.forms[method])

    def options(self) -> dict[str, Any]:
        """Options of the current method that differ from the defaults (ValueError if invalid)."""
        per_stage: dict[str, dict[str, Any]] = {}
        for stage, form in self.forms[self.method].items():
            defaults = _stage_fields(stage)
            changed = {k: v for k, v in form.values().items() if v != defaults[k]}
            try:  # check ranges now, on the main thread, with the engine's own messages
                REGISTRY[stage].config(**changed)
            except (TypeError, ValueError) as exc:
                raise ValueError(str(exc)) from None
            if changed:
                per_stage[stage] = changed
        if len(self.forms[self.method]) == 1:
            out = dict(next(iter(per_stage.values()), {}))
        else:
            out = per_stage
        execution = EXECUTION[self.execution.currentText()]
        if execution is not None and "ganrec" in self.forms[self.method]:
            out["acceleration"] = dict(execution)
        return out
