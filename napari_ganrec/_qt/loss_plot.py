"""Loss curves of a running reconstruction (matplotlib in Qt), cheap enough to update live.

A full matplotlib draw (axes, ticks, legend) takes tens of milliseconds and far more on a busy
machine, so the plot draws the axes only when they change: the x axis spans the whole run from
the start, the y axis grows by whole decades, and in between only the lines are redrawn onto a
cached background (blitting).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._mpl import FOREGROUND, GRID, make_canvas


class LossPlot(QWidget):
    """Loss curves, one line per loss name, on a log axis.

    Call :meth:`set_history` as often as you like: redraws are coalesced to at most one every
    ``min_interval_ms`` milliseconds.

    Attributes
    ----------
    full_draws, blits : int
        How many full draws and line-only updates happened (for tests and profiling).
    """

    def __init__(self, parent: QWidget | None = None, min_interval_ms: int = 200):
        super().__init__(parent)
        self.canvas, self.figure, self.axes = make_canvas(3.2, 1.9)
        self.figure.subplots_adjust(left=0.17, right=0.97, top=0.95, bottom=0.2)
        self.canvas.setMinimumHeight(150)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._history: Mapping[str, tuple[Sequence[int], Sequence[float]]] = {}
        self._lines: dict = {}
        self._background = None
        self._total = 1
        self._ylim: tuple[float, float] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(min_interval_ms))
        self._timer.timeout.connect(self._on_timer)
        self.full_draws = 0
        self.blits = 0
        self.last_draw = 0.0  # time.perf_counter() of the last draw
        #: returns how many seconds to hold a redraw back (e.g. right after the viewer redrew),
        #: so that two expensive paints do not run back to back on the main thread
        self.defer = lambda: 0.0
        self.canvas.mpl_connect("draw_event", self._on_draw_event)
        ax = self.axes
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, numticks=4))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_minor_formatter(NullFormatter())
        # plain '1e-02' labels: matplotlib's default '10^-2' goes through mathtext, which is slow
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}"))
        ax.grid(True, color=GRID, linewidth=0.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(1e-3, 1)

    # ------------------------------------------------------------------ public
    def start(self, total: int) -> None:
        """Forget the curves and span ``total`` iterations (a new run starts)."""
        self._timer.stop()
        self._history = {}
        for line in self._lines.values():
            line.remove()
        self._lines = {}
        leg = self.axes.get_legend()
        if leg is not None:
            leg.remove()
        self._total = max(1, int(total))
        self._ylim = None
        self.axes.set_xlim(0, self._total)
        self._background = None
        self.canvas.draw_idle()  # deferred: the first data point draws everything anyway

    def clear(self) -> None:
        """Forget the curves, keeping the x range."""
        self.start(self._total)

    def set_history(self, history: Mapping[str, tuple[Sequence[int], Sequence[float]]]) -> None:
        """Show ``{name: (iterations, values)}``; the redraw follows within the interval."""
        self._history = history
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Redraw now if a redraw is pending (end of a run)."""
        if self._timer.isActive():
            self._timer.stop()
            self.redraw()

    def _on_timer(self) -> None:
        wait = self.defer()
        if wait > 0:
            self._timer.start(int(wait * 1000) + 1)
            return
        self.redraw()

    def redraw(self) -> None:
        """Update the lines from the last history; redraw the axes only if they changed."""
        self.last_draw = time.perf_counter()
        ax = self.axes
        full = False
        lo, hi, xmax = np.inf, -np.inf, 0.0
        for name, (its, vals) in list(self._history.items()):
            x = np.asarray(its, dtype=float)
            y = np.asarray(vals, dtype=float)
            y = np.where(np.isfinite(y) & (y > 0), y, np.nan)
            if name not in self._lines and not np.any(np.isfinite(y)):
                continue  # nothing to draw on a log axis (e.g. a loss that stays 0)
            if name not in self._lines:
                (self._lines[name],) = ax.plot([], [], linewidth=1.0, label=name, animated=True)
                full = True
            self._lines[name].set_data(x, y)
            if x.size:
                xmax = max(xmax, float(x.max()))
            if np.any(np.isfinite(y)):
                lo = min(lo, float(np.nanmin(y)))
                hi = max(hi, float(np.nanmax(y)))
        if xmax > self._total:
            self._total = int(np.ceil(xmax))
            ax.set_xlim(0, self._total)
            full = True
        if np.isfinite(lo):
            # a decade of margin each side, so the axes rarely need redrawing
            want = (10.0 ** (np.floor(np.log10(lo)) - 1), 10.0 ** (np.ceil(np.log10(hi)) + 1))
            cur = self._ylim
            if cur is None or lo < cur[0] or hi > cur[1]:
                new = want if cur is None else (min(want[0], cur[0]), max(want[1], cur[1]))
                self._ylim = new
                ax.set_ylim(*new)
                full = True
        if full:
            if self._lines:
                ax.legend(fontsize=7, frameon=False, loc="upper right", labelcolor=FOREGROUND)
            self._full_draw()
        else:
            self._blit()

    # ------------------------------------------------------------------ drawing
    def _full_draw(self) -> None:
        self.canvas.draw()  # draw_event re-captures the background and draws the lines
        self.full_draws += 1

    def _on_draw_event(self, event=None) -> None:
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        for line in self._lines.values():
            self.axes.draw_artist(line)

    def _blit(self) -> None:
        if self._background is None:
            self._full_draw()
            return
        self.canvas.restore_region(self._background)
        for line in self._lines.values():
            self.axes.draw_artist(line)
        self.canvas.blit(self.figure.bbox)
        self.blits += 1
