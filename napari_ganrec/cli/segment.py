"""``napari-ganrec segment``: 3-D pore segmentation of a reconstructed volume.

::

    napari-ganrec segment RECON.tif -o LABELS.tif [--csv PORES.csv] [--threshold otsu|li|VALUE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

__all__ = ["register", "run", "read_volume", "check_outputs"]


def _threshold(text: str):
    from ..segment import parse_threshold

    try:
        return parse_threshold(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _voxel_size(text: str):
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"voxel size must be a number or Z,Y,X, got {text!r}"
        ) from None
    if len(parts) not in (1, 3) or any(p <= 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"voxel size must be one positive number or three (Z,Y,X), got {text!r}"
        )
    return parts[0] if len(parts) == 1 else tuple(parts)


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``segment`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "segment",
        help="segment pores of a reconstructed particle in 3-D and measure them",
        description=(
            "Segment the pores of a reconstructed volume in 3-D: particle mask (solid phase plus "
            "everything it encloses), pore threshold inside it, connected components, per-pore "
            "table. Writes a label TIFF (0 = no pore) and optionally the pore table as CSV."
        ),
    )
    p.add_argument("input", type=Path, help="reconstructed volume (TIFF stack, .npy, .h5, .npz or .mrc), z-y-x")
    p.add_argument("-o", "--output", type=Path, required=True, help="label volume to write (TIFF)")
    p.add_argument("--csv", type=Path, help="pore table to write (CSV)")
    p.add_argument("--mask", type=Path, help="particle mask to write (uint8 TIFF)")
    p.add_argument(
        "--threshold",
        type=_threshold,
        default="otsu",
        metavar="otsu|li|VALUE",
        help="pore threshold (default otsu, inside the particle)",
    )
    p.add_argument(
        "--particle-threshold",
        type=_threshold,
        default="otsu",
        metavar="otsu|li|VALUE",
        help="solid-phase threshold of the particle mask (default otsu)",
    )
    p.add_argument(
        "--denoise",
        choices=("none", "gaussian", "median", "nlm"),
        default="none",
        help="denoise before thresholding (default none)",
    )
    p.add_argument(
        "--denoise-strength",
        type=float,
        help="gaussian sigma, median size or NLM h/sigma (defaults 1, 3, 0.8)",
    )
    p.add_argument("--min-size", type=int, default=8, help="smallest pore in voxels (default 8)")
    p.add_argument("--closing", type=int, default=0, help="closing radius of the particle mask")
    p.add_argument("--connectivity", type=int, choices=(1, 2, 3), default=1)
    p.add_argument("--watershed", action="store_true", help="split touching pores")
    p.add_argument(
        "--voxel-size", type=_voxel_size, help="voxel size, one number or Z,Y,X (physical units)"
    )
    p.add_argument("--chunk", type=int, help="slices per slab (memory)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)
    return p


def read_volume(path: Path):
    """A 3-D volume from a TIFF or ``.npy`` file (memory-mapped when the file allows), or from the
    other outputs of ``napari-ganrec reconstruct`` (HDF5, ``.npz``, MRC; read whole).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        An empty or unreadable file, an unknown type, or not a 3-D volume.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"input {path} is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            vol = np.load(path, mmap_mode="r")
        except ValueError as exc:
            raise ValueError(f"input {path} is not a readable .npy volume: {exc}") from None
    elif suffix in (".tif", ".tiff"):
        import tifffile

        try:
            vol = tifffile.memmap(path, mode="r")
        except ValueError:  # compressed or tiled: read it
            try:
                vol = tifffile.imread(path)
            except Exception as exc:  # noqa: BLE001 - any tifffile failure is a bad input file
                raise ValueError(f"input {path} is not a readable TIFF: {exc}") from None
    elif suffix in (".h5", ".hdf5", ".hdf", ".nxs", ".npz", ".mrc", ".rec"):
        from ..io import read_volume as read_any  # what `napari-ganrec reconstruct` writes (read whole)

        vol = read_any(path)[0]
    else:
        raise ValueError(f"input {path}: expected a volume in .tif/.tiff, .npy, .npz, .h5/.hdf5/.nxs or .mrc")
    vol = np.squeeze(vol) if vol.ndim > 3 else vol
    if vol.ndim != 3:
        raise ValueError(f"input {path}: expected a 3-D volume (z, y, x), got shape {vol.shape}")
    return vol


def check_outputs(args: argparse.Namespace) -> None:
    """Check every output before the long work, not after it: label and mask files are TIFF,
    all differ from each other and from the input, none exists unless ``--overwrite``; a missing
    folder is created (as ``napari-ganrec reconstruct`` does).

    Raises
    ------
    ValueError, FileExistsError
        Naming the file and what to do.
    """
    outputs = [p for p in (args.output, args.csv, args.mask) if p is not None]
    if len({p.resolve() for p in outputs}) != len(outputs):
        raise ValueError("output, --csv and --mask must be different files")
    for flag, p in (("-o", args.output), ("--mask", args.mask)):
        if p is not None and p.suffix.lower() not in (".tif", ".tiff"):
            raise ValueError(f"{flag} {p}: labels and masks are written as TIFF; give a .tif or .tiff name")
    for p in outputs:
        if Path(args.input).exists() and p.resolve() == Path(args.input).resolve():
            raise ValueError(f"{p} is the input volume; write the results to another file (even with --overwrite)")
        if p.is_dir():
            raise IsADirectoryError(f"{p} is a folder; give a file name")
        if p.exists() and not args.overwrite:
            raise FileExistsError(f"{p} exists; pass --overwrite to replace it")
    for p in outputs:
        if not p.parent.exists():
            p.parent.mkdir(parents=True)
            print(f"created folder {p.parent}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run the ``segment`` sub-command; returns the exit status."""
    from .. import segment as sg

    check_outputs(args)
    volume = read_volume(args.input)

    def progress(rec) -> None:
        if not args.quiet:
            print(f"\r{rec.stage:>10s} {100 * rec.fraction:5.1f} %", end="", file=sys.stderr)

    result = sg.segment(
        volume,
        denoise=None if args.denoise == "none" else args.denoise,
        denoise_strength=args.denoise_strength,
        particle_threshold=args.particle_threshold,
        pore_threshold=args.threshold,
        closing=args.closing,
        min_size=args.min_size,
        connectivity=args.connectivity,
        watershed=args.watershed,
        voxel_size=args.voxel_size,
        chunk=args.chunk,
        progress=progress,
    )
    if not args.quiet:
        print(file=sys.stderr)
    sg.save_labels_tiff(
        result.labels, args.output, overwrite=args.overwrite, voxel_size=args.voxel_size
    )
    if args.csv is not None:
        sg.save_table_csv(result.table, args.csv, overwrite=args.overwrite)
    if args.mask is not None:
        sg.save_labels_tiff(
            result.particle_mask, args.mask, overwrite=args.overwrite, voxel_size=args.voxel_size
        )
    s = result.summary()
    print(
        f"{args.input.name}: {s['pore_count']} pores, porosity {100 * s['porosity']:.3f} % "
        f"(open {100 * s['open_porosity']:.3f} %, closed {100 * s['closed_porosity']:.3f} %), "
        f"particle {s['particle_volume_voxels']} voxels, thresholds particle "
        f"{s['particle_threshold']:.6g} pore {s['pore_threshold']:.6g}"
    )
    return 0
