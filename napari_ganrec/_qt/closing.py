"""Seeing a dock widget's end: it is closed, napari removes it, or the main window it sits in closes.

The dock widget is put into a dock and then into the main window after it is made, so its
ancestors are (re-)watched whenever its parent changes or it is shown.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QMainWindow, QWidget


class DockLifetime(QObject):
    """Calls ``on_close`` when ``widget`` closes, is taken out of its dock, or its main window closes.

    It filters the events of ``widget`` and of every ancestor; ``on_close`` may be called more
    than once (it must be idempotent).

    Parameters
    ----------
    widget : QWidget
        The dock widget.
    on_close : callable
        Called with no argument.
    """

    def __init__(self, widget: QWidget, on_close: Callable[[], None]):
        super().__init__(widget)
        self.widget = widget
        self.on_close = on_close
        self._docked = False
        self._watched: list = []
        widget.installEventFilter(self)

    def watch(self) -> None:
        """Watch every ancestor not watched yet (the dock first, then the main window it is put in)."""
        w = self.widget.parent()
        while isinstance(w, QObject):
            if not any(w is o for o in self._watched):
                w.installEventFilter(self)
                self._watched.append(w)
            w = w.parent()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        kind = event.type()
        if obj is self.widget:
            if kind == QEvent.Type.Close:
                self.on_close()
            elif kind == QEvent.Type.Show:
                self.watch()
            elif kind == QEvent.Type.ParentChange:
                if self.widget.parent() is not None:
                    self._docked = True
                    self.watch()
                elif self._docked:  # napari removed the dock widget: stop the run
                    self.on_close()
        elif kind == QEvent.Type.Close and isinstance(obj, QMainWindow):
            self.on_close()
        elif kind == QEvent.Type.ParentChange:
            self.watch()  # the dock widget went into the main window
        return False

    def release(self) -> None:
        """Stop watching the ancestors (closing the widget)."""
        for w in self._watched:
            try:
                w.removeEventFilter(self)
            except RuntimeError:  # already deleted
                pass
        self._watched = []
