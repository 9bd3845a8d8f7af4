"""Small builders of the dock widgets' forms: spin boxes with a range and tip, rows of widgets."""

from __future__ import annotations

from qtpy.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QSpinBox, QWidget


def spin(lo: int, hi: int, value: int, tip: str = "") -> QSpinBox:
    """An integer box from ``lo`` to ``hi`` holding ``value``."""
    w = QSpinBox()
    w.setRange(lo, hi)
    w.setValue(value)
    w.setToolTip(tip)
    return w


def dspin(lo: float, hi: float, value: float, step: float = 1.0, decimals: int = 2,
          tip: str = "") -> QDoubleSpinBox:
    """A decimal box from ``lo`` to ``hi`` holding ``value``, stepping by ``step``."""
    w = QDoubleSpinBox()
    w.setDecimals(decimals)
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setValue(value)
    w.setToolTip(tip)
    return w


def hrow(*items: QWidget | str, stretch: dict[int, int] | None = None) -> QHBoxLayout:
    """A row of widgets, left to right; a string is a label. ``stretch`` maps an item's index to its stretch."""
    row = QHBoxLayout()
    for i, item in enumerate(items):
        w = QLabel(item) if isinstance(item, str) else item
        row.addWidget(w, (stretch or {}).get(i, 0))
    return row
