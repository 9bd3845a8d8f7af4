"""Atomic file writing shared by every writer: temporary file in the target folder, then rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["atomic_path", "write_tiff_atomic"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    PermissionError
        The folder is not writable.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True (--overwrite) to replace it")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"output folder {folder} is not writable")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_tiff_atomic(path, data: np.ndarray, metadata: dict | None = None, overwrite: bool = False) -> Path:
    """Write float32 (multi-page) TIFF with ``metadata`` as JSON in the image description."""
    import tifffile

    target = Path(path)
    with atomic_path(target, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, np.asarray(data, dtype=np.float32),
                         description=json.dumps(metadata or {}), metadata=None)
    return target
