"""Whole volumes: warm start vs cold start, batch modes, 1 vs 2 Dask workers, GPU timings.

Prints markdown tables. The default run (128 px, 32 slices, 128 angles, method "rwtv+ganrec") takes
about 10 minutes on 2 CPU cores; ``--quick`` is a smoke run of a minute or two.

    python benchmarks/volume.py                 # all sections
    python benchmarks/volume.py --quick
    python benchmarks/volume.py --skip-workers --skip-batch

Quality is the SSIM against the phantom (scikit-image, data range of the phantom), averaged over
slices. "Equal final quality": the cold (from scratch) reconstruction of a subset of slices is
followed every ``--cold-every`` iterations; the iteration count at which its mean SSIM first
reaches the warm-started chain's mean SSIM on the same slices is what a cold run would need, and
its time per slice is that count times the measured time per iteration.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skimage.metrics import structural_similarity  # noqa: E402

import napari_ganrec as ng  # noqa: E402
from napari_ganrec.geometry import angles_from_range  # noqa: E402
from napari_ganrec.phantoms import porous_particle, simulate_projections  # noqa: E402
from napari_ganrec.volume import iter_volume  # noqa: E402


def ssim(truth: np.ndarray, image: np.ndarray) -> float:
    rng = float(truth.max() - truth.min()) or 1.0
    return float(structural_similarity(truth, image, data_range=rng))


def mean_ssim(truth: np.ndarray, vol: np.ndarray) -> float:
    return float(np.mean([ssim(t, v) for t, v in zip(truth, vol)]))


def make_data(n: int, nz: int, n_angles: int, seed: int = 1):
    angles = angles_from_range(0, 180, n_angles)
    phantom = porous_particle(n, nz=nz, seed=seed)
    truth = phantom.rasterize()
    proj = simulate_projections(phantom, angles, factor=1)
    return np.ascontiguousarray(proj.transpose(1, 0, 2)), angles, truth


def run_chain(sinos, angles, truth, rows, **kwargs):
    """Run iter_volume, return (volume, seconds, per-slab records)."""
    a, b = rows
    vol = np.zeros((b - a,) + truth.shape[1:], np.float32)
    records = []
    t0 = time.perf_counter()
    for rec in iter_volume(sinos, angles, rows=rows, progress_every=None, **kwargs):
        vol[rec.positions[0]:rec.positions[-1] + 1] = rec.images
        records.append(rec)
    return vol, time.perf_counter() - t0, records


def section_warm_vs_cold(args, sinos, angles, truth):
    nz = sinos.shape[0]
    print(f"\n## Warm start vs cold start ({args.size} px, {nz} slices, {sinos.shape[1]} angles, "
          f"method {args.method!r}, device {args.device})\n")
    vol, secs, recs = run_chain(sinos, angles, truth, (0, nz), iterations=args.iterations,
                                warm_iterations=args.warm_iterations, tol=args.tol,
                                method=args.method, device=args.device, seed=0)
    warm_its = [r.iteration for r in recs]
    subset = np.unique(np.linspace(1, nz - 1, args.cold_slices).round().astype(int))
    warm_sub = mean_ssim(truth[subset], vol[subset])
    # cold: the SSIM curve of each subset slice, from scratch
    curves, its_time = [], []
    for k in subset:
        t0 = time.perf_counter()
        curve = []
        for step in ng.iter_reconstruct(sinos[k], angles, iterations=args.cold_max,
                                        preview_every=args.cold_every, method=args.method,
                                        device=args.device, seed=0):
            if step.image is not None:
                curve.append((step.iteration, ssim(truth[k], step.image)))
        its_time.append((time.perf_counter() - t0) / args.cold_max)
        curves.append(curve)
    iters = [it for it, _ in curves[0]]
    mean_curve = np.mean([[s for _, s in c] for c in curves], axis=0)
    t_it = float(np.median(its_time))
    reach = next((it for it, s in zip(iters, mean_curve) if s >= warm_sub), None)
    best_i = int(np.argmax(mean_curve))
    print("| run | iterations per slice | total s | s per slice | SSIM (subset) | SSIM (all) |")
    print("|---|---|---|---|---|---|")
    n_stages = len(args.method.split("+"))  # iterations are per stage; the columns count all stages
    print(f"| warm start (first {warm_its[0] // n_stages}, then <= {args.warm_iterations}"
          f"{', tol ' + str(args.tol) if args.tol else ''}) | {np.mean(warm_its):.1f} | "
          f"{secs:.1f} | {secs / nz:.2f} | {warm_sub:.3f} | {mean_ssim(truth, vol):.3f} |")
    if reach is not None:
        per = reach * t_it
        print(f"| cold start, equal quality | {reach} | {per * nz:.1f} (est.) | {per:.2f} | "
              f"{mean_curve[iters.index(reach)]:.3f} | - |")
        speedup = per * nz / secs
    else:
        per = args.cold_max * t_it
        print(f"| cold start, best within {args.cold_max} | {iters[best_i]} | "
              f"> {per * nz:.1f} (est.) | > {per:.2f} | {mean_curve[best_i]:.3f} (< warm) | - |")
        speedup = None
    print(f"\nCold start measured on {len(subset)} slices {subset.tolist()} "
          f"({t_it * 1000:.0f} ms per iteration); its total is that per-slice time x {nz}. "
          "Mean cold SSIM by iteration: "
          + ", ".join(f"{it}: {s:.3f}" for it, s in zip(iters, mean_curve)))
    if speedup is not None:
        print(f"\nWarm start is {speedup:.1f}x faster than cold start at equal quality.")
    return vol, secs, recs


def section_batch(args, sinos, angles, truth, warm):
    vol1, _secs1, recs1 = warm
    m = min(args.batch_slices, sinos.shape[0])
    print(f"\n## Batching: {args.batch} slices per step, first {m} slices\n")
    print("| mode | batch | total s | s per slice | SSIM | SSIM per 100 s |")
    print("|---|---|---|---|---|---|")
    secs1 = sum(r.seconds for r in recs1 if r.indices[-1] < m)
    s1 = mean_ssim(truth[:m], vol1[:m])
    print(f"| one slice at a time | 1 | {secs1:.1f} | {secs1 / m:.2f} | {s1:.3f} | "
          f"{100 * s1 / secs1:.2f} |")
    results = {}
    for mode in ("shared", "independent"):
        vol, secs, _ = run_chain(sinos, angles, truth, (0, m), iterations=args.iterations,
                                 warm_iterations=args.warm_iterations, batch=args.batch,
                                 batch_mode=mode, method=args.method, device=args.device, seed=0)
        s = mean_ssim(truth[:m], vol)
        results[mode] = (s, secs)
        print(f"| {mode} | {args.batch} | {secs:.1f} | {secs / m:.2f} | {s:.3f} | "
              f"{100 * s / secs:.2f} |")
    return results


def section_workers(args, sinos, angles, truth):
    from napari_ganrec.distributed import run_distributed

    m = min(args.worker_slices, sinos.shape[0])
    cores = os.cpu_count() or 1
    print(f"\n## Dask: 1 vs 2 local workers on CPU ({m} slices, slab {args.slab}, "
          f"{cores} cores)\n")
    print("| workers | torch threads each | total s | s per slice | task s / total s | SSIM "
          "| max diff to 1 worker |")
    print("|---|---|---|---|---|---|---|")
    vols = {}
    configs = [(1, args.threads), (2, args.threads)] + ([(1, 2)] if args.worker_threads2 else [])
    with tempfile.TemporaryDirectory() as tmp:
        for workers, threads in configs:
            out = Path(tmp) / f"w{workers}t{threads}.npy"
            t0 = time.perf_counter()
            tasks = []
            run_distributed(sinos, out, angles, rows=(0, m), slab_size=args.slab,
                            workers=workers, threads_per_worker=threads,
                            progress=lambda r, tasks=tasks: tasks.append(r.seconds),
                            iterations=args.iterations, warm_iterations=args.warm_iterations,
                            method=args.method, device="cpu", seed=0)
            secs = time.perf_counter() - t0
            vol = np.load(out)
            vols.setdefault(workers, vol)
            diff = float(np.abs(vol - vols[1]).max())
            print(f"| {workers} | {threads} | {secs:.1f} | {secs / m:.2f} | "
                  f"{sum(tasks) / secs:.2f} | {mean_ssim(truth[:m], vol):.3f} | {diff:.2g} |")
    print("\nTotals include starting the local cluster (worker processes import torch) and the "
          "seed task. 'task s / total s' is the slab tasks' summed run time over the total: "
          "above 1 when tasks overlap; tasks that get slower when they overlap mean the cores "
          "were not free. The result depends on the torch thread count of a task "
          "(floating-point summation order), not on the number of workers.")


def _time_steps(solver, reps: int, dev) -> float:
    """ms per iteration over ``reps`` iterations with one synchronisation at the end."""
    for _ in range(5):
        solver.step()
    solver.check()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(reps):
        losses = solver.step()
    float(next(iter(losses.values())))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return (time.perf_counter() - t0) / reps * 1000


def section_gpu(args):
    """Item 2 of the volume issue: ms per slice-iteration by batch mode and execution, shared vs
    independent batches by quality per second, and a whole ``--gpu-volume``-cubed volume."""
    from napari_ganrec.acceleration import EXECUTIONS
    from napari_ganrec.geometry import Geometry
    from napari_ganrec.methods.ganrec import GANrec
    from napari_ganrec.methods.rwtv import RWTV
    from napari_ganrec.projector import Projector
    from napari_ganrec.volume.stacked import StackedGANrec

    print("\n## GPU\n")
    if args.gpu_device.startswith("cuda") and not torch.cuda.is_available():
        print("No CUDA device here: GPU figures not measured.")
        return
    dev = torch.device(args.gpu_device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{dev} (smoke run)"
    print(f"Device: {name}, torch {torch.__version__}\n")
    executions = {k: EXECUTIONS[k] for k in args.gpu_executions}
    print("| size | batch | mode | stage | execution | ms per iteration | ms per slice-iteration "
          "| peak GPU MB |")
    print("|---|---|---|---|---|---|---|---|")
    stages = [name for name in ("rwtv", "ganrec") if name in args.method.split("+")]
    for n in args.gpu_sizes:
        ang = angles_from_range(0, 180, n)
        proj = Projector(Geometry.create(ang, n), device=dev)
        for batch, mode in [(1, "-")] + [(b, m) for b in args.gpu_batches if b > 1
                                         for m in ("shared", "independent")]:
            for stage in stages:
                if stage == "rwtv" and mode == "independent":
                    continue  # reweighted TV has no network: both modes are the same there
                for ex_name, acc in executions.items():
                    sino = torch.rand(batch, n, n, device=dev)
                    if dev.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(dev)
                    if stage == "rwtv":
                        solver = RWTV(proj, sino, acceleration=acc)
                    else:
                        cls = StackedGANrec if mode == "independent" else GANrec
                        x0 = torch.rand(batch, n, n, device=dev) if "rwtv" in stages else None
                        solver = cls(proj, sino, seed=0, acceleration=acc, x0=x0)
                    ms = _time_steps(solver, args.gpu_reps, dev)
                    mem = torch.cuda.max_memory_allocated(dev) / 1024**2 if dev.type == "cuda" else 0
                    solver.close()
                    print(f"| {n} | {batch} | {mode} | {stage} | {ex_name} | {ms:.2f} | "
                          f"{ms / batch:.3f} | {mem:.0f} |", flush=True)
        del proj

    # shared vs independent batches at equal iterations: quality per second
    n, nz = args.gpu_volume, min(args.gpu_batches[-1], args.gpu_volume)
    sinos, angles, truth = make_data(n, nz, n)
    print(f"\n### Shared vs independent batches ({nz} slices of {n} px, batch {nz}, "
          f"{args.gpu_iterations} iterations)\n")
    print("| mode | execution | s | SSIM | SSIM per 10 s |")
    print("|---|---|---|---|---|")
    for mode in ("shared", "independent"):
        for ex_name, acc in executions.items():
            vol, secs, _ = run_chain(sinos, angles, truth, (0, nz), iterations=args.gpu_iterations,
                                     warm_iterations=args.gpu_warm_iterations, batch=nz,
                                     batch_mode=mode, method=args.method, device=str(dev), seed=0,
                                     acceleration=acc)
            s_ = mean_ssim(truth, vol)
            print(f"| {mode} | {ex_name} | {secs:.1f} | {s_:.3f} | {10 * s_ / secs:.3f} |", flush=True)

    # a whole volume
    t0 = time.perf_counter()
    sinos, angles, truth = make_data(n, n, n)
    sim = time.perf_counter() - t0
    fbp = ng.reconstruct(sinos, angles, method="fbp", device=str(dev))
    print(f"\n### A {n}x{n}x{n} volume ({n} angles over 0-180 degrees; simulated in {sim:.0f} s)\n")
    print("| execution | batch | iterations per stage (first / later slabs) | total s | s per slice | SSIM |")
    print("|---|---|---|---|---|---|")
    print(f"| FBP | - | - | - | - | {mean_ssim(truth, fbp):.3f} |")
    for ex_name, acc in executions.items():
        vol, secs, recs = run_chain(sinos, angles, truth, (0, n), iterations=args.gpu_iterations,
                                    warm_iterations=args.gpu_warm_iterations, batch=args.gpu_batches[-1],
                                    batch_mode="shared", method=args.method, device=str(dev), seed=0,
                                    acceleration=acc)
        n_stages = len(args.method.split("+"))
        print(f"| {ex_name} | {args.gpu_batches[-1]} | {recs[0].iteration // n_stages} / "
              f"{recs[-1].iteration // n_stages} | {secs:.1f} | {secs / n:.3f} | {mean_ssim(truth, vol):.3f} |",
              flush=True)
    print("\nThe paper: 0.07 s per iteration at 256 px on a P100. Target: a 256-cubed volume in "
          "under 2 minutes on one H100-class GPU.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--slices", type=int, default=32)
    p.add_argument("--angles", type=int, default=128)
    p.add_argument("--method", default="rwtv+ganrec", help="method or chain (napari_ganrec.methods)")
    p.add_argument("--iterations", type=int, default=150,
                   help="iterations per stage of the first slice (and cold slices)")
    p.add_argument("--warm-iterations", type=int, default=25, help="iterations per stage of later slices")
    p.add_argument("--tol", type=float, default=None, help="early-stop tolerance of warm slices")
    p.add_argument("--cold-slices", type=int, default=4)
    p.add_argument("--cold-max", type=int, default=150)
    p.add_argument("--cold-every", type=int, default=25)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--batch-slices", type=int, default=8)
    p.add_argument("--worker-slices", type=int, default=12)
    p.add_argument("--slab", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: steadier on a shared machine)")
    p.add_argument("--worker-threads2", action="store_true",
                   help="also time 1 worker with 2 torch threads")
    p.add_argument("--skip-warm", action="store_true", help="(skips the batch section too)")
    p.add_argument("--skip-batch", action="store_true")
    p.add_argument("--skip-workers", action="store_true")
    p.add_argument("--skip-gpu", action="store_true")
    p.add_argument("--gpu-device", default="cuda", help="device of the GPU section")
    p.add_argument("--gpu-sizes", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--gpu-batches", type=int, nargs="+", default=[8, 32],
                   help="batch sizes of the GPU section (the last one reconstructs the volume)")
    p.add_argument("--gpu-reps", type=int, default=50, help="timed iterations per row")
    p.add_argument("--gpu-executions", nargs="+", default=["fp32", "auto"],
                   choices=["fp32", "auto", "compiled"],
                   help="executions of the GPU section ('compiled' compiles once per shape: slow)")
    p.add_argument("--gpu-volume", type=int, default=256, help="edge of the GPU volume")
    p.add_argument("--gpu-iterations", type=int, default=300,
                   help="iterations per stage of the first slab on the GPU")
    p.add_argument("--gpu-warm-iterations", type=int, default=300)
    p.add_argument("--quick", action="store_true", help="64 px, 8 slices, few iterations")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.slices, args.angles = 64, 8, 64
        args.iterations, args.warm_iterations, args.cold_max, args.cold_every = 60, 10, 60, 10
        args.cold_slices, args.batch_slices, args.worker_slices, args.slab = 3, 8, 8, 4
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    sinos, angles, truth = make_data(args.size, args.slices, args.angles)
    print(f"# Volume benchmark ({os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")
    fbp = ng.reconstruct(sinos, angles, method="fbp", device="cpu")
    print(f"\nFBP reference: SSIM {mean_ssim(truth, fbp):.3f}")
    warm = None if args.skip_warm else section_warm_vs_cold(args, sinos, angles, truth)
    if warm is not None and not args.skip_batch:
        section_batch(args, sinos, angles, truth, warm)
    if not args.skip_workers:
        section_workers(args, sinos, angles, truth)
    if not args.skip_gpu:
        section_gpu(args)
    print(f"\n(benchmark ran {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
