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
        file has none (what the projections hold is then decided by
        :func:`napari_ganrec.io.resolve_kind`).
    metadata : dict
        Everything else: ``source`` (path), ``format``; ``kind`` (``"raw"``, ``"transmission"``,
        ``"line_integrals"`` or ``"reconstruction"``) only where the file says it, with
        ``format_kind`` / ``format_kind_reason`` for what the format's convention says (NXtomo:
        raw; MRC tilt series: intensities used as they are), which ranks below flats/darks;
        units, ``pixel_size`` when known, ...
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
    def sinograms(self, rows: slice | int | None = None, *, log: bool | None = None,
                  data: str | None = None) -> np.ndarray:
        """Line-integral sinograms of detector rows ``rows``, reading only those rows.

        The same read path as the CLI and the volume sources:
        :func:`napari_ganrec.io.line_integrals`.

        Parameters
        ----------
        rows : slice or int, optional
            Detector rows (along the rotation axis). Default: all rows.
        log : bool, optional
            Older spelling of ``data``: ``False`` means the projections are line integrals (used as
            they are), ``True`` that they are raw counts (with flats) or transmission.
        data : str, optional
            ``"auto"`` (default), ``"raw"``, ``"transmission"`` or ``"line-integrals"``; see
            :func:`napari_ganrec.io.resolve_kind`.

        Returns
        -------
        numpy.ndarray
            ``(n_rows_selected, n_angles, n_det)`` float32, finite.
        """
        from .line_integrals import line_integrals

        if data is None:
            if log is None:
                data = "auto"
            elif not log:
                data = "line_integrals"
            else:
                data = "raw" if self.flats is not None or self.darks is not None else "transmission"
        return line_integrals(self, rows, choice=data)

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
