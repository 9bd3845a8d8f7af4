"""Seeing a dock widget's end: napari removing it, or the main window it sits in closing.

The dock widget is put into a dock and then into the main window after it is made, so the
ancestors are (re-)watched whenever its parent changes or it is shown.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QMainWindow, QWidget


class AncestorWatcher(QObject):
    """Calls ``on_close`` when a main window among ``widget``'s ancestors closes.

    Parameters
    ----------
    widget : QWidget
        The dock widget whose ancestors are watched.
    on_close : callable
        Called (with no argument) when the main window closes.
    """

    def __init__(self, widget: QWidget, on_close: Callable[[], None]):
        super().__init__(widget)
        self.widget = widget
        self.on_close = on_close
        self._watched: list = []

    def watch(self) -> None:
        """Watch every ancestor not watched yet (the dock first, then the main window it is put in)."""
        w = self.widget.parent()
        while isinstance(w, QObject):
            if not any(w is o for o in self._watched):
                w.installEventFilter(self)
                self._watched.append(w)
            w = w.parent()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.Close and isinstance(obj, QMainWindow):
            self.on_close()
        elif event.type() == QEvent.Type.ParentChange:
            self.watch()  # the dock widget went into the main window
        return False

    def release(self) -> None:
        """Stop watching (closing the widget)."""
        for w in self._watched:
            try:
                w.removeEventFilter(self)
            except RuntimeError:  # already deleted
                pass
        self._watched = []
