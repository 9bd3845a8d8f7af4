"""Binning the detector (and optionally the rows) before a run, and what it does to the centre."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BINNINGS", "Binning"]

#: Binning factors the widget offers.
BINNINGS = (1, 2, 4)


@dataclass(frozen=True)
class Binning:
    """Binning of the detector (and optionally the rows) before a run.

    Detector bin ``j`` averages pixels ``b*j ... b*j + b - 1`` (a remainder at the end is dropped,
    as :func:`napari_ganrec.preprocess.bin_stack` does), so it is centred at ``b*j + (b - 1)/2``:
    a centre ``c`` in detector pixels is ``(c - (b - 1)/2) / b`` in binned pixels. Line integrals
    keep their values, so the reconstruction of binned data is in units per *binned* pixel
    (``factor`` times the unbinned value), as for ``bin_stack``.

    Attributes
    ----------
    factor : int
        1, 2 or 4 (any positive integer is accepted).
    rows : bool
        Also average ``factor`` consecutive rows (slices) into one.
    """

    factor: int = 1
    rows: bool = True

    def __post_init__(self):
        f = self.factor
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1:
            raise ValueError(f"binning factor must be a positive integer, got {f!r}")
        object.__setattr__(self, "factor", int(f))

    @property
    def row_factor(self) -> int:
        return self.factor if self.rows else 1

    def center(self, center: float) -> float:
        """Centre ``center`` (detector pixels) in binned pixels."""
        return (float(center) - (self.factor - 1) / 2.0) / self.factor

    def unbinned_center(self, center: float) -> float:
        """Centre ``center`` (binned pixels) in detector pixels."""
        return float(center) * self.factor + (self.factor - 1) / 2.0

    def n_det(self, n_det: int) -> int:
        """Detector width after binning."""
        return int(n_det) // self.factor

    def check_rows(self, start: int, stop: int) -> None:
        """Raise a ``ValueError`` when the slice range ``start:stop`` is too short to bin."""
        n = int(stop) - int(start)
        if n < self.row_factor:
            raise ValueError(
                f"binning {self.factor} with rows averages {self.factor} rows into one slice, but the "
                f"slice range holds {n} row(s): choose at least {self.factor} slices, or untick "
                "'bin rows' to bin the detector only")

    def rows_used(self, start: int, stop: int) -> tuple[int, int]:
        """The rows ``start:stop`` actually read (a remainder of the row binning is dropped)."""
        self.check_rows(start, stop)
        k = self.row_factor
        return int(start), int(start) + (int(stop) - int(start)) // k * k

    def apply(self, sinograms: np.ndarray) -> np.ndarray:
        """Bin sinograms ``(n_rows, n_angles, n_det)`` -> ``(n_rows // k, n_angles, n_det // b)``."""
        s = np.asarray(sinograms, dtype=np.float32)
        if s.ndim != 3:
            raise ValueError(f"sinograms must be (rows, angles, detector), got shape {s.shape}")
        b, k = self.factor, self.row_factor
        nr, na, nd = s.shape[0] // k, s.shape[1], s.shape[2] // b
        if nr < 1 or nd < 2:
            raise ValueError(f"binning {b} is too large for sinograms of shape {s.shape}")
        if b == 1 and k == 1:
            return s
        s = s[: nr * k, :, : nd * b].reshape(nr, k, na, nd, b).mean(axis=(1, 4))
        return np.ascontiguousarray(s, dtype=np.float32)

    def metadata(self) -> dict:
        """What a result layer's metadata says about the binning."""
        return {"factor": self.factor, "rows": bool(self.rows),
                "values": "per binned pixel" if self.factor > 1 else "per detector pixel"}
