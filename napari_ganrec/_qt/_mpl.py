"""A small matplotlib canvas in napari's colours, shared by the loss and wedge plots."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

BACKGROUND = "#262930"
FOREGROUND = "#d1d2d4"
GRID = "#414851"


def make_canvas(width: float, height: float, polar: bool = False):
    """A ``(canvas, figure, axes)`` triple styled for napari's dark theme."""
    fig = Figure(figsize=(width, height), dpi=100, facecolor=BACKGROUND)
    canvas = FigureCanvasQTAgg(fig)
    ax = fig.add_subplot(111, projection="polar" if polar else None)
    style_axes(ax)
    return canvas, fig, ax


def style_axes(ax) -> None:
    """Dark background, light ticks and labels."""
    ax.set_facecolor(BACKGROUND)
    ax.tick_params(colors=FOREGROUND, labelsize=7)
    for spine in ax.spines.values():
        spine.set_color(GRID)
    ax.xaxis.label.set_color(FOREGROUND)
    ax.yaxis.label.set_color(FOREGROUND)
    ax.title.set_color(FOREGROUND)
