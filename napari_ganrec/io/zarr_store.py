"""The resumable chunked store of a volume being reconstructed: a Zarr array, one slice per chunk.

Slab tasks (possibly on other machines) write their slices into it; a run started again with the
same parameters finds it and goes on; one with other parameters is refused unless ``overwrite``.
When the output itself is ``.zarr`` the store is the result, and its metadata is recorded in it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ._common import to_jsonable

__all__ = ["PARAMS_KEY", "METADATA_KEY", "open_slice_store", "write_slices", "record_metadata"]

PARAMS_KEY = "napari_ganrec"  # the run's parameters: what a resumed run must match
METADATA_KEY = "napari_ganrec_metadata"  # the reconstruction's metadata, as in the other outputs


def open_slice_store(store, shape, params: dict, overwrite: bool = False):
    """Open the store of a run with these ``params``, or create it (float32, zeros).

    Returns
    -------
    (zarr.Array, bool)
        The array and whether an earlier run's store with the same parameters was found.

    Raises
    ------
    ValueError
        The store holds a run with other parameters (or is broken) and ``overwrite`` is False.
    """
    import zarr

    store = Path(store)
    if store.exists():
        try:
            arr = zarr.open_array(str(store), mode="r+")
            old = arr.attrs.get(PARAMS_KEY)
        except Exception:  # noqa: BLE001 - a broken store is treated as a mismatch
            arr, old = None, None
        if arr is not None and old == params and tuple(arr.shape) == tuple(shape):
            return arr, True
        if not overwrite:
            raise ValueError(
                f"{store} holds a run with other parameters or input; pass overwrite=True to start "
                "afresh, or choose another output"
            )
        shutil.rmtree(store)
    store.parent.mkdir(parents=True, exist_ok=True)
    arr = zarr.open_array(str(store), mode="w-", shape=tuple(shape), chunks=(1,) + tuple(shape[1:]),
                          dtype="float32", fill_value=0.0)
    arr.attrs[PARAMS_KEY] = params
    return arr, False


def write_slices(store, start: int, images: np.ndarray) -> None:
    """Write ``images`` ``(n, y, x)`` into slices ``start .. start + n - 1`` of the store."""
    import zarr

    arr = zarr.open_array(str(store), mode="r+")
    arr[start:start + len(images)] = np.asarray(images, dtype=np.float32)


def record_metadata(store, metadata: dict) -> None:
    """Record the reconstruction's metadata in a store that is itself the output."""
    import zarr

    arr = zarr.open_array(str(store), mode="r+")
    arr.attrs[METADATA_KEY] = to_jsonable(metadata)
