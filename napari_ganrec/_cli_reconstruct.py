"""``napari-ganrec reconstruct``: a file in, a reconstructed volume (TIFF) out."""

from __future__ import annotations

import argparse
import time

import numpy as np

__all__ = ["register", "parse_angles", "parse_slices", "run_reconstruct"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reconstruct",
        help="reconstruct a sinogram or projection stack file",
        description="Reconstruct INPUT (a 2-D sinogram or a 3-D projection stack: angles x rows x detector) "
        "and write the volume to OUT. Flats and darks in the file are applied.",
    )
    p.add_argument("input", help="input: DXchange/NXtomo HDF5, MRC/REC, TIFF (file or folder), .npy/.npz")
    p.add_argument("-o", "--output", required=True, help="output: .tif, .h5, .npy, .npz or .mrc")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--angles", help="START:STOP[:N] in degrees (N defaults to the projection count)")
    g.add_argument("--angles-file", help="text file with one angle (degrees) per projection")
    p.add_argument("--method", default="ganrec", choices=["ganrec", "fbp", "sirt", "tv"])
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--slices", help="row range A:B of a projection stack (default: all)")
    p.add_argument("--center", default="auto", help="centre of rotation in pixels, or 'auto' (default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="default", help="GANrec preset: default, paper, fast")
    p.add_argument("--tv-weight", type=float, default=0.03, help="TV weight (method tv)")
    p.add_argument(
        "--data",
        choices=["auto", "raw", "transmission", "line-integrals"],
        default="auto",
        help="what INPUT holds: raw counts (flats/darks applied), transmission (I/I0), or line "
        "integrals (after -log). auto: raw when the file has flats or darks, "
        "transmission when all values lie in [0, 1.05], line integrals otherwise",
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


def _angles_argument(args):
    """What ``read_tomo`` takes as ``angles``: a file, a range parsed once the projection count is
    known, or None to keep the file's own (or its side-car's)."""
    if args.angles_file:
        return args.angles_file
    if args.angles:
        text = args.angles
        return lambda n_projections: parse_angles(text, n_projections)
    return None


def run_reconstruct(args: argparse.Namespace) -> int:
    """Run the ``reconstruct`` sub-command; returns the exit status."""
    from tqdm import tqdm

    from .api import iter_reconstruct
    from .io import read_tomo, write_volume

    with read_tomo(args.input, angles=_angles_argument(args)) as data:
        angles = data.angles
        rows = parse_slices(args.slices, data.n_rows)
        data.metadata["kind"] = _data_kind(args.data, data, rows)
        sinos = data.sinograms(rows=rows)
        source_meta = {k: v for k, v in data.metadata.items() if isinstance(v, (str, int, float, bool))}
    center = _resolve_center(args.center, sinos, angles)
    iterations = 1 if args.method == "fbp" else args.iterations
    t0 = time.perf_counter()
    bar = tqdm(total=iterations, desc=f"{args.method} {sinos.shape[0]} slice(s)", unit="it")
    image = None
    options = {"preset": args.preset} if args.method == "ganrec" else {}
    for step in iter_reconstruct(sinos, angles, method=args.method, iterations=iterations,
                                 center=center, device=args.device, seed=args.seed,
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
        "center": center,
        "iterations": iterations,
        "seed": args.seed,
        "device": args.device,
        "preset": args.preset if args.method == "ganrec" else None,
        "slices": [rows.start, rows.stop],
        "input": str(args.input),
        "source": source_meta,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    out = write_volume(args.output, image, meta, overwrite=args.overwrite)
    print(f"wrote {out} {image.shape} (centre {center:.2f}) in {meta['seconds']:.1f} s")
    return 0


def _data_kind(choice: str, data, rows: slice) -> str:
    """The ``TomoData.metadata["kind"]`` to use for ``--data``."""
    if choice != "auto":
        return choice.replace("-", "_")
    if data.flats is not None or data.darks is not None:
        return "raw"
    sample = np.asarray(data.projections[:, rows.start : rows.start + 1, :], dtype=np.float32)
    if sample.min() >= 0 and sample.max() <= 1.05:
        return "transmission"
    return "line_integrals"


def _resolve_center(text: str | None, sinos: np.ndarray, angles: np.ndarray) -> float:
    """``None``/``"auto"`` -> automatic centre of the middle slice; a number -> that number."""
    if text is None or str(text).lower() == "auto":
        from .center import find_center

        return float(find_center(sinos[len(sinos) // 2], angles))
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--center must be 'auto' or a number of pixels, got {text!r}") from None
