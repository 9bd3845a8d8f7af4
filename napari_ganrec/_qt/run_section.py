"""The 'Run' box: Run / Pause / Stop, the status line, the time left and the loss plot."""

from __future__ import annotations

from qtpy.QtWidgets import QGroupBox, QLabel, QPushButton, QVBoxLayout

from ..widget_model.run import RunState
from ..widget_model.status import button_states, eta_text, status_text
from .form import hrow
from .loss_plot import LossPlot


class RunSection(QGroupBox):
    """The run box; it paints a :class:`~napari_ganrec.widget_model.run.RunState`, it does not change it."""

    def __init__(self, parent=None):
        super().__init__("Run", parent)
        v = QVBoxLayout(self)
        self.run_button = QPushButton("Run")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        v.addLayout(hrow(self.run_button, self.pause_button, self.stop_button))
        self.status_label = QLabel("idle")
        self.status_label.setWordWrap(True)
        v.addWidget(self.status_label)
        self.eta_label = QLabel("")
        self.eta_label.setToolTip("Time left, from the rate since the first iterations")
        v.addWidget(self.eta_label)
        self.loss_plot = LossPlot()
        v.addWidget(self.loss_plot)

    def show_buttons(self, status: str) -> None:
        """Enable the buttons a run in ``status`` allows."""
        b = button_states(status)
        self.run_button.setEnabled(b.run)
        self.pause_button.setEnabled(b.pause)
        self.pause_button.setText(b.pause_text)
        self.stop_button.setEnabled(b.stop)

    def show_progress(self, state: RunState) -> None:
        """Paint the losses, the time left and the status line of ``state``."""
        self.loss_plot.set_history(state.loss_history)
        eta = eta_text(state)
        if eta is not None:
            self.eta_label.setText(eta)
        self.status_label.setText(status_text(state))
