"""Pore segmentation accuracy on reconstructions of a synthetic porous particle.

A 3-D porous particle (``phantoms.porous_particle``: analytic balls, pores that never touch) is
projected over 0-120 degrees with Poisson noise, reconstructed slice by slice with FBP, TV and
GANrec (``napari_ganrec.reconstruct``), and each volume is segmented with
``napari_ganrec.segment.segment`` (default settings unless given). The table compares, against the
analytic truth: porosity (pore volume / particle volume) and its error in percentage points, the
pore count and its error, how many true pores were found (a label whose centroid lies inside the
true ball), the mean absolute error of their equivalent diameters, and the time per step.

Defaults take a few minutes on 2 CPU cores (64^3 volume; GANrec runs by default only on a GPU, add
``--methods fbp,tv,ganrec`` to force it on the CPU, which is slow). Larger: ``--n 128``.

Usage::

    python benchmarks/segmentation.py [--n 64] [--angles 80] [--range 120] [--photons 1e4]
        [--methods fbp,tv,rwtv,ganrec:3000] [--ganrec-iterations 1000] [--tv-iterations 200]
        [--denoise none|gaussian|median|nlm] [--device auto] [--seed 0] [--cache DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import napari_ganrec as ng  # noqa: E402
from napari_ganrec import phantoms  # noqa: E402
from napari_ganrec import segment as sg  # noqa: E402


def simulate(n: int, nz: int, n_angles: int, arange: float, photons: float, seed: int):
    """Phantom, ground truth volume, angles and noisy sinogram stack ``(nz, A, n)``."""
    ph = phantoms.porous_particle(n, nz=nz, seed=seed)
    angles = np.linspace(0.0, arange, n_angles, endpoint=False)
    proj = phantoms.simulate_projections(ph, angles)  # (A, nz, n)
    sino = np.ascontiguousarray(np.transpose(proj, (1, 0, 2)))
    noisy = np.stack(
        [phantoms.add_poisson_noise(s, photons, seed=seed * 10_000 + k) for k, s in enumerate(sino)]
    )
    return ph, ph.rasterize(), angles, noisy


def score(result: sg.SegmentationResult, ph: phantoms.Phantom, shape) -> dict:
    """Porosity, count and diameter errors of a segmentation against the analytic phantom."""
    truth_por = sum(b.radius**3 for b in ph.pores) / ph.balls[0].radius ** 3
    t = result.table
    cent = np.stack([t[f"centroid_{a}"] - s / 2 for a, s in zip("zyx", shape)], axis=1)
    found, derr = 0, []
    for b in ph.pores:
        if cent.size == 0:
            break
        d = np.sqrt(((cent - np.asarray(b.center)) ** 2).sum(axis=1))
        k = int(np.argmin(d))
        if d[k] <= b.radius:
            found += 1
            derr.append(abs(t["equivalent_diameter_voxels"][k] - 2 * b.radius))
    return {
        "porosity_true": 100 * truth_por,
        "porosity": 100 * result.porosity,
        "porosity_err": 100 * (result.porosity - truth_por),
        "count_true": len(ph.pores),
        "count": result.pore_count,
        "count_err": result.pore_count - len(ph.pores),
        "found": found,
        "diam_mae": float(np.mean(derr)) if derr else math.nan,
    }


def parse_method(token: str, args) -> tuple[str, str, dict]:
    """A method token (``fbp``, ``tv``, ``sirt``, or ``rwtv``/``ganrec``/a chain ``[:ITERATIONS]``)
    -> its run, named for what runs."""
    from napari_ganrec.methods import LABELS, METHODS

    parts = token.strip().split(":")
    method = parts[0].lower()
    if method not in METHODS:
        raise SystemExit(f"unknown method {token!r}; methods are {METHODS}")
    kw: dict = {"iterations": 1}
    if method == "tv":
        kw["iterations"] = args.tv_iterations
    elif method == "sirt":
        kw["iterations"] = args.sirt_iterations
    elif method != "fbp":
        kw["iterations"] = int(parts[1]) if len(parts) > 1 else args.ganrec_iterations
    name = LABELS[method] if method == "fbp" else f"{LABELS[method]} ({kw['iterations']} it. per stage)"
    return method, name, kw


def reconstruct(method: str, kw: dict, noisy, angles, args) -> np.ndarray:
    """``napari_ganrec.reconstruct`` of the noisy sinogram stack -> volume (nz, n, n)."""
    rec = ng.reconstruct(noisy, angles, method=method, device=args.device, seed=args.seed, **kw)
    return np.asarray(rec, dtype=np.float32)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="volume size n^3 (default 64)")
    ap.add_argument("--nz", type=int, help="slices (default n)")
    ap.add_argument("--angles", type=int, default=80, help="projections (default 80)")
    ap.add_argument("--range", type=float, default=120.0, help="angular range, degrees")
    ap.add_argument("--photons", type=float, default=1e4, help="incident photons per pixel")
    ap.add_argument(
        "--methods",
        help="comma list of fbp, tv, sirt, rwtv[:ITERATIONS], ganrec[:ITERATIONS], rwtv+ganrec (default fbp,tv and, "
        "with CUDA, ganrec)",
    )
    ap.add_argument("--tv-iterations", type=int, default=200)
    ap.add_argument("--sirt-iterations", type=int, default=200)
    ap.add_argument("--ganrec-iterations", type=int, default=1000,
                    help="iterations per stage of rwtv, ganrec and chains")
    ap.add_argument("--denoise", default="none", choices=("none", *sg.DENOISE_METHODS))
    ap.add_argument("--min-size", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--cache",
        type=Path,
        help="folder to keep reconstructions in; a file already there is reused (its time is n/a)",
    )
    args = ap.parse_args(argv)
    nz = args.nz or args.n
    methods = (
        args.methods.split(",")
        if args.methods
        else (["fbp", "tv", "ganrec"] if _cuda() else ["fbp", "tv"])
    )
    seg_kw = dict(denoise=None if args.denoise == "none" else args.denoise, min_size=args.min_size)

    t0 = time.perf_counter()
    ph, gt, angles, noisy = simulate(args.n, nz, args.angles, args.range, args.photons, args.seed)
    t_sim = time.perf_counter() - t0
    print(
        f"# Pore segmentation: {args.n}x{args.n}x{nz} porous particle, {len(ph.pores)} pores, "
        f"{args.angles} projections over 0-{args.range:g} deg, {args.photons:g} photons/pixel "
        f"(simulated in {t_sim:.0f} s); segmentation: denoise={args.denoise}, "
        f"min_size={args.min_size}, otsu thresholds\n"
    )
    rows = []
    volumes = {"ground truth": (gt, 0.0)}
    for token in methods:
        m, name, kw = parse_method(token, args)
        tag = "_".join(f"{k}{v}" for k, v in sorted(kw.items()))
        key = (
            f"seg_{m}_{tag}_{args.n}_{nz}_{args.angles}_{args.range:g}_{args.photons:g}_{args.seed}"
        )
        cached = args.cache / f"{key}.npy" if args.cache else None
        t0 = time.perf_counter()
        if cached is not None and cached.exists():
            rec, t_rec = np.load(cached), math.nan
        else:
            rec = reconstruct(m, kw, noisy, angles, args)
            t_rec = time.perf_counter() - t0
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.save(cached, rec)
        volumes[name] = (rec, t_rec)
    for name, (vol, t_rec) in volumes.items():
        t0 = time.perf_counter()
        res = sg.segment(vol, **seg_kw)
        t_seg = time.perf_counter() - t0
        rows.append((name, score(res, ph, vol.shape), t_rec, t_seg))

    print(
        "| volume | porosity (true) % | porosity % | error (pp) | pores (true) | pores | "
        "count error | true pores found | diameter MAE (vox) | reconstruction s | segmentation s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s, t_rec, t_seg in rows:
        print(
            f"| {name} | {s['porosity_true']:.2f} | {s['porosity']:.2f} | "
            f"{s['porosity_err']:+.2f} | {s['count_true']} | {s['count']} | "
            f"{s['count_err']:+d} | {s['found']}/{s['count_true']} | {s['diam_mae']:.2f} | "
            f"{'cached' if math.isnan(t_rec) else f'{t_rec:.1f}'} | {t_seg:.2f} |"
        )
    import torch

    dev = torch.cuda.get_device_name(0) if _cuda() and args.device != "cpu" else "CPU"
    print(f"\nDevice: {dev}; torch threads {torch.get_num_threads()}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
