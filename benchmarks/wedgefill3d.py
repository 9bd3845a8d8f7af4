"""Issue 15, the 3-D variant: reweighted TV per slice, then 3-D wedge filling, on simulated volumes.

Volumes: porous particle and foam with ``nz = n`` (balls in 3-D), slice sinograms simulated on a
``--factor`` finer grid (each row the mean of ``factor`` fine slices, as the ground truth's partial
volume). Reweighted TV reconstructs every slice in one batch through the volume driver
(:func:`napari_ganrec.volume.reconstruct_volume`), the best of ``--rwtv-grid`` by mean slice SSIM
(an oracle choice, as in benchmarks/quality.py); 3-D wedge filling
(:func:`napari_ganrec.volume.wedgefill_volume`) starts from that volume and re-reconstructs its
training planes with the same setting. Optionally the 2-D per-slice chain ``rwtv+wedgefill`` on
``--compare-2d`` slices.

Metric: the README's SSIM (``napari_ganrec.evaluation``) and PSNR on each xy slice, averaged over
the central slices (those whose particle cross-section is at least half the largest).

    python benchmarks/wedgefill3d.py                               # 64^3, porous and foam, pm35 0-90 0-120
    python benchmarks/wedgefill3d.py --sizes 96 --cases pm35 --compare-2d 3
    python benchmarks/wedgefill3d.py --wf-options directions=4 iterations=200
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = {"pm35": (-35.0, 35.0, 51), "0-90": (0.0, 90.0, 90), "0-120": (0.0, 120.0, 120), "0-180": (0.0, 180.0, 180)}
LABELS = {"pm35": "±35 (51)", "0-90": "0-90", "0-120": "0-120", "0-180": "0-180"}


def make_volume(phantom: str, n: int, case: str, factor: int = 3, seed: int = 0):
    """Ground truth ``(n, n, n)``, sinograms ``(n, n_angles, n)`` and angles of one case."""
    from napari_ganrec import phantoms
    from napari_ganrec.geometry import angles_from_range

    if phantom == "porous":
        ph = phantoms.porous_particle(n, nz=n, seed=seed)
    elif phantom == "foam":
        ph = phantoms.foam(n, nz=n, seed=seed + 1)
    else:
        raise ValueError(f"unknown phantom {phantom!r}")
    start, stop, count = CASES[case]
    angles = angles_from_range(start, stop, count)
    sinos = np.ascontiguousarray(phantoms.simulate_projections(ph, angles, factor=factor).transpose(1, 0, 2))
    return ph.rasterize(supersample=3), sinos, angles


def central_slices(truth: np.ndarray) -> np.ndarray:
    """Indices of the slices whose non-zero area is at least half the largest one's."""
    area = (truth > 0).sum(axis=(1, 2))
    return np.nonzero(area >= 0.5 * area.max())[0]


def slice_scores(truth: np.ndarray, vol: np.ndarray, idx) -> tuple[float, float]:
    from napari_ganrec.evaluation import psnr, ssim

    return (float(np.mean([ssim(truth[k], vol[k]) for k in idx])),
            float(np.mean([psnr(truth[k], vol[k]) for k in idx])))


def _option(text: str):
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key, float(value) if "." in value or "e" in value else int(value)


