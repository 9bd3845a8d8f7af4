"""Speed and memory of the iterative stages: ms per slice-iteration, peak memory, and accuracy.

Prints a markdown table for image sizes (default 128 and 256 on the CPU, 128, 256 and 512 on CUDA)
with 120 projections over 0-120 degrees, batch sizes (slices per step), the stages (``sirt``,
``tv``, ``rwtv``: reweighted TV; ``ganrec``: the paper's GAN from scratch; ``ganrec+x0``: GANrec
fitting a residual on an initial image, as the second stage of ``rwtv+ganrec``) and the
executions: ``fp32``
(float32, eager, losses read every iteration) and
``auto`` (on CUDA: bfloat16 generator, channels-last, fused Adam, losses read every 25
iterations; on the CPU ``auto`` is float32 with fused Adam, channels-last and a kept heap), and
on CUDA ``compiled`` (``auto`` plus ``torch.compile``; its compilation time is the warm-up
column). Each configuration runs in its own process so its peak memory is its own. Times are over
blocks of iterations with one device synchronisation at the end of a block (as a run syncs), the
median of ``--repeats`` blocks, as wall-clock time and as the process's CPU time (the steadier
figure on a shared machine). ``--threads`` sets torch's thread count in each configuration's
process (default ``auto``: :func:`napari_ganrec.threads.configure_threads`, as a run chooses).

``--accuracy`` also reconstructs a 128 px porous phantom (0-120 degrees) with both executions and
prints the SSIM of each: mixed precision must keep the quality.

    python benchmarks/speed.py                      # CPU (and CUDA if available)
    python benchmarks/speed.py --devices cuda --sizes 128 256 512 --batches 1 8 32 --accuracy
    python benchmarks/speed.py --devices cpu --accuracy --accuracy-amp bf16   # bf16 numerics on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

EXECUTIONS = ("fp32", "auto", "compiled")  # napari_ganrec.acceleration.EXECUTIONS


def _acceleration(execution: str, amp: str | None = None):
    """The named execution, with ``amp`` forced when given."""
    from dataclasses import replace

    from napari_ganrec.acceleration import EXECUTIONS as NAMED

    if execution not in NAMED:
        raise ValueError(f"execution must be one of {tuple(NAMED)}, got {execution!r}")
    return replace(NAMED[execution], amp=amp) if amp is not None else NAMED[execution]


STAGES = ("sirt", "tv", "rwtv", "ganrec", "ganrec+x0")
NETWORK_STAGES = ("ganrec", "ganrec+x0")
#: The stages that the execution options change (SIRT and TV always run plain float32, eagerly).
ACCELERATED = NETWORK_STAGES + ("rwtv",)


def _parse_threads(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--threads takes a positive integer or 'auto', not {value!r}")
    return n


def _one(size: int, batch: int, device: str, iterations: int, stage: str = "rwtv",
         execution: str = "fp32", repeats: int = 3, threads: int | str | None = None) -> dict:
    """Time one configuration: ``iterations`` per block, median of ``repeats`` blocks.

    ``threads``: torch's thread count (``"auto"``: what a run chooses; None: leave it).
    """
    import resource

    import numpy as np
    import torch

    from napari_ganrec.acceleration import resolve_acceleration
    from napari_ganrec.geometry import Geometry
    from napari_ganrec.methods.ganrec import GANrec
    from napari_ganrec.methods.rwtv import RWTV
    from napari_ganrec.methods.sirt import SIRT
    from napari_ganrec.methods.tv import TV
    from napari_ganrec.projector import Projector, resolve_device
    from napari_ganrec.threads import configure_threads

    if threads is not None:
        configure_threads(None if threads == "auto" else threads)
    dev = resolve_device(device)
    angles = np.linspace(0, 120, 120, endpoint=False)
    rng = np.random.default_rng(0)
    sino = torch.from_numpy(rng.random((batch, 120, size), dtype=np.float32)).to(dev)
    t0 = time.perf_counter()
    proj = Projector(Geometry.create(angles, size), device=dev)
    build = time.perf_counter() - t0
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    acc = _acceleration(execution)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    if stage in ("sirt", "tv", "rwtv"):
        solver = {"sirt": SIRT, "tv": TV, "rwtv": RWTV}[stage](proj, sino, acceleration=acc)
    else:
        x0 = None
        if stage == "ganrec+x0":
            prior = RWTV(proj, sino)
            prior.step()
            x0 = prior.image()
        solver = GANrec(proj, sino, seed=0, acceleration=acc, x0=x0)
    t0 = time.perf_counter()
    for _ in range(3):  # warm-up (and compilation)
        solver.step()
    solver.check()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    warmup = time.perf_counter() - t0
    blocks, cpu_blocks = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(iterations):
            losses = solver.step()
        float(next(iter(losses.values())))  # what a run reads at the end of a block
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        blocks.append((time.perf_counter() - t) / iterations)
        cpu_blocks.append((time.process_time() - c) / iterations)
    med = float(np.median(blocks))
    compiled = getattr(solver, "_dual", None) or getattr(solver, "_run_g", None)
    detail = "fp32, eager"
    if stage in ACCELERATED:
        detail = resolve_acceleration(acc, dev, residual_generator=stage != "ganrec").describe()
    out = {
        "size": size, "batch": batch, "device": str(dev), "stage": stage,
        "execution": execution, "execution_detail": detail,
        "compiled": bool(compiled is not None and compiled.compiled),
        "compile_error": None if compiled is None else compiled.error,
        "ms_per_iteration": 1000 * med, "ms_per_slice_iteration": 1000 * med / batch,
        "cpu_ms_per_iteration": 1000 * float(np.median(cpu_blocks)),
        "warmup_s": warmup, "projector_build_s": build, "projector": proj.method,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(), "recoveries": getattr(solver, "recoveries", 0),
    }
    if dev.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 1024**2
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out


def accuracy(device: str, execution: str, amp: str | None, size: int = 128, prior: int = 2000,
             network: int = 300, paper_iterations: int = 500) -> list[dict]:
    """SSIM of the chain ``rwtv+ganrec`` (``prior`` + ``network`` iterations) and of GANrec alone on
    a porous phantom, 0-120 degrees, simulated on a 3x finer grid."""
    import numpy as np

    from napari_ganrec import reconstruct
    from napari_ganrec.evaluation import ssim
    from napari_ganrec.geometry import angles_from_range
    from napari_ganrec.phantoms import ground_truth, porous_particle, simulate_sinogram

    phantom = porous_particle(size, seed=1)
    truth = ground_truth(phantom)
    angles = angles_from_range(0, 120, 120)
    sino = simulate_sinogram(phantom, angles)
    rows = []
    for method, its in (("rwtv+ganrec", {"rwtv": prior, "ganrec": network}),
                        ("ganrec", {"ganrec": paper_iterations})):
        t = time.perf_counter()
        rec = reconstruct(sino, angles, method=method, iterations=its, device=device, seed=0,
                          acceleration=_acceleration(execution, amp))
        rows.append({"method": method, "iterations": sum(its.values()), "execution": execution,
                     "ssim": ssim(truth, rec), "seconds": time.perf_counter() - t,
                     "finite": bool(np.isfinite(rec).all())})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="default: 128 256 (CPU), 128 256 512 (CUDA)")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="default: 1 8 (CPU), 1 8 32 (CUDA)")
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--iterations", type=int, default=None,
                   help="iterations per timed block (default 10 on the CPU, 50 on CUDA)")
    p.add_argument("--repeats", type=int, default=3, help="timed blocks (median)")
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES, help="stages to time")
    p.add_argument("--executions", nargs="+", default=None, choices=EXECUTIONS,
                   help="default: fp32 on the CPU, fp32, auto and compiled on CUDA")
    p.add_argument("--accuracy", action="store_true", help="also compare SSIM of the executions")
    p.add_argument("--accuracy-amp", default=None, choices=["bf16"],
                   help="force bfloat16 in the 'auto' accuracy run (e.g. on a CPU)")
    p.add_argument("--threads", type=_parse_threads, default="auto",
                   help="torch threads per configuration: a count, or 'auto' (what a run chooses; default)")
    p.add_argument("--json", help="also write the rows as JSON here")
    p.add_argument("--_one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._one:
        size, batch, device, stage, execution = args._one.split(",")
        print(json.dumps(_one(int(size), int(batch), device, args.iterations or 10, stage, execution,
                              args.repeats, args.threads)))
        return 0
    import torch

    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    stages = args.stages
    rows = []
    print(f"load average at the start: {os.getloadavg()[0]:.1f}\n")
    print("| device | size | batch | stage | execution | ms / iteration | CPU ms / iteration "
          "| ms / slice-iteration | peak RSS (MB) | peak GPU (MB) | warm-up s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for device in devices:
        cuda = device.startswith("cuda")
        sizes = args.sizes or ([128, 256, 512] if cuda else [128, 256])
        batches = args.batches or ([1, 8, 32] if cuda else [1, 8])
        executions = args.executions or (list(EXECUTIONS) if cuda else ["fp32"])
        iterations = args.iterations or (50 if cuda else 10)
        for size in sizes:
            for batch in batches:
                for stage in stages:
                    for execution in executions if stage in ACCELERATED else executions[:1]:
                        cmd = [sys.executable, __file__, "--_one",
                               f"{size},{batch},{device},{stage},{execution}",
                               "--iterations", str(iterations), "--repeats", str(args.repeats),
                               "--threads", str(args.threads)]
                        res = subprocess.run(cmd, capture_output=True, text=True)
                        if res.returncode != 0:
                            err = (res.stderr.strip().splitlines() or ["?"])[-1]
                            print(f"| {device} | {size} | {batch} | {stage} | {execution} | "
                                  f"failed: {err} ||||||", flush=True)
                            continue
                        row = json.loads(res.stdout.strip().splitlines()[-1])
                        rows.append(row)
                        gpu = f"{row['peak_gpu_mb']:.0f}" if "peak_gpu_mb" in row else "-"
                        name = row.get("gpu", f"cpu ({row['threads']} threads)")
                        ex = row["execution_detail"] + ("" if not row["compile_error"] else
                                                        f" (compile failed: {row['compile_error']})")
                        print(f"| {name} | {size} | {batch} | {stage} | {ex} | "
                              f"{row['ms_per_iteration']:.2f} | {row['cpu_ms_per_iteration']:.2f} | "
                              f"{row['ms_per_slice_iteration']:.3f} | "
                              f"{row['peak_rss_mb']:.0f} | {gpu} | {row['warmup_s']:.1f} |", flush=True)
    if args.accuracy:
        print("\n## Accuracy (128 px porous phantom, 0-120 degrees, 120 projections)\n")
        print("| device | method | iterations | execution | SSIM | s |")
        print("|---|---|---|---|---|---|")
        for device in devices:
            for execution in args.executions or ("fp32", "auto"):
                amp = args.accuracy_amp if execution == "auto" else None
                for row in accuracy(device, execution, amp):
                    label = execution + (f" ({amp})" if amp else "")
                    print(f"| {device} | {row['method']} | {row['iterations']} | {label} | "
                          f"{row['ssim']:.4f} | {row['seconds']:.1f} |", flush=True)
                    rows.append(dict(row, device=device, kind="accuracy"))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
