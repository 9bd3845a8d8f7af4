"""Reconstruction quality: SSIM and PSNR of FBP, SIRT, TV (best weight), reweighted TV, GANrec and
the chain reweighted TV + GANrec, each named for what runs.

Cases: 0-180, 0-120, 0-90 degrees (one projection per degree), +-35 degrees with 51 projections
(the paper's ptychography scan), and 0-120 degrees with Poisson noise (1e4 photons). Sinograms are
simulated on a 3x finer grid with a bilinear ray-sampling projector; every method reconstructs with
the strip-integral matrix. Metric: ``g = gt/gt.max()``, ``r = clip(rec/gt.max(), 0, 1)``, SSIM map
averaged inside the reconstruction circle (``napari_ganrec.evaluation``).

    python benchmarks/quality.py                                   # 128 px, CPU-sized defaults
    python benchmarks/quality.py --sizes 128 256 --iterations 2000 --device cuda
    python benchmarks/quality.py --phantom foam --cases 0-120 pm35  # a family the defaults never saw
    python benchmarks/quality.py --methods rwtv rwtv+ganrec --rwtv-options tv_weight=0.3 eps=1.0
    python benchmarks/quality.py --cases pm35 0-90 --methods rwtv+wedgefill --rwtv-grid tv_weight=0.1,0.3 \
        eps=0.1,0.3 --wedgefill-options orientation_weight=0.1    # issue 15 (docs/experiments.md)
    python benchmarks/quality.py --cases pm35 0-90 --methods rwtv+wedgefill --rwtv-grid 0.1:0.1 \
        --wedgefill-options projection_weight=0.1 projection_real=image   # issue 15, experiment 3

Reweighted TV appears twice: "reweighted TV, best of grid" is the best of the ``--rwtv-grid``
settings per case (an oracle, like best-λ TV; chains with reweighted TV start from that setting)
and "reweighted TV, automatic strength" is the method ``rwtv`` as it runs by default
(``tv_weight="auto"``, chosen from the sinogram's noise).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

CASES = {
    "0-180": (0.0, 180.0, 180, False),
    "0-120": (0.0, 120.0, 120, False),
    "0-90": (0.0, 90.0, 90, False),
    "pm35": (-35.0, 35.0, 51, False),
    "noisy-0-120": (0.0, 120.0, 120, True),
}
LABELS = {"0-180": "0-180", "0-120": "0-120", "0-90": "0-90", "pm35": "±35 (51)", "noisy-0-120": "noisy 0-120"}


def make_case(phantom_name: str, size: int, case: str, seed: int = 0):
    from napari_ganrec import phantoms
    from napari_ganrec.geometry import angles_from_range

    start, stop, count, noisy = CASES[case]
    if phantom_name == "porous":
        ph = phantoms.porous_particle(size, seed=seed)
    elif phantom_name == "foam":
        ph = phantoms.foam(size, seed=seed + 1)
    elif phantom_name == "shepp":
        ph = phantoms.shepp_logan(size)
    else:
        raise ValueError(f"unknown phantom {phantom_name!r}")
    gt = phantoms.ground_truth(ph)
    angles = angles_from_range(start, stop, count)
    sino = phantoms.simulate_sinogram(ph, angles)
    if noisy:
        sino = phantoms.add_poisson_noise(sino, photons=1e4, seed=seed)
    return gt, sino, angles


def run(args) -> list[dict]:
    import napari_ganrec as ng
    from napari_ganrec.evaluation import psnr, ssim
    from napari_ganrec.methods import label_of
    from napari_ganrec.methods.wedge import missing_sector

    rows = []
    for size in args.sizes:
        for case in args.cases:
            gt, sino, angles = make_case(args.phantom, size, case)
            results = {}
            t = time.perf_counter()
            results["FBP"] = (ng.reconstruct(sino, angles, method="fbp", device=args.device),
                              time.perf_counter() - t)
            t = time.perf_counter()
            results["SIRT"] = (ng.reconstruct(sino, angles, method="sirt", iterations=args.sirt_iterations,
                                              device=args.device), time.perf_counter() - t)
            best = None
            for w in args.tv_weights:
                t = time.perf_counter()
                rec = ng.reconstruct(sino, angles, method="tv", iterations=args.tv_iterations, tv_weight=w,
                                     device=args.device)
                s = ssim(gt, rec)
                if best is None or s > best[0]:
                    best = (s, w, rec, time.perf_counter() - t)
            results[f"TV (best λ={best[1]:g})"] = (best[2], best[3])
            rwtv_options = dict(args.rwtv_options)  # the method rwtv runs with these (default: automatic)
            chain_options = dict(rwtv_options)  # chains start from the grid's best setting, when there is a grid
            grid = rwtv_grid(args.rwtv_grid)
            if grid:  # reweighted TV as TV is shown: the best of a small grid (an oracle choice)
                best = None
                for opts in grid:
                    t = time.perf_counter()
                    rec = ng.reconstruct(sino, angles, method="rwtv", iterations=args.iterations, device=args.device,
                                         rwtv={**rwtv_options, **opts})
                    s = ssim(gt, rec)
                    if best is None or s > best[0]:
                        best = (s, opts, rec, time.perf_counter() - t)
                chain_options.update(best[1])
                setting = ", ".join(f"{k}={v:g}" for k, v in best[1].items())
                results[f"reweighted TV, best of grid ({setting}; rwtv:{args.iterations})"] = (best[2], best[3])
            for method in args.methods:
                its = {"rwtv": args.iterations, "ganrec": args.iterations, "wedgefill": args.wedgefill_iterations}
                if method == "rwtv+ganrec":
                    its = {"rwtv": args.iterations, "ganrec": args.chain_ganrec_iterations}
                stages = method.split("+")
                if "wedgefill" in stages and missing_sector(angles) is None:
                    print(f"  {size:4d} {case:12s} {method}: not run, the angles leave no missing wedge",
                          file=sys.stderr, flush=True)
                    continue
                start = rwtv_options if method == "rwtv" else chain_options
                options = {"rwtv": start} if "rwtv" in stages else {}
                if "wedgefill" in stages:  # its re-projections are reconstructed as the chain's reweighted TV
                    same = {k: v for k, v in start.items() if k in ("tv_weight", "eps")}
                    options["wedgefill"] = {**same, **dict(args.wedgefill_options)}
                t = time.perf_counter()
                rec = ng.reconstruct(sino, angles, method=method, device=args.device, seed=args.seed,
                                     iterations={k: v for k, v in its.items() if k in stages}, **options)
                counts = "+".join(f"{k}:{v}" for k, v in its.items() if k in stages)
                label = label_of(method)
                if method == "rwtv" and "tv_weight" not in rwtv_options:
                    label += ", automatic strength"  # tv_weight="auto": from the sinogram's noise
                results[f"{label} ({counts})"] = (rec, time.perf_counter() - t)
            for name, (rec, seconds) in results.items():
                row = {"size": size, "case": case, "method": name, "ssim": ssim(gt, rec),
                       "psnr": psnr(gt, rec), "seconds": seconds}
                rows.append(row)
                print(f"  {size:4d} {case:12s} {name:24s} SSIM {row['ssim']:.3f}  PSNR {row['psnr']:5.1f} dB"
                      f"  {seconds:7.1f} s", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], cases: list[str], key: str = "ssim") -> str:
    lines = []
    for size in sorted({r["size"] for r in rows}):
        methods = list(dict.fromkeys(r["method"].split(" (")[0] for r in rows if r["size"] == size))
        lines.append(f"\n**{size} px — {key.upper()}**\n")
        lines.append("| method | " + " | ".join(LABELS[c] for c in cases) + " |")
        lines.append("|---|" + "---|" * len(cases))
        for m in methods:
            cells = []
            for c in cases:
                hit = [r for r in rows if r["size"] == size and r["case"] == c and r["method"].split(" (")[0] == m]
                fmt = "{:.3f}" if key == "ssim" else "{:.1f}"
                cells.append(fmt.format(hit[0][key]) if hit else "-")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _option(text: str):
    """``NAME=VALUE`` -> ``(NAME, VALUE)``: an int, else a float, else the text (e.g. ``projection_real=image``)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


