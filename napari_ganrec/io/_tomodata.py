"""The :class:`TomoData` container every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TomoData"]


@dataclass
class TomoData:
    """A projection stack with its angles, flats, darks and metadata.

    Attributes
    ----------
    projections : array-like
        ``(n_angles, n_rows, n_det)``: one projection per angle, rows along the rotation axis.
        Possibly lazy (:class:`~napari_ganrec.io.LazyStack` over an HDF5 dataset, a memory map or
        TIFF pages): index it to read, nothing is read whole unless asked.
    angles : numpy.ndarray
        Projection angles in degrees, float64, one per projection.
    flats, darks : array-like or None
        Flat (open beam) and dark fields ``(n, n_rows, n_det)`` (raw counts), or None when the
        file has none (then the projections are taken as already normalised, or as line
        integrals when ``metadata["kind"]`` says so).
    metadata : dict
        Everything else: ``source`` (path), ``format``, ``kind`` (``"raw"``, ``"transmission"``,
        ``"line_integrals"`` or ``"reconstruction"``), units, pixel size when known, ...
    """

    projections: Any
    angles: np.ndarray
    flats: Any | None = None
    darks: Any | None = None
    metadata: dict = field(default_factory=dict)
    _closers: list = field(default_factory=list, repr=False, compare=False)

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.projections.shape)

    @property
    def n_angles(self) -> int:
        return self.shape[0]

    @property
    def n_rows(self) -> int:
        return self.shape[1]

    @property
    def n_det(self) -> int:
        return self.shape[2]

    # ------------------------------------------------------------------ data
    def _field(self, which, rows) -> np.ndarray | None:
        if which is None:
            return None
        arr = np.asarray(which[:, rows, :], dtype=np.float32)
        return arr

    def sinograms(
        self,
        rows: slice | int | None = None,
        *,
        log: bool | None = None,
        dark_floor: float = 0.0,
        min_transmission: float = 1e-6,
        max_transmission: float | None = None,
    ) -> np.ndarray:
        """Normalised ``-log`` sinograms of detector rows ``rows``, reading only those rows.

        Parameters
        ----------
        rows : slice or int, optional
            Detector rows (along the rotation axis). Default: all rows.
        log : bool, optional
            Take ``-log`` of the transmission. Default: unless ``metadata["kind"]`` is
            ``"line_integrals"`` (data already after -log).
        dark_floor, min_transmission, max_transmission
            See :func:`napari_ganrec.preprocess.normalize`.

        Returns
        -------
        numpy.ndarray
            ``(n_rows_selected, n_angles, n_det)`` float32, finite.
        """
        from ..preprocess import minus_log, normalize, to_sinograms

        if rows is None:
            rows = slice(None)
        if isinstance(rows, (int, np.integer)):
            r = int(rows)
            if not -self.n_rows <= r < self.n_rows:
                raise ValueError(f"rows: row {r} is outside the detector (0..{self.n_rows - 1})")
            rows = slice(r % self.n_rows, r % self.n_rows + 1)
        proj = np.asarray(self.projections[:, rows, :], dtype=np.float32)
        kind = self.metadata.get("kind", "raw")
        if log is None:
            log = kind != "line_integrals"
        if kind == "line_integrals" or (self.flats is None and self.darks is None and not log):
            data = proj
        else:
            data = normalize(
                proj,
                self._field(self.flats, rows),
                self._field(self.darks, rows),
                dark_floor=dark_floor,
                min_transmission=min_transmission,
                max_transmission=max_transmission,
            )
            if log:
                data = minus_log(data, min_transmission=min_transmission)
        return to_sinograms(data)

    # ------------------------------------------------------------------ resources
    def close(self) -> None:
        """Close the files kept open for lazy reading."""
        while self._closers:
            try:
                self._closers.pop()()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    def __enter__(self) -> TomoData:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
