"""``napari-ganrec reconstruct``: a file in, a reconstructed volume (TIFF) out."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ..methods import DEFAULT_METHOD, LABELS, METHODS

__all__ = ["register", "parse_angles", "parse_slices", "run_reconstruct", "check_output"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reconstruct",
        help="reconstruct a sinogram or projection stack file",
        description="Reconstruct INPUT (a 2-D sinogram or a 3-D projection stack: angles x rows x detector) "
        "and write the volume to OUT. Flats and darks in the file are applied.",
    )
    p.add_argument("input", help="input: DXchange/NXtomo HDF5, MRC/REC, TIFF (file or folder), .npy/.npz")
    p.add_argument("-o", "--output", required=True,
                   help="output: .tif, .h5, .npy or .zarr (one slice: also .npz or .mrc)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--angles", help="START:STOP[:N] in degrees (N defaults to the projection count)")
    g.add_argument("--angles-file", help="text file with one angle (degrees) per projection")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=list(METHODS),
                   help=f"what runs (default {DEFAULT_METHOD}): " + "; ".join(
                       f"{m}: {LABELS[m]}" for m in METHODS))
    p.add_argument("--iterations", type=_iterations, default=1000,
                   help="iterations of every iterative stage (default 1000), or per stage: rwtv:300+ganrec:200")
    p.add_argument("--slices", help="row range A:B of a projection stack, negative from the end as in Python "
                                    "(default: all)")
    p.add_argument("--center", default="auto", help="centre of rotation in pixels, or 'auto' (default)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda:N")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seed of the network initialisation (0 to 2**63-1), or 'random' (recorded in the metadata)")
    p.add_argument("--tv-weight", type=_tv_weight, default=None,
                   help="dimensionless TV weight of the tv and rwtv stages (default 0.03 and, for rwtv, "
                   "'auto': chosen from the data's noise, 0.1 on noise-free data; recorded in the metadata)")
    p.add_argument("--warm-iterations", type=_iterations, default=100,
                   help="iterations of every stage of each later slice, warm-started from the previous "
                   "slice's states (default 100), or per stage: rwtv:100+ganrec:50")
    p.add_argument("--slab", type=int, default=8, help="slices per task (memory bound per worker; default 8)")
    p.add_argument("--batch", type=int, default=1,
                   help="adjacent slices reconstructed together on the device (default 1; "
                   "on a GPU 8-32 use it far better)")
    p.add_argument("--batch-mode", default="shared", choices=["shared", "independent"],
                   help="GANrec batches: one generator over the batch, or one per slice")
    p.add_argument("--tol", type=float, default=None,
                   help="end a stage of a slice early once its data loss stalls (e.g. 1e-3)")
    acc = p.add_argument_group("GPU execution (the GANrec stage; 'auto': on for CUDA, off on the CPU)")
    acc.add_argument("--amp", default="auto", choices=["auto", "off", "bf16"],
                     help="mixed precision of the generator")
    acc.add_argument("--compile", default="off", choices=["auto", "off", "on"],
                     help="torch.compile the generator and the prior-stage updates (default off: "
                     "it costs tens of seconds per shape first; auto: on CUDA with Triton)")
    acc.add_argument("--channels-last", default="auto", choices=["auto", "off", "on"],
                     help="channels-last convolutions")
    acc.add_argument("--check-every", type=int, default=None,
                     help="iterations between host reads of the losses (default: 1 CPU, 25 CUDA)")
    g2 = p.add_mutually_exclusive_group()
    g2.add_argument("--workers", type=int, default=None,
                    help="reconstruct on a local Dask cluster of N workers (one per GPU when there are several)")
    g2.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:8786)")
    p.add_argument(
        "--data",
        choices=["auto", "raw", "transmission", "line-integrals"],
        default="auto",
        help="what INPUT holds: raw counts (flats/darks applied, then -log), transmission (I/I0, -log), or "
        "line integrals (used as they are). auto: what the file says (our metadata, NXtomo image_key, an "
        "MRC tilt series: as they are), raw when it has flats or darks; otherwise a guess from the values, "
        "with a warning: negative values or dark detector edges (air at 0) are line integrals, bright edges "
        "transmission (values <= 1.05) or raw counts (then flats are needed)",
    )
    p.add_argument("--flats", help="flat fields (open beam) for an INPUT that carries none: a TIFF, NumPy or MRC file")
    p.add_argument("--darks", help="dark fields for an INPUT that carries none: a TIFF, NumPy or MRC file")
    p.add_argument("--tilt-axis", default=None, choices=["auto", "y", "x"],
                   help="MRC tilt series: the image axis the tilt axis runs along (default auto: detected, "
                   "y when unclear)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--wedgefill-3d", type=int, default=None, metavar="ITERATIONS",
                   help="experimental (issue 15): after --method rwtv, 3-D wedge filling of the whole volume "
                   "(napari_ganrec.volume.wedgefill_volume) with this many training iterations (2000 is its "
                   "default); needs at least as many slices as detector pixels, in this process (no "
                   "--workers/--scheduler, no .zarr output), and a missing wedge in the angles")
    p.set_defaults(func=run_reconstruct)


def _seed(text: str) -> int:
    """``--seed``: an integer from 0 to 2**63-1, or ``random`` (drawn here, then recorded)."""
    import secrets

    from ..geometry import MAX_SEED, validate_seed

    if text.strip().lower() == "random":
        return secrets.randbelow(MAX_SEED + 1)
    try:
        return validate_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**63-1, or 'random'; got {text!r}") from None


def parse_angles(text: str, n_projections: int) -> np.ndarray:
    """``"START:STOP[:N]"`` -> angles in degrees; ``N`` must equal ``n_projections``.

    A range within +-2*pi (``0:3.1416``) is refused: it is radians given as degrees.
    """
    from ..geometry import angles_from_range

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
    if start != stop and max(abs(start), abs(stop)) <= 2 * np.pi + 1e-6:
        raise ValueError(
            f"--angles {text!r} spans only {abs(stop - start):.4g} degrees and stays within 2*pi: this looks like "
            f"radians; --angles takes degrees (e.g. --angles {np.rad2deg(start):.4g}:{np.rad2deg(stop):.4g})"
        )
    return angles_from_range(start, stop, count)


def parse_slices(text: str | None, n_rows: int) -> slice:
    """``"A:B"`` -> a slice of rows, checked against ``n_rows``; negative A or B count from the end,
    as in Python (``"-2:"``: the last two rows)."""
    if not text:
        return slice(0, n_rows)
    try:
        a, b = (int(v) if v else None for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--slices must be A:B (integers), got {text!r}") from None
    a = 0 if a is None else a
    b = n_rows if b is None else b
    a, b = (v + n_rows if v < 0 else v for v in (a, b))  # counted from the end, as in Python
    if 0 <= a and b <= n_rows and b <= a:
        raise ValueError(f"--slices {text!r} selects no row: give A < B (the input has {n_rows} rows)")
    if not (0 <= a < b <= n_rows):
        raise ValueError(f"--slices {text!r} is outside the {n_rows} rows of the input (0:{n_rows})")
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


def _read_options(args, angles) -> dict:
    """The ``read_tomo`` keywords of the command line (picklable: paths and arrays), the same for
    the first read and for the volume source's reads."""
    opts = {"angles": angles}
    for name in ("flats", "darks", "tilt_axis"):
        value = getattr(args, name, None)
        if value is not None:
            opts[name] = value
    return opts