def rwtv_grid(specs: list[str]) -> list[dict]:
    """The reweighted-TV settings of ``--rwtv-grid`` (``[]``: no grid).

    Either axes, ``["tv_weight=0.1,0.3", "eps=0.1,0.3"]`` -> the four settings of their product, or
    ``TV_WEIGHT:EPS`` pairs, ``["0.1:0.1", "0.3:1.0"]`` -> those two settings.
    """
    axes = [spec for spec in specs if "=" in spec]
    pairs = [spec for spec in specs if "=" not in spec]
    if axes and pairs:
        raise ValueError(f"--rwtv-grid takes NAME=V1,V2 axes or TV_WEIGHT:EPS pairs, not both: {specs!r}")
    if pairs:
        out = []
        for spec in pairs:
            w, sep, e = spec.partition(":")
            try:
                out.append({"tv_weight": float(w), "eps": float(e)})
            except ValueError:
                raise ValueError(f"--rwtv-grid expects NAME=V1,V2,... or TV_WEIGHT:EPS, got {spec!r}") from None
        return out
    grid = []
    for spec in axes:
        key, sep, values = spec.partition("=")
        if not values:
            raise ValueError(f"--rwtv-grid expects NAME=V1,V2,..., got {spec!r}")
        grid.append([(key, float(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*grid)] if grid else []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[128])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--phantom", default="porous", choices=["porous", "foam", "shepp"])
    p.add_argument("--iterations", type=int, default=1000,
                   help="iterations of reweighted TV and of GANrec (and of the chain's reweighted TV)")
    p.add_argument("--methods", nargs="+", default=["rwtv", "ganrec", "rwtv+ganrec"],
                   help="methods besides FBP, SIRT and the best-weight TV")
    p.add_argument("--chain-ganrec-iterations", type=int, default=200,
                   help="GANrec iterations of the chain rwtv+ganrec, after --iterations of reweighted TV")
    p.add_argument("--rwtv-options", nargs="*", default=[], type=_option,
                   help="reweighted-TV config fields, e.g. tv_weight=0.3 eps=1.0")
    p.add_argument("--rwtv-grid", nargs="*", default=["0.1:0.1", "0.3:0.1", "0.3:1.0"], metavar="SETTING",
                   help="reweighted TV: the best of this grid per case, the row 'reweighted TV, best of grid' (an "
                        "oracle choice, like TV's λ), as TV_WEIGHT:EPS pairs (default 0.1:0.1 0.3:0.1 0.3:1.0) or axes "
                        "NAME=V1,V2 (e.g. tv_weight=0.1,0.3 eps=0.1,0.3; their product); none: no such row. Chains "
                        "with reweighted TV start from the best setting; the method rwtv runs as --rwtv-options say "
                        "(default automatic: the row 'reweighted TV, automatic strength')")
    p.add_argument("--wedgefill-iterations", type=int, default=300,
                   help="iterations of the wedge-filling stage (rwtv+wedgefill), after --iterations of reweighted TV")
    p.add_argument("--wedgefill-options", nargs="*", default=[], type=_option,
                   help="wedge-filling config fields, e.g. pool=8 lr=0.002")
    p.add_argument("--sirt-iterations", type=int, default=200)
    p.add_argument("--tv-iterations", type=int, default=None,
                   help="TV iterations (default: --iterations, so TV and reweighted TV get the same budget)")
    p.add_argument("--tv-weights", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 1.0],
                   help="TV weights tried; the best per case is reported (an oracle choice)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        rwtv_grid(args.rwtv_grid)  # a bad setting stops here, before any reconstruction
    except ValueError as exc:
        p.error(str(exc))
    if args.tv_iterations is None:
        args.tv_iterations = args.iterations
    rows = run(args)
    print(f"phantom: {args.phantom}; reweighted TV and GANrec {args.iterations} iterations (chain: "
          f"+{args.chain_ganrec_iterations} GANrec); TV {args.tv_iterations} iterations, "
          f"best of λ in {args.tv_weights}; SIRT {args.sirt_iterations} iterations"
          + (f"; wedge filling {args.wedgefill_iterations} iterations" if any("wedgefill" in m for m in args.methods)
             else "")
          + (f"; reweighted TV best of {rwtv_grid(args.rwtv_grid)}" if args.rwtv_grid else "")
          + f"; the method rwtv: {dict(args.rwtv_options) or 'automatic strength'}")
    print(table(rows, args.cases, "ssim"))
    print(table(rows, args.cases, "psnr"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
