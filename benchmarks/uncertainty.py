"""Seed ensembles (issue 15, experiment 4): is the spread of K seeds a calibrated error bar?

For each network method and case: K reconstructions with seeds 0..K-1
(:func:`napari_ganrec.uncertainty.seed_ensemble`), the SSIM of their mean and of a single member,
the mean spread (relative to the ground truth's maximum), the coverage of ``|mean - gt| <= k std``
for k = 1, 2, 3 inside the reconstruction circle (a calibrated Gaussian: 0.683 / 0.954 / 0.997) and
the factor the spread would need for k = 1 to cover 68.3 %.

    python benchmarks/uncertainty.py                          # 64 px, K = 4, CPU-sized
    python benchmarks/uncertainty.py --size 128 --seeds 8 --cases 0-120 pm35 noisy-0-120
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import CASES, LABELS, make_case  # noqa: E402

METHODS = {"ganrec": "ganrec", "rwtv+ganrec": "rwtv+ganrec"}


def run(args) -> list[dict]:
    import numpy as np

    from napari_ganrec.evaluation import ssim
    from napari_ganrec.uncertainty import calibration_scale, coverage, seed_ensemble

    rows = []
    for case in args.cases:
        gt, sino, angles = make_case(args.phantom, args.size, case)
        for method in args.methods:
            its = ({"ganrec": args.iterations} if method == "ganrec"
                   else {"rwtv": args.rwtv_iterations, "ganrec": args.chain_ganrec_iterations})
            t = time.perf_counter()
            ens = seed_ensemble(sino, angles, method=method, seeds=args.seeds, iterations=its, device=args.device)
            seconds = time.perf_counter() - t
            cov = coverage(ens.mean, ens.std, gt)
            row = {"case": case, "method": method, "its": "+".join(f"{k}:{v}" for k, v in its.items()),
                   "ssim_mean": ssim(gt, ens.mean), "ssim_member": float(np.mean([ssim(gt, m) for m in ens.members])),
                   "spread": float(ens.std.mean() / gt.max()), "cov": cov,
                   "scale": calibration_scale(ens.mean, ens.std, gt), "seconds": seconds}
            rows.append(row)
            print(f"  {case:12s} {method:12s} SSIM mean {row['ssim_mean']:.3f} member {row['ssim_member']:.3f} "
                  f"cov {cov[1.0]:.3f}/{cov[2.0]:.3f}/{cov[3.0]:.3f} x{row['scale']:.2f} {seconds:.0f} s",
                  file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| case | method (iterations) | SSIM of the mean | SSIM of one member (mean) | mean std / max gt "
             "| coverage k=1 | k=2 | k=3 | std factor for k=1 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["cov"]
        lines.append(f"| {LABELS[r['case']]} | {r['method']} ({r['its']}) | {r['ssim_mean']:.3f} | "
                     f"{r['ssim_member']:.3f} | {r['spread']:.4f} | {c[1.0]:.3f} | {c[2.0]:.3f} | {c[3.0]:.3f} | "
                     f"{r['scale']:.2f} |")
    lines.append("| (calibrated Gaussian) | | | | | 0.683 | 0.954 | 0.997 | 1.00 |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--phantom", default="porous", choices=["porous", "foam", "shepp"])
    p.add_argument("--cases", nargs="+", default=["0-120", "noisy-0-120"], choices=list(CASES))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", type=int, default=4, help="ensemble size K (seeds 0..K-1)")
    p.add_argument("--iterations", type=int, default=300, help="GANrec iterations of the method ganrec")
    p.add_argument("--rwtv-iterations", type=int, default=300, help="reweighted-TV iterations of the chain")
    p.add_argument("--chain-ganrec-iterations", type=int, default=100, help="GANrec iterations of the chain")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from napari_ganrec.threads import configure_threads

    configure_threads()
    rows = run(args)
    print(f"phantom: {args.phantom}, {args.size} px, K = {args.seeds} seeds")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
