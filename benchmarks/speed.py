"""Speed and memory of GANrec iterations: ms per iteration and peak memory.

Prints a markdown table for image sizes 128 and 256 (120 projections over 0-120 degrees), batch 1
and 8 (slices per step), on the CPU and on CUDA when present. Each configuration runs in its own
process so its peak resident memory is its own.

    python benchmarks/speed.py                      # CPU (and CUDA if available)
    python benchmarks/speed.py --devices cuda --sizes 128 256 512 --batches 1 8 32
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _one(size: int, batch: int, device: str, iterations: int, preset: str, stage: str = "prior") -> dict:
    """Time one configuration. ``stage``: for presets with a prior stage (``default``), time its
    primal-dual iterations (``"prior"``) or the generator iterations that follow (``"network"``)."""
    import resource

    import numpy as np
    import torch

    from napari_ganrec.ganrec import GANrecSolver, make_config
    from napari_ganrec.geometry import Geometry
    from napari_ganrec.projector import Projector, resolve_device

    dev = resolve_device(device)
    angles = np.linspace(0, 120, 120, endpoint=False)
    rng = np.random.default_rng(0)
    sino = torch.from_numpy(rng.random((batch, 120, size), dtype=np.float32)).to(dev)
    t0 = time.perf_counter()
    proj = Projector(Geometry.create(angles, size), device=dev)
    build = time.perf_counter() - t0
    cfg = make_config(preset)
    if stage == "network" and cfg.prior_iterations:
        cfg = make_config(cfg, prior_iterations=1)
    solver = GANrecSolver(proj, sino, cfg, seed=0)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(3):  # warm-up
        solver.step()
    times = []
    for _ in range(iterations):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        solver.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    out = {
        "size": size, "batch": batch, "device": str(dev), "preset": preset, "stage": stage,
        "ms_per_iteration": 1000 * med, "ms_per_slice_iteration": 1000 * med / batch,
        "projector_build_s": build, "projector": proj.method,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }
    if dev.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 1024**2
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--iterations", type=int, default=10, help="timed iterations (median)")
    p.add_argument("--preset", default="default")
    p.add_argument("--stage", default="prior", choices=["prior", "network"],
                   help="which iterations of a preset with a prior stage to time")
    p.add_argument("--json", help="also write the rows as JSON here")
    p.add_argument("--_one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._one:
        size, batch, device = args._one.split(",")
        print(json.dumps(_one(int(size), int(batch), device, args.iterations, args.preset, args.stage)))
        return 0
    devices = args.devices
    if devices is None:
        import torch

        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    print("| device | size | batch | ms / iteration | ms / slice-iteration | peak RSS (MB) | peak GPU (MB) |")
    print("|---|---|---|---|---|---|---|")
    for device in devices:
        for size in args.sizes:
            for batch in args.batches:
                cmd = [sys.executable, __file__, "--_one", f"{size},{batch},{device}",
                       "--iterations", str(args.iterations), "--preset", args.preset,
                       "--stage", args.stage]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    print(f"| {device} | {size} | {batch} | failed: {res.stderr.strip().splitlines()[-1]} |||")
                    continue
                row = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append(row)
                gpu = f"{row['peak_gpu_mb']:.0f}" if "peak_gpu_mb" in row else "-"
                name = row.get("gpu", f"cpu ({row['threads']} threads)")
                print(f"| {name} | {size} | {batch} | {row['ms_per_iteration']:.1f} | "
                      f"{row['ms_per_slice_iteration']:.1f} | {row['peak_rss_mb']:.0f} | {gpu} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
