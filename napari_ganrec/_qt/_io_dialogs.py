"""Small Qt dialogs of the I/O glue (the only Qt the writers touch)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ask_overwrite"]


def ask_overwrite(path: Path) -> bool:
    """Ask whether to replace ``path``; False when no Qt application is running."""
    from qtpy.QtWidgets import QApplication, QMessageBox

    if QApplication.instance() is None:
        return False
    answer = QMessageBox.question(
        None,
        "Replace file?",
        f"{path} already exists.\nReplace it?",
        QMessageBox.Yes | QMessageBox.No,
        QMessageBox.No,
    )
    return answer == QMessageBox.Yes
