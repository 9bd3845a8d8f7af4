"""Small synthetic files in every supported layout (shared by the I/O tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_ANG, N_ROW, N_DET = 12, 3, 16
ANGLES = np.linspace(0.0, 180.0, N_ANG, endpoint=False)
DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TOOTH = DATA_DIR / "tooth.h5"


def raw_stack(seed: int = 0):
    """Raw counts with flats (1000) and darks (100): transmission exp(-p)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 1.0, (N_ANG, N_ROW, N_DET)).astype(np.float32)
    flats = np.full((4, N_ROW, N_DET), 1000.0, np.float32)
    darks = np.full((3, N_ROW, N_DET), 100.0, np.float32)
    proj = (100.0 + 900.0 * np.exp(-p)).astype(np.float32)
    return proj, flats, darks, p


def write_dxchange(path, proj, flats=None, darks=None, theta=ANGLES, units="degrees"):
    import h5py

    with h5py.File(path, "w") as f:
        f["exchange/data"] = proj
        if flats is not None:
            f["exchange/data_white"] = flats
        if darks is not None:
            f["exchange/data_dark"] = darks
        if theta is not None:
            f["exchange/theta"] = theta
            if units:
                f["exchange/theta"].attrs["units"] = units
    return Path(path)


def write_nxtomo(path, proj, flats, darks, theta=ANGLES, units="degree"):
    import h5py

    frames = np.concatenate([darks, flats[:2], proj, flats[2:]])
    keys = np.array([2] * len(darks) + [1] * 2 + [0] * len(proj) + [1] * (len(flats) - 2))
    rot = np.concatenate([np.zeros(len(darks) + 2), theta, np.full(len(flats) - 2, 180.0)])
    with h5py.File(path, "w") as f:
        e = f.create_group("entry0000")
        e.attrs["NX_class"] = "NXentry"
        e["definition"] = "NXtomo"
        det = e.create_group("instrument/detector")
        det["data"] = frames
        det["image_key"] = keys
        e["sample/rotation_angle"] = rot
        e["sample/rotation_angle"].attrs["units"] = units
    return Path(path)
