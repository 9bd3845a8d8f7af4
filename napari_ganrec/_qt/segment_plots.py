"""Small matplotlib canvases of the segmentation dock: value histogram and pore diameters."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

__all__ = ["HistogramCanvas"]


class HistogramCanvas(FigureCanvasQTAgg):
    """A compact histogram plot with optional vertical marker lines (thresholds).

    Parameters
    ----------
    xlabel : str
        Label of the x axis.
    height : float
        Figure height in inches.
    """

    def __init__(self, xlabel: str = "", height: float = 1.8, parent=None):
        self.figure = Figure(figsize=(3.5, height), tight_layout=True)
        super().__init__(self.figure)
        self.setParent(parent)
        self.axes = self.figure.add_subplot(111)
        self.xlabel = xlabel
        self.counts: np.ndarray = np.zeros(0)
        self.edges: np.ndarray = np.zeros(0)
        self.markers: dict[str, float] = {}
        self._draw_empty()

    def _draw_empty(self) -> None:
        self.axes.clear()
        self.axes.set_xlabel(self.xlabel, fontsize=8)
        self.axes.tick_params(labelsize=7)
        self.draw_idle()

    def set_histogram(self, counts, edges, log: bool = False) -> None:
        """Show ``counts`` over bin ``edges`` (len(counts) + 1)."""
        self.counts = np.asarray(counts, dtype=float)
        self.edges = np.asarray(edges, dtype=float)
        self._log = log
        self._redraw()

    def set_markers(self, markers: dict[str, float]) -> None:
        """Vertical lines, ``{label: x}``, redrawn over the current histogram."""
        self.markers = {k: float(v) for k, v in markers.items() if v is not None}
        self._redraw()

    def _redraw(self) -> None:
        self._draw_empty()
        ax = self.axes
        if self.counts.size:
            ax.stairs(self.counts, self.edges, fill=True, color="0.55")
            if getattr(self, "_log", False) and self.counts.max() > 0:
                ax.set_yscale("log")
        colors = ("tab:orange", "tab:blue", "tab:green")
        for (name, x), c in zip(self.markers.items(), colors):
            ax.axvline(x, color=c, lw=1.2, label=f"{name} {x:.4g}")
        if self.markers:
            ax.legend(fontsize=7, frameon=False, loc="upper right")
        self.draw_idle()
