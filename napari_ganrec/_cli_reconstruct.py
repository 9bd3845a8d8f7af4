"""``napari-ganrec reconstruct``: a file in, a reconstructed volume (TIFF) out."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

__all__ = ["register", "parse_angles", "parse_slices", "run_reconstruct"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reconstruct",
        help="reconstruct a sinogram or projection stack file",
        description="Reconstruct INPUT (a 2-D sinogram or a 3-D projection stack: angles x rows x detector) "
        "and write the volume to OUT.",
    )
    p.add_argument("input", help="input file (.tif/.tiff, .npy)")
    p.add_argument("-o", "--output", required=True, help="output file (.tif)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--angles", help="START:STOP[:N] in degrees (N defaults to the projection count)")
    g.add_argument("--angles-file", help="text file with one angle (degrees) per projection")
    p.add_argument("--method", default="ganrec", choices=["ganrec", "fbp", "sirt", "tv"])
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--slices", help="row range A:B of a projection stack (default: all)")
    p.add_argument("--center", type=float, default=None, help="centre of rotation in pixels (default n/2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="default", help="GANrec preset: default, paper, fast")
    p.add_argument("--tv-weight", type=float, default=0.03, help="TV weight (method tv)")
    p.add_argument(
        "--layout",
        choices=["projections", "sinograms"],
        default="projections",
        help="how a 3-D input is ordered: projections (angles, rows, det) or sinograms (rows, angles, det)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run_reconstruct)


def parse_angles(text: str, n_projections: int) -> np.ndarray:
    """``"START:STOP[:N]"`` -> angles in degrees; ``N`` must equal ``n_projections``."""
    from .geometry import angles_from_range

    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"--angles must be START:STOP or START:STOP:N, got {text!r}")
    try:
        start, stop = float(parts[0]), float(parts[1])
        count = int(parts[2]) if len(parts) == 3 else n_projections
    except ValueError:
        raise ValueError(f"--angles must be numbers START:STOP[:N], got {text!r}") from None
    if count != n_projections:
        raise ValueError(f"--angles asks for {count} angles but the input has {n_projections} projections")
    return angles_from_range(start, stop, count)


def parse_slices(text: str | None, n_rows: int) -> slice:
    """``"A:B"`` -> a slice of rows, checked against ``n_rows``."""
    if not text:
        return slice(0, n_rows)
    try:
        a, b = (int(v) if v else None for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--slices must be A:B (integers), got {text!r}") from None
    a = 0 if a is None else a
    b = n_rows if b is None else b
    if not (0 <= a < b <= n_rows):
        raise ValueError(f"--slices {text!r} is outside the {n_rows} rows of the input")
    return slice(a, b)


def _read_array(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, mmap_mode="r")
    if suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    raise ValueError(f"{path}: unsupported input format {suffix!r} (use .tif, .tiff or .npy)")


def run_reconstruct(args: argparse.Namespace) -> int:
    """Run the ``reconstruct`` sub-command; returns the exit status."""
    from tqdm import tqdm

    from .api import iter_reconstruct
    from .writers_basic import write_tiff_atomic

    data = _read_array(Path(args.input))
    if data.ndim == 2:
        sinos = np.asarray(data, dtype=np.float32)[None]
    elif data.ndim == 3:
        sinos = np.asarray(data, dtype=np.float32)
        if args.layout == "projections":
            sinos = np.ascontiguousarray(sinos.transpose(1, 0, 2))
    else:
        raise ValueError(f"{args.input}: expected a 2-D sinogram or a 3-D stack, got shape {data.shape}")
    n_proj = sinos.shape[1]
    if args.angles_file:
        angles = np.loadtxt(args.angles_file, dtype=np.float64, ndmin=1)
    elif args.angles:
        angles = parse_angles(args.angles, n_proj)
    else:
        raise ValueError("give the angles: --angles START:STOP[:N] or --angles-file F")
    rows = parse_slices(args.slices, sinos.shape[0])
    sinos = sinos[rows]
    iterations = 1 if args.method == "fbp" else args.iterations
    t0 = time.perf_counter()
    bar = tqdm(total=iterations, desc=f"{args.method} {sinos.shape[0]} slice(s)", unit="it")
    image = None
    options = {"preset": args.preset} if args.method == "ganrec" else {}
    for step in iter_reconstruct(sinos, angles, method=args.method, iterations=iterations,
                                 center=args.center, device=args.device, seed=args.seed,
                                 preview_every=max(1, iterations), tv_weight=args.tv_weight, **options):
        bar.update(1)
        if "l1" in step.losses:
            bar.set_postfix(l1=f"{step.losses['l1']:.4f}")
        if step.image is not None:
            image = step.image
    bar.close()
    meta = {
        "method": args.method,
        "angles": [float(a) for a in angles],
        "center": args.center if args.center is not None else sinos.shape[-1] / 2,
        "iterations": iterations,
        "seed": args.seed,
        "device": args.device,
        "slices": [rows.start, rows.stop],
        "input": str(args.input),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    out = write_tiff_atomic(args.output, image, meta, overwrite=args.overwrite)
    print(f"wrote {out} {image.shape} in {meta['seconds']:.1f} s")
    return 0
