"""The file suffixes the readers and writers of :mod:`napari_ganrec.io` accept (re-exported there)."""

from __future__ import annotations

__all__ = ["HDF5_SUFFIXES", "READ_SUFFIXES", "HDF5_WRITE_SUFFIXES", "WRITE_SUFFIXES"]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx", ".cxi")
READ_SUFFIXES = HDF5_SUFFIXES + (".mrc", ".rec", ".st", ".ali", ".mrcs", ".preali",
                                 ".tif", ".tiff", ".npy", ".npz")
HDF5_WRITE_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs")
WRITE_SUFFIXES = (".tif", ".tiff") + HDF5_WRITE_SUFFIXES + (".npy", ".npz", ".mrc", ".rec")