def _pair(text: str) -> dict:
    w, sep, e = text.partition(":")
    try:
        return {"tv_weight": float(w), "eps": float(e)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TV_WEIGHT:EPS, got {text!r}") from None


def run(args) -> list[dict]:
    import napari_ganrec as ng
    from napari_ganrec.volume import reconstruct_volume
    from napari_ganrec.volume.wedgefill3d import WedgeFill3DConfig, wedgefill_volume

    rows = []
    for n in args.sizes:
        for phantom in args.phantoms:
            for case in args.cases:
                t = time.perf_counter()
                truth, sinos, angles = make_volume(phantom, n, case, args.factor)
                sim = time.perf_counter() - t
                idx = central_slices(truth)
                best = None
                for setting in args.rwtv_grid:
                    t = time.perf_counter()
                    vol = reconstruct_volume(sinos, angles, method="rwtv", iterations=args.iterations,
                                             batch=sinos.shape[0], warm_start=False, device="cpu",
                                             progress_every=None, rwtv=setting)
                    secs = time.perf_counter() - t
                    s, p = slice_scores(truth, vol, idx)
                    if best is None or s > best["ssim"]:
                        best = {"ssim": s, "psnr": p, "setting": setting, "vol": vol, "seconds": secs}
                cfg = WedgeFill3DConfig(**{"pool_iterations": args.iterations, **best["setting"],
                                           **dict(args.wf_options)})
                t = time.perf_counter()
                out = wedgefill_volume(best["vol"], sinos, angles, cfg, seed=args.seed)
                wf_secs = time.perf_counter() - t
                s3, p3 = slice_scores(truth, out, idx)
                row = {"size": n, "phantom": phantom, "case": case, "setting": best["setting"],
                       "slices": len(idx), "rwtv_ssim": best["ssim"], "rwtv_psnr": best["psnr"],
                       "rwtv_seconds": best["seconds"], "wf3d_ssim": s3, "wf3d_psnr": p3,
                       "wf3d_seconds": wf_secs, "simulate_seconds": sim, "load": os.getloadavg()[0]}
                if args.compare_2d:
                    few = idx[np.linspace(0, len(idx) - 1, args.compare_2d).round().astype(int)]
                    t = time.perf_counter()
                    two = np.stack([ng.reconstruct(sinos[k], angles, method="rwtv+wedgefill", device="cpu",
                                                   seed=args.seed,
                                                   iterations={"rwtv": args.iterations,
                                                               "wedgefill": args.wedgefill_iterations},
                                                   rwtv=best["setting"], wedgefill=best["setting"])
                                    for k in few])
                    row["wf2d_seconds_per_slice"] = (time.perf_counter() - t) / len(few)
                    sub = np.arange(len(few))
                    row["few"] = few.tolist()
                    row["few_rwtv_ssim"], _ = slice_scores(truth[few], best["vol"][few], sub)
                    row["few_wf3d_ssim"], _ = slice_scores(truth[few], out[few], sub)
                    row["few_wf2d_ssim"], row["few_wf2d_psnr"] = slice_scores(truth[few], two, sub)
                rows.append(row)
                print(f"  {n:4d} {phantom:7s} {case:6s} rwtv {row['rwtv_ssim']:.3f} ({row['rwtv_psnr']:.1f} dB, "
                      f"{row['rwtv_seconds']:.0f} s)  3-D wedge filling {s3:.3f} ({p3:.1f} dB, {wf_secs:.0f} s)  "
                      f"gain {s3 - row['rwtv_ssim']:+.3f}  load {row['load']:.2f}", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| size | phantom | case | reweighted TV setting | slices | reweighted TV SSIM (PSNR) | "
             "3-D wedge filling SSIM (PSNR) | gain | time rwtv / 3-D s | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        setting = f"{r['setting']['tv_weight']:g}/{r['setting']['eps']:g}"
        lines.append(f"| {r['size']} | {r['phantom']} | {LABELS[r['case']]} | {setting} | {r['slices']} | "
                     f"{r['rwtv_ssim']:.3f} ({r['rwtv_psnr']:.1f}) | {r['wf3d_ssim']:.3f} ({r['wf3d_psnr']:.1f}) | "
                     f"{r['wf3d_ssim'] - r['rwtv_ssim']:+.3f} | {r['rwtv_seconds']:.0f} / {r['wf3d_seconds']:.0f} | "
                     f"{r['load']:.2f} |")
    few = [r for r in rows if "few" in r]
    if few:
        lines += ["", "| size | phantom | case | slices | reweighted TV | 3-D wedge filling | 2-D rwtv+wedgefill | "
                  "2-D s per slice |", "|---|---|---|---|---|---|---|---|"]
        for r in few:
            lines.append(f"| {r['size']} | {r['phantom']} | {LABELS[r['case']]} | {r['few']} | "
                         f"{r['few_rwtv_ssim']:.3f} | {r['few_wf3d_ssim']:.3f} | {r['few_wf2d_ssim']:.3f} | "
                         f"{r['wf2d_seconds_per_slice']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[64])
    p.add_argument("--phantoms", nargs="+", default=["porous", "foam"], choices=["porous", "foam"])
    p.add_argument("--cases", nargs="+", default=["pm35", "0-90", "0-120"], choices=list(CASES))
    p.add_argument("--iterations", type=int, default=1000,
                   help="reweighted-TV iterations of the first stage (and of each training plane)")
    p.add_argument("--rwtv-grid", nargs="+", type=_pair, default=[_pair("0.1:0.1"), _pair("0.1:0.3")],
                   metavar="TV_WEIGHT:EPS", help="reweighted-TV settings; the best by mean slice SSIM is kept")
    p.add_argument("--wf-options", nargs="*", default=[], type=_option,
                   help="WedgeFill3DConfig fields, e.g. directions=4 iterations=200")
    p.add_argument("--compare-2d", type=int, default=0, metavar="K",
                   help="also run the 2-D chain rwtv+wedgefill on K central slices (0: not)")
    p.add_argument("--wedgefill-iterations", type=int, default=300, help="iterations of the 2-D wedge filling")
    p.add_argument("--factor", type=int, default=3, help="finer simulation grid (odd)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    grid = ", ".join(f"{g['tv_weight']:g}/{g['eps']:g}" for g in args.rwtv_grid)
    rows = run(args)
    print(f"3-D wedge filling benchmark: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); reweighted TV {args.iterations} iterations, best of "
          f"[{grid}]; 3-D options {dict(args.wf_options)}; "
          f"ran {time.perf_counter() - t0:.0f} s")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
