"""``napari-ganrec demo``: the bundled sample reconstructed by every method, with a comparison figure."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..methods import DEFAULT_METHOD, DEMO_METHODS, EXPERIMENTAL, LABELS, METHODS

__all__ = ["register", "run_demo", "demo_iterations", "demo_methods"]


def demo_methods(text: str | None) -> tuple[str, ...]:
    """The methods of ``--methods``: ``None`` -> :data:`DEMO_METHODS`, ``"all"`` -> every method,
    else a comma-separated list of method names (the recommended one is always added)."""
    if text is None:
        return DEMO_METHODS
    if text.strip().lower() == "all":
        return METHODS
    chosen = [m.strip().lower() for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise ValueError(f"--methods takes 'all' or names from {', '.join(METHODS)}; got {text!r}")
    if DEFAULT_METHOD not in chosen:  # its reconstruction is what the demo writes
        chosen.insert(0, DEFAULT_METHOD)
    return tuple(m for m in METHODS if m in chosen)


def register(subparsers) -> None:
    names = ", ".join(LABELS[m] for m in DEMO_METHODS)
    p = subparsers.add_parser(
        "demo",
        help=f"reconstruct the bundled porous-particle sample ({names}) and plot them",
        description="Simulate the sample (a porous particle scanned over 0-120 degrees), reconstruct it "
        f"with every method ({names}), print each one's SSIM and time, and write the reconstruction of the "
        f"recommended method ({DEFAULT_METHOD}, TIFF) and a side-by-side comparison figure.",
    )
    p.add_argument("-o", "--output", default="ganrec-demo", help="output folder (default: ganrec-demo)")
    p.add_argument("--size", type=int, default=128, help="image size in pixels (default 128)")
    p.add_argument("--range", default="0:120", help="angular range START:STOP in degrees (default 0:120)")
    p.add_argument("--n-angles", type=int, default=120, help="number of projections (default 120)")
    p.add_argument("--iterations", type=int, default=500,
                   help="iterations of every iterative stage except SIRT's 200 (default 500)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda:N (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=None,
                   help="comma-separated methods, or 'all' (default: every method but the experimental "
                        f"{', '.join(EXPERIMENTAL)}, which take 5-20x reweighted TV's time)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=run_demo)


def demo_iterations(method: str, iterations: int) -> dict[str, int]:
    """Iterations per stage of ``method`` in the demo: ``iterations`` each, SIRT 200, FBP 1."""
    from ..methods import parse_method

    return {name: (1 if name == "fbp" else 200 if name == "sirt" else int(iterations))
            for name, _ in parse_method(method)}


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit status."""
    from tqdm import tqdm

    from .. import phantoms
    from ..api import iter_reconstruct
    from ..evaluation import ssim
    from ..geometry import angles_from_range
    from ..io import write_volume
    from ..methods import make_plan

    methods = demo_methods(args.methods)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    start, stop = (float(v) for v in args.range.split(":"))
    angles = angles_from_range(start, stop, args.n_angles)
    phantom = phantoms.porous_particle(args.size, seed=0)
    truth = phantoms.ground_truth(phantom)
    sino = phantoms.simulate_sinogram(phantom, angles)
    results, timings, stages = {}, {}, {}
    for method in methods:
        plan = make_plan(method, demo_iterations(method, args.iterations))
        stages[method] = plan.describe(with_config=False)["stages"]
        t0 = time.perf_counter()
        with tqdm(total=plan.iterations, desc=LABELS[method], unit="it", leave=False) as bar:
            for step in iter_reconstruct(sino, angles, method=plan, device=args.device, seed=args.seed,
                                         preview_every=plan.iterations + 1):
                bar.update(1)
                if step.image is not None:
                    results[method] = step.image
        timings[method] = time.perf_counter() - t0
        counts = " + ".join(f"{s['name']} {s['iterations']}" for s in stages[method])
        print(f"{LABELS[method]:24s} SSIM {ssim(truth, results[method]):.3f}  "
              f"({timings[method]:.1f} s; {counts} it.)")
    scores = {m: ssim(truth, r) for m, r in results.items()}
    meta = {
        **make_plan(DEFAULT_METHOD, demo_iterations(DEFAULT_METHOD, args.iterations)).describe(False),
        "method_label": LABELS[DEFAULT_METHOD],
        "angles": [float(a) for a in angles],
        "center": args.size / 2,
        "seed": args.seed,
        "device": args.device,
    }
    rec_path = write_volume(out / f"reconstruction_{DEFAULT_METHOD.replace('+', '_')}.tif",
                            results[DEFAULT_METHOD], meta, overwrite=args.overwrite)
    fig_path = _comparison_figure(out / "comparison.png", truth, results, scores, timings, angles,
                                  args.overwrite)
    summary = {"recommended": DEFAULT_METHOD, "center": args.size / 2, "seed": args.seed,
               "device": args.device,
               "methods": {m: {"label": LABELS[m], "stages": stages[m], "ssim": scores[m],
                               "seconds": timings[m]} for m in methods}}
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {rec_path} and {fig_path}")
    return 0


def _comparison_figure(path: Path, truth, results, scores, timings, angles, overwrite: bool) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io._common import atomic_paths

    vmax = float(truth.max())
    methods = tuple(results)
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(3.2 * (len(methods) + 1), 3.9),
                             constrained_layout=True)
    axes[0].imshow(truth, cmap="gray", vmin=0, vmax=vmax)
    axes[0].set_title("ground truth")
    for ax, method in zip(axes[1:], methods):
        ax.imshow(np.clip(results[method], 0, None), cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(f"{LABELS[method]}\nSSIM {scores[method]:.3f}, {timings[method]:.1f} s", fontsize=10)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"porous particle, {angles.min():.0f} to {angles.max():.0f} degrees, {len(angles)} projections")
    with atomic_paths(path, overwrite=overwrite) as (tmp,):
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path
