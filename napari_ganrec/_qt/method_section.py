"""The 'Method' box: the method, its iterations and options, the device, the extra live layers, volume mode."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox
from superqt import QCollapsible

from ..widget_model.devices import available_devices
from ..widget_model.run import METHOD_LABELS
from .form import hrow, spin
from .solver_options import SolverOptions


class MethodSection(QGroupBox):
    """The method box; :meth:`run_values` gives what a run takes from it."""

    def __init__(self, parent=None):
        super().__init__("Method", parent)
        form = QFormLayout(self)
        self.method_combo = QComboBox()
        for key, label in METHOD_LABELS.items():
            self.method_combo.addItem(label, key)
        self.iterations_spin = spin(1, 1_000_000, 200, "Iterations to run")
        self.preview_spin = spin(1, 100_000, 10, "Show the image every N iterations")
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.seed_spin = spin(0, 2**31 - 1, 0, "Seed of the network initialisation")
        self.residual_check = QCheckBox("show sinogram residual")
        self.residual_check.setToolTip("A second live layer: model sinogram minus data")
        form.addRow("method", self.method_combo)
        form.addRow("iterations", hrow(self.iterations_spin, "preview every", self.preview_spin))
        form.addRow("device", hrow(self.device_combo, "seed", self.seed_spin))
        form.addRow("", self.residual_check)
        self.uncertainty_check = QCheckBox("show uncertainty (reweighted TV, GANrec)")
        self.uncertainty_check.setToolTip(
            "A live layer of the pixel-wise spread of the last iterates: bright where the data "
            "do not pin the image down (e.g. along the missing wedge)")
        form.addRow("", self.uncertainty_check)
        self.volume_check = QCheckBox("volume: slice by slice, warm start")
        self.volume_check.setToolTip(
            "Reconstruct the slice range one slice after another: the first slice gets the full "
            "iterations, each later one starts from the previous slice's state and gets the warm "
            "iterations; the live layer fills slice by slice")
        self.warm_spin = spin(1, 1_000_000, 100, "Iterations of each later slice (volume mode)")
        form.addRow("", hrow(self.volume_check, "warm iterations", self.warm_spin))
        self.solver_options = SolverOptions()
        self.advanced = QCollapsible("Advanced")
        self.advanced.addWidget(self.solver_options)
        form.addRow(self.advanced)
        self.method_combo.currentIndexChanged.connect(self._on_method)

    def _on_method(self, *_) -> None:
        m = self.method_combo.currentData()
        self.solver_options.set_method(m)
        iterative = m != "fbp"
        self.iterations_spin.setEnabled(iterative)
        self.preview_spin.setEnabled(iterative)
        self.seed_spin.setEnabled("ganrec" in m.split("+"))

    def set_method(self, method: str) -> None:
        """Choose the method by engine name (``"ganrec"``, ``"tv"``, ``"sirt"``, ``"fbp"``)."""
        idx = self.method_combo.findData(method)
        if idx < 0:
            raise ValueError(f"method must be one of {tuple(METHOD_LABELS)}, got {method!r}")
        self.method_combo.setCurrentIndex(idx)

    def run_values(self, n_slices: int) -> dict[str, Any]:
        """The :class:`~napari_ganrec.widget_model.run.RunParams` fields this box sets, for ``n_slices`` slices.

        Raises
        ------
        ValueError
            An option the user typed that is not a number (from the advanced options).
        """
        return dict(
            method=self.method_combo.currentData(),
            iterations=self.iterations_spin.value(),
            preview_every=self.preview_spin.value(),
            device=self.device_combo.currentText(),
            seed=self.seed_spin.value(),
            options=self.solver_options.options(),
            residual=self.residual_check.isChecked(),
            uncertainty=self.uncertainty_check.isChecked(),
            volume_slices=n_slices if self.volume_check.isChecked() and n_slices > 1 else 0,
            warm_iterations=self.warm_spin.value(),
        )