def acceleration_of(args: argparse.Namespace):
    """The :class:`~napari_ganrec.acceleration.Acceleration` the command line asks for."""
    from ..acceleration import Acceleration

    return Acceleration(amp=args.amp, compile=args.compile, channels_last=args.channels_last,
                        check_every=args.check_every)


def _tv_weight(text: str):
    """``--tv-weight``: a number, or ``auto`` (reweighted TV chooses it from the data's noise)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 or 'auto', got {text!r}") from None


def _iterations(text: str):
    """``"1000"`` -> 1000; ``"rwtv:300+ganrec:200"`` -> that spec (checked against the method later)."""
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    if ":" not in text:
        raise argparse.ArgumentTypeError(f"expected a number or STAGE:N+STAGE:N, got {text!r}")
    return text


def _plan(args: argparse.Namespace):
    """The method as it will run (stages, iterations, configs): a ValueError for a bad spec."""
    from ..methods import make_plan

    return make_plan(args.method, args.iterations, _stage_options(args))


def _stage_options(args: argparse.Namespace) -> dict:
    from ..geometry import validate_weight

    out = {} if args.tv_weight is None else {"tv_weight": validate_weight(args.tv_weight, name="--tv-weight")}
    out.update(getattr(args, "resolved_configs", {}))  # automatic settings chosen once (run_reconstruct)
    return out


def _resolve_plan(args: argparse.Namespace, plan, sinogram: np.ndarray):
    """``plan`` with its automatic options (reweighted TV's ``"auto"`` strength) chosen from
    ``sinogram`` (the middle slice), once for every slice; the chosen configs go into
    ``args.resolved_configs`` so that every later plan of this run uses them."""
    resolved = plan.resolved(sinogram)
    args.resolved_configs = {new.name: new.config for new, old in zip(resolved.stages, plan.stages)
                             if new.config is not old.config}
    return resolved


def _engine_options(args: argparse.Namespace) -> dict:
    """Stage options and the execution options (GANrec's generator; reweighted TV's compiled updates)."""
    return dict(_stage_options(args), acceleration=acceleration_of(args))


def run_reconstruct(args: argparse.Namespace) -> int:
    """Run the ``reconstruct`` sub-command; returns the exit status.

    Without ``--workers``/``--scheduler`` everything runs in this process through
    :func:`napari_ganrec.engine.run` (one slice with a progress bar per iteration; several slab by
    slab with warm start, input read lazily) and the result is written once with
    :func:`napari_ganrec.io.write_volume`: no Dask, no intermediate store. ``--workers N`` or
    ``--scheduler ADDRESS`` go through :func:`napari_ganrec.distributed.run_distributed` (slab
    tasks on Dask, a resumable chunked store beside the output); so does a ``.zarr`` output of
    several slices (in this process, the store being the output).
    """
    from ..geometry import validate_angles
    from ..io import line_integrals, read_tomo
    from ..threads import configure_threads

    configure_threads()  # the CPU cores that are free now (napari_ganrec.threads)

    if args.slab < 1:  # checked for local runs too, which run slab by slab in this process
        raise ValueError(f"--slab: slab_size must be a positive integer, got {args.slab}")
    plan = _plan(args)
    warm_plan = plan.with_iterations(args.warm_iterations)
    acceleration = acceleration_of(args)  # bad execution flags fail here, before any reading
    check_wedgefill_3d(args, plan)

    with read_tomo(args.input, **_read_options(args, _angles_argument(args))) as data:
        angles = validate_angles(data.angles, tomographic=True, warn_radians=False)  # the reader warned
        rows = parse_slices(args.slices, data.n_rows)
        check_output(args.output, rows.stop - rows.start, args.overwrite)
        kind = _data_kind(args.data, data, rows)
        if kind.assumed:
            print(f"napari-ganrec reconstruct: warning: {kind.reason}; if that is wrong, say what {args.input} "
                  "holds with --data raw|transmission|line-integrals", file=sys.stderr)
        middle = line_integrals(data, (rows.start + rows.stop) // 2, kind=kind)[0]
        if args.wedgefill_3d is not None and rows.stop - rows.start < middle.shape[-1]:
            raise ValueError(f"--wedgefill-3d needs at least as many slices as detector pixels "
                             f"({middle.shape[-1]}), got {rows.stop - rows.start} (--slices)")
        source_meta = {k: v for k, v in data.metadata.items() if isinstance(v, (str, int, float, bool))}
        center = _resolve_center(args.center, middle, angles)
        plan = _resolve_plan(args, plan, middle)
        warm_plan = plan.with_iterations(args.warm_iterations)
        iterations = args.iterations
        n_rows = rows.stop - rows.start
        meta = {
            **plan.describe(with_config=False),
            "method_label": plan.label,
            "warm_stages": warm_plan.describe(with_config=False)["stages"] if n_rows > 1 else None,
            "configs": {s.name: s.config.to_dict() for s in plan.stages},
            "angles": [float(a) for a in angles],
            "center": center,
            "seed": args.seed,
            "device": args.device,
            "acceleration": acceleration.to_dict(),
            "slices": [rows.start, rows.stop],
            "input": str(args.input),
            "data": {"kind": kind.kind, "reason": kind.reason, "assumed": kind.assumed},
            "source": source_meta,
        }
        t0 = time.perf_counter()
        zarr_out = str(args.output).lower().endswith(".zarr")  # a chunked store is the output itself
        local = args.workers is None and args.scheduler is None and not (zarr_out and n_rows > 1)
        if local and n_rows == 1:
            image = _one_slice(args, line_integrals(data, rows, kind=kind), angles, center, iterations)
        # 3-D wedge filling needs every sinogram at once: read them once, for both stages
        sinos = line_integrals(data, rows, kind=kind) if args.wedgefill_3d is not None else None
    if local:
        from ..io import write_volume

        if n_rows > 1:
            image = _local_volume(args, angles, rows, kind, center, iterations, sinos)
        if sinos is not None:
            image = _wedgefill_3d(args, plan, image, sinos, angles, center, meta)
        meta["seconds"] = round(time.perf_counter() - t0, 3)
        out = write_volume(args.output, image, meta, overwrite=args.overwrite)
        print(f"wrote {out} {image.shape} (centre {center:.2f}) in {meta['seconds']:.1f} s")
        return 0
    out = _volume(args, angles, rows, kind, center, iterations, meta)
    print(f"wrote {out} ({rows.stop - rows.start} slices, centre {center:.2f}) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def check_wedgefill_3d(args: argparse.Namespace, plan) -> None:
    """Refuse ``--wedgefill-3d`` before any reading where it cannot run (see its help)."""
    if args.wedgefill_3d is None:
        return
    if args.wedgefill_3d < 1:
        raise ValueError(f"--wedgefill-3d takes a positive number of iterations, got {args.wedgefill_3d}")
    if [s.name for s in plan.stages] != ["rwtv"]:
        raise ValueError("--wedgefill-3d follows reweighted TV: use it with --method rwtv "
                         f"(its training planes are re-reconstructed as reweighted TV does), not {args.method!r}")
    if args.workers is not None or args.scheduler is not None or str(args.output).lower().endswith(".zarr"):
        raise ValueError("--wedgefill-3d needs the whole volume in this process: drop --workers/--scheduler "
                         "and write a TIFF, HDF5 or NumPy file")


def _wedgefill_3d(args, plan, first: np.ndarray, sinos: np.ndarray, angles, center: float,
                  meta: dict) -> np.ndarray:
    """``first`` (reweighted TV's volume of ``sinos``) through 3-D wedge filling; ``meta`` records
    the stage."""
    from tqdm import tqdm

    from ..volume.wedgefill3d import LABEL, WedgeFill3DConfig, wedgefill_volume

    rwtv = plan.stages[0].config
    config = WedgeFill3DConfig(iterations=args.wedgefill_3d, tv_weight=rwtv.tv_weight, eps=rwtv.eps)
    with tqdm(total=config.iterations * config.rounds, desc=LABEL, unit="it") as bar:
        image = wedgefill_volume(first, sinos, angles, config, seed=args.seed, device=args.device,
                                 center=center, progress=lambda _: bar.update(1))
    meta["stages"] = [*meta["stages"], {"name": "wedgefill3d", "iterations": config.iterations}]
    meta["method"] = f"{meta['method']}+wedgefill3d"
    meta["method_label"] = f"{meta['method_label']} + {LABEL}"
    meta["configs"] = {**meta["configs"], "wedgefill3d": config.to_dict()}
    return image


def _one_slice(args, sinos: np.ndarray, angles, center: float, iterations: int) -> np.ndarray:
    from tqdm import tqdm

    from ..api import iter_reconstruct

    image = None
    total = _plan(args).iterations
    with tqdm(total=total, desc=f"{args.method} 1 slice", unit="it") as bar:
        for step in iter_reconstruct(sinos[0], angles, method=args.method, iterations=iterations,
                                     center=center, device=args.device, seed=args.seed,
                                     preview_every=total + 1, **_engine_options(args)):
            bar.update(1)
            # reading a loss waits for the device: every 25 iterations, not every one
            if step.iteration % 25 == 0 or step.iteration == total:
                bar.set_postfix(stage=step.stage, **{k: f"{v:.4g}" for k, v in list(step.losses.items())[:2]})
            if step.image is not None:
                image = step.image
    return image


def _local_volume(args, angles, rows: slice, kind, center: float, iterations,
                  sinos: np.ndarray | None = None) -> np.ndarray:
    """Several slices in this process: the engine slab by slab, warm start from slab to slab; the
    input is read lazily, unless its sinograms ``sinos`` (of ``rows``) are already in memory."""
    from tqdm import tqdm

    from ..volume import ArraySource, PathSource, reconstruct_volume

    if sinos is None:
        source, span = PathSource(args.input, open_kwargs=_read_options(args, angles), kind=kind), rows
    else:
        source, span = ArraySource(sinos), range(len(sinos))
    n = rows.stop - rows.start
    with tqdm(total=n, desc=f"{args.method} {n} slices", unit="slice") as bar:
        return reconstruct_volume(
            source, angles, rows=(span.start, span.stop), method=args.method, iterations=iterations,
            warm_iterations=args.warm_iterations, batch=args.batch, batch_mode=args.batch_mode,
            tol=args.tol, center=center, device=args.device, seed=args.seed,
            progress=lambda rec: bar.update(len(rec.indices)), **_engine_options(args))


def _volume(args, angles, rows: slice, kind, center: float, iterations: int, meta: dict):
    from tqdm import tqdm

    from ..distributed import run_distributed
    from ..volume import PathSource

    source = PathSource(args.input, open_kwargs=_read_options(args, angles), kind=kind)
    options = dict(_engine_options(args), batch=args.batch, batch_mode=args.batch_mode, tol=args.tol)
    n = rows.stop - rows.start
    with tqdm(total=n, desc=f"{args.method} {n} slices", unit="slice") as bar:

        def progress(done):
            bar.update(done.stop - done.start)
            bar.set_postfix(skipped="yes" if done.skipped else "no")

        return run_distributed(
            source, args.output, angles, rows=(rows.start, rows.stop), slab_size=args.slab,
            method=args.method, iterations=iterations, warm_iterations=args.warm_iterations,
            workers=args.workers if args.workers is not None else (None if args.scheduler else 0),
            scheduler=args.scheduler, progress=progress, overwrite=args.overwrite,
            center=center, device=args.device, seed=args.seed, metadata=meta, **options,
        )


def _data_kind(choice: str, data, rows: slice | None = None):
    """The :class:`~napari_ganrec.io.DataKind` of ``data`` for ``--data`` (see
    :func:`napari_ganrec.io.resolve_kind`), resolved once for the whole run so that one slice and
    many slices read alike. The guess samples the whole detector, not only ``rows``."""
    from ..io import resolve_kind

    return resolve_kind(data, choice)


def _resolve_center(text: str | None, sinogram: np.ndarray, angles: np.ndarray) -> float:
    """``None``/``"auto"`` -> automatic centre of ``sinogram`` (the middle slice); a number -> it."""
    from ..geometry import validate_center

    if text is None or str(text).lower() == "auto":
        from ..center import estimate_center

        return validate_center(float(estimate_center(sinogram, angles).center), sinogram.shape[-1], automatic=True)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--center must be 'auto' or a number of pixels, got {text!r}") from None
    return validate_center(value, sinogram.shape[-1], name="--center")


def check_output(path, n_slices: int, overwrite: bool) -> None:
    """Check ``-o`` before any work: a known type for this many slices, not an existing file (unless
    ``--overwrite``), not a folder; a missing parent folder is created (as for several slices).

    Raises
    ------
    ValueError, FileExistsError, IsADirectoryError
        Naming the path and what to do.
    """
    from pathlib import Path

    from ..distributed import OUTPUT_SUFFIXES
    from ..io import WRITE_SUFFIXES

    out = Path(path)
    suffixes = WRITE_SUFFIXES if n_slices == 1 else OUTPUT_SUFFIXES
    if out.is_dir() and out.suffix.lower() != ".zarr":
        raise IsADirectoryError(f"-o {out} is a folder; give a file name such as {out / 'rec.tif'}")
    if out.suffix.lower() not in suffixes:
        kind = "one slice" if n_slices == 1 else f"{n_slices} slices"
        raise ValueError(f"-o {out}: unknown output type {out.suffix or '(none)'!r} for {kind}; "
                         f"use one of {', '.join(suffixes)}")
    if out.exists() and not overwrite and out.suffix.lower() != ".zarr":  # a .zarr store may be resumed
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if not out.parent.exists():
        out.parent.mkdir(parents=True)
        print(f"created folder {out.parent}")
