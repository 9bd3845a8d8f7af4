"""A small polar plot of the projection directions, with the missing wedge shaded."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..widget_model.inputs import Coverage, angular_coverage
from ._mpl import FOREGROUND, GRID, make_canvas

COVERED = "#5ab0ff"
MISSING = "#ff6b6b"


class WedgePlot(QWidget):
    """Projection directions (both ends of each ray direction) and the missing wedge(s).

    A parallel-beam projection at angle theta measures the same as one at theta + 180, so the plot
    draws each direction as a diameter and shades what no projection covers.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.canvas, self.figure, self.axes = make_canvas(1.2, 1.2, polar=True)
        self.figure.subplots_adjust(left=0.1, right=0.9, top=0.9, bottom=0.1)
        self.canvas.setFixedSize(120, 120)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setMaximumWidth(130)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        layout.addWidget(self.label)
        self.coverage: Coverage | None = None

    def set_angles(self, angles) -> None:
        """Draw the coverage of ``angles`` (degrees); an empty or invalid set clears the plot."""
        ax = self.axes
        ax.clear()
        ax.set_xticks(np.deg2rad([0, 45, 90, 135, 180, 225, 270, 315]))
        ax.set_xticklabels(["0", "", "90", "", "180", "", "270", ""], fontsize=6, color=FOREGROUND)
        ax.set_yticks([])
        ax.grid(True, color=GRID, linewidth=0.5)
        try:
            cov = angular_coverage(angles)
        except (ValueError, TypeError):
            self.coverage = None
            self.label.setText("no valid angles")
            self.canvas.draw_idle()
            return
        self.coverage = cov
        a = np.deg2rad(np.asarray(angles, dtype=float))
        if a.size > 361:  # keep it legible and fast
            a = a[np.linspace(0, a.size - 1, 361).astype(int)]
        # each direction as a diameter: one path out along t, back, and out along t + 180
        nan = np.full_like(a, np.nan)
        th = np.stack([a, a, a + np.pi, a + np.pi, nan], axis=1).ravel()
        r = np.tile([1.0, 0.0, 0.0, 1.0, np.nan], a.size)
        ax.plot(th, r, color=COVERED, linewidth=0.6, alpha=0.8)
        for lo, hi in cov.wedges:
            for off in (0.0, 180.0):
                th = np.deg2rad(np.linspace(lo + off, hi + off, 64))
                ax.fill_between(th, 0, 1, color=MISSING, alpha=0.35, linewidth=0)
        ax.set_ylim(0, 1)
        if cov.wedges:
            txt = f"covered {cov.covered:.0f}\u00b0\nmissing {cov.missing:.0f}\u00b0"
        else:
            txt = "covered 180\u00b0\nno missing wedge"
        self.label.setText(txt)
        self.canvas.draw_idle()
