"""This project's paper GAN side by side with the authors' TensorFlow GANrec, on the same CPU.

For each sinogram size and thread count, the two implementations run in turns (ours, theirs, ours,
theirs, ...; ``--repeats`` runs each), every run in a fresh subprocess so that its thread settings
are its own and cannot leak into the next. Each run reconstructs the same sinogram (a porous
particle simulated on a 3x finer grid, 120 projections over 0-180 degrees) for ``--iterations``
iterations and records the time between consecutive iterations: the first one (with the authors'
code it includes tracing the ``tf.function``) is the *first step*; the median of the others is the
*ms per iteration*. The table gives the medians over all runs, the ratio ours / authors', the load
average during the runs, and the SSIM of the final image (``napari_ganrec.evaluation.ssim``: ``g =
gt / gt.max()``, ``r = clip(rec / gt.max(), 0, 1)``, inside the reconstruction circle); run ``r``
uses seed ``r`` in both implementations, so the SSIM column also shows the seed spread.

The authors' output is a normalised image in their own orientation: it is mapped onto this
project's geometry by the one of the 8 flips/rotations whose projection (with this project's
projector) best fits the sinogram, and scaled by the least-squares factor that makes its projection
match the data (what this project does with its own normalised candidate). Nothing about the ground
truth enters that choice.

The authors' code (``ganrec`` 0.3.0, TensorFlow) is run only when it is importable; this script
installs nothing. To install it without touching the main environment::

    python -m venv --system-site-packages ~/venv-tf
    ~/venv-tf/bin/pip install tensorflow-cpu
    ~/venv-tf/bin/pip install --no-deps ganrec tqdm ipython matplotlib
    ~/venv-tf/bin/python benchmarks/reference.py

Examples::

    python benchmarks/reference.py                                  # 128 and 256 px, 1 and 2 threads
    python benchmarks/reference.py --sizes 128 --threads 1 --iterations 50 --repeats 3
    python benchmarks/reference.py --sizes 128 --threads 1 2 --busy 2 --iterations 30   # beside 2 busy processes
    python benchmarks/reference.py --threads auto --busy 2           # threads chosen by napari_ganrec.threads
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: How this project's paper GAN is selected (the GAN alone, at every iteration: napari_ganrec.methods).
OURS = {"method": "ganrec"}

#: The authors' defaults (``ganrectf/config.json``), kept, except the live plot.
AUTHORS = {"recon_monitor": False}

INSTALL_HINT = (
    "the authors' TensorFlow GANrec is not importable here; to compare with it, install it in a "
    "separate environment:\n"
    "    python -m venv --system-site-packages ~/venv-tf\n"
    "    ~/venv-tf/bin/pip install tensorflow-cpu\n"
    "    ~/venv-tf/bin/pip install --no-deps ganrec tqdm ipython matplotlib\n"
    "and run this script with ~/venv-tf/bin/python"
)

IMPLEMENTATIONS = ("ours", "authors")


def authors_available() -> bool:
    """True when the authors' ``ganrectf`` (and TensorFlow) can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "ganrectf"))


def make_case(size: int, n_angles: int = 120, arc: float = 180.0, seed: int = 1):
    """``(sinogram, angles in degrees, ground truth)`` of a porous particle, simulated 3x finer."""
    import numpy as np

    from napari_ganrec.phantoms import ground_truth, porous_particle, simulate_sinogram

    phantom = porous_particle(size, seed=seed)
    angles = np.linspace(0.0, arc, n_angles, endpoint=False)
    return simulate_sinogram(phantom, angles, factor=3), angles, ground_truth(phantom)


def _set_threads(threads: int) -> None:
    """Environment of a worker, before torch or TensorFlow is imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _now() -> tuple[float, float]:
    """Wall-clock and process CPU time (all threads): CPU time is what load does not inflate."""
    return time.perf_counter(), time.process_time()


def _intervals(stamps) -> list[tuple[float, float]]:
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps, stamps[1:])]


def run_ours(sino, angles, iterations: int, seed: int, device: str = "cpu"):
    """This project's paper GAN through the public API: ``(seconds between iterations, image)``."""
    import napari_ganrec as ng

    stamps = [_now()]
    image = None
    for step in ng.iter_reconstruct(sino, angles, iterations=iterations, device=device, seed=seed,
                                    preview_every=iterations, **OURS):
        stamps.append(_now())
        if step.image is not None:
            image = step.image
    return _intervals(stamps), image


def run_authors(sino, angles, iterations: int, seed: int, threads: int):
    """The authors' ``GANtomo(...).recon()``: ``(seconds between iterations, image as returned)``.

    Their loop is run as published; each of its calls of ``recon_step`` is time-stamped (after the
    step's losses are on the host, which their loop needs anyway), so the intervals include their
    per-iteration bookkeeping (EMA of the weights, checks).
    """
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.keras.utils.set_random_seed(seed)
    from ganrectf.ganrec import GANtomo

    stamps = [_now()]
    gan = GANtomo(np.asarray(sino, np.float32), np.deg2rad(angles).astype(np.float32),
                  iter_num=iterations, **AUTHORS)
    step_fn = gan.recon_step

    def timed_step(prj, ang):
        out = step_fn(prj, ang)
        out["g_loss"].numpy()
        stamps.append(_now())
        return out

    gan.recon_step = timed_step
    image = gan.recon()
    return _intervals(stamps), np.asarray(image, np.float32)


def align_to_data(image, sino, angles):
    """The authors' image in this project's orientation and units, chosen from the data alone.

    Of the 8 flips/rotations of ``image``, the one whose projection, scaled by its least-squares
    factor, best fits ``sino``; returned with that factor applied.
    """
    import numpy as np
    import torch

    from napari_ganrec.geometry import Geometry, circle_mask
    from napari_ganrec.projector import Projector

    n = sino.shape[-1]
    proj = Projector(Geometry.create(angles, n), device="cpu")
    b = torch.from_numpy(np.ascontiguousarray(sino, np.float32))
    mask = circle_mask(n)
    best = None
    for k in range(4):
        for flip in (False, True):
            cand = np.rot90(image, k)
            cand = np.ascontiguousarray(cand[:, ::-1] if flip else cand) * mask
            with torch.no_grad():
                ac = proj.forward(torch.from_numpy(cand.astype(np.float32)))
            scale = float((ac * b).sum() / (ac * ac).sum().clamp(min=1e-20))
            err = float(torch.linalg.vector_norm(scale * ac - b))
            if best is None or err < best[0]:
                best = (err, scale * cand)
    return best[1].astype(np.float32)


def worker(impl: str, size: int, threads: int | str, iterations: int, seed: int, device: str = "cpu") -> dict:
    """One run in this process (a fresh subprocess of :func:`main`)."""
    if threads != "auto":
        _set_threads(int(threads))
    importlib.import_module("napari_ganrec")  # before torch, as in a user's program (OpenMP settings)
    import numpy as np
    import torch

    from napari_ganrec.evaluation import ssim

    if threads == "auto":
        from napari_ganrec.threads import configure_threads

        configure_threads()
    else:
        torch.set_num_threads(int(threads))
    sino, angles, truth = make_case(size)
    load0 = os.getloadavg()[0]
    if impl == "ours":
        times, image = run_ours(sino, angles, iterations, seed, device)
    else:
        times, image = run_authors(sino, angles, iterations, seed, int(torch.get_num_threads()))
        image = align_to_data(image, sino, angles)
    rest = times[1:] or times
    return {
        "impl": impl, "size": size, "threads": threads, "torch_threads": torch.get_num_threads(),
        "iterations": iterations, "seed": seed, "device": device if impl == "ours" else "cpu",
        "first_step_s": times[0][0],
        "ms_per_iteration": 1000 * float(np.median([w for w, _ in rest])),
        "cpu_ms_per_iteration": 1000 * float(np.median([c for _, c in rest])), "ssim": ssim(truth, image),
        "finite": bool(np.isfinite(image).all()), "load": [load0, os.getloadavg()[0]],
    }


def _spawn(impl, size, threads, iterations, seed, device="cpu") -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker",
           f"{impl},{size},{threads},{iterations},{seed},{device}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        lines = res.stderr.strip().splitlines() or ["?"]
        return {"impl": impl, "size": size, "threads": threads, "error": lines[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def start_busy(count: int) -> list[subprocess.Popen]:
    """``count`` processes that spin (``while True: pass``) until :func:`stop_busy`."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def summarise(rows: list[dict]) -> list[dict]:
    """One line per (size, threads): medians of both implementations and their ratios."""
    out = []
    keys = sorted({(r["size"], str(r["threads"])) for r in rows})
    for size, threads in keys:
        line = {"size": size, "threads": threads}
        for impl in IMPLEMENTATIONS:
            mine = [r for r in rows if r["size"] == size and str(r["threads"]) == threads
                    and r["impl"] == impl and "error" not in r]
            if mine:
                line[impl] = {
                    "ms": statistics.median(r["ms_per_iteration"] for r in mine),
                    "cpu_ms": statistics.median(r["cpu_ms_per_iteration"] for r in mine),
                    "first_s": statistics.median(r["first_step_s"] for r in mine),
                    "ssim": [r["ssim"] for r in mine],
                    "runs": len(mine),
                    "torch_threads": sorted({r["torch_threads"] for r in mine}),
                    "load": (min(min(r["load"]) for r in mine), max(max(r["load"]) for r in mine)),
                }
        if "ours" in line and "authors" in line:
            line["ratio"] = line["ours"]["ms"] / line["authors"]["ms"]
            line["cpu_ratio"] = line["ours"]["cpu_ms"] / line["authors"]["cpu_ms"]
        out.append(line)
    return out


def _fmt_ssim(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def print_table(summary: list[dict], iterations: int, busy: int) -> None:
    """The side-by-side table (markdown)."""
    print(f"\n| size | threads | ours ms/it | authors' ms/it | ratio | ours CPU ms/it | authors' CPU ms/it "
          f"| CPU ratio | ours first step s | authors' first step s | ours SSIM @{iterations} "
          f"| authors' SSIM @{iterations} | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for line in summary:
        o, a = line.get("ours"), line.get("authors")
        loads = [x["load"] for x in (o, a) if x]
        load = f"{min(lo for lo, _ in loads):.1f}-{max(hi for _, hi in loads):.1f}"
        threads = line["threads"]
        if threads == "auto" and o:
            threads += f" (= {', '.join(map(str, o['torch_threads']))})"

        def cell(x, key, fmt):
            return format(x[key], fmt) if x else "-"

        cells = [str(line["size"]), threads, cell(o, "ms", ".0f"), cell(a, "ms", ".0f"),
                 format(line["ratio"], ".2f") if "ratio" in line else "-",
                 cell(o, "cpu_ms", ".0f"), cell(a, "cpu_ms", ".0f"),
                 format(line["cpu_ratio"], ".2f") if "cpu_ratio" in line else "-",
                 cell(o, "first_s", ".2f"), cell(a, "first_s", ".2f"),
                 _fmt_ssim(o["ssim"]) if o else "-", _fmt_ssim(a["ssim"]) if a else "-", load]
        print("| " + " | ".join(cells) + " |")
    print("\nms/it: wall-clock median; CPU ms/it: process CPU time (all threads) per iteration, which the "
          "machine's other load does not inflate; first step: from the call to the end of the first "
          "iteration (model and projector set-up, tracing).")
    if busy:
        print(f"Beside {busy} busy process{'es' if busy > 1 else ''} (`while True: pass`).")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--threads", nargs="+", default=["1", "2"],
                   help="thread counts (each run in its own process); 'auto': napari_ganrec.threads chooses")
    p.add_argument("--iterations", type=int, default=1000, help="iterations per run (SSIM at the end)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each implementation (seeds 0, 1, ...)")
    p.add_argument("--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    p.add_argument("--busy", type=int, default=0, help="spinning processes beside the runs")
    p.add_argument("--device", default="cpu", help="device of this project's runs (the authors' run on the CPU)")
    p.add_argument("--json", help="also write the runs as JSON here")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        impl, size, threads, iterations, seed, *device = args._worker.split(",")
        print(json.dumps(worker(impl, int(size), threads, int(iterations), int(seed), *device)))
        return 0
    for t in args.threads:
        if t != "auto" and (not t.isdigit() or int(t) < 1):
            p.error(f"--threads takes positive integers or 'auto', got {t!r}")
    impls = list(args.impls)
    if "authors" in impls and not authors_available():
        print(INSTALL_HINT + "\n(running this project's GAN only)\n", file=sys.stderr)
        impls.remove("authors")
    busy = start_busy(args.busy)
    rows = []
    try:
        for size in args.sizes:
            for threads in args.threads:
                for rep in range(args.repeats):
                    for impl in (impls if rep % 2 == 0 else impls[::-1]):  # alternate who goes first
                        row = _spawn(impl, size, threads, args.iterations, rep, args.device)
                        row["uptime"] = _uptime()
                        rows.append(row)
                        _print_row(row)
    finally:
        stop_busy(busy)
    print_table(summarise(rows), args.iterations, args.busy)
    print(f"\nuptime at the end: {_uptime()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


def _uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


def _print_row(row: dict) -> None:
    if "error" in row:
        print(f"{row['impl']:8s} {row['size']} px, {row['threads']} thread(s): failed: {row['error']}",
              flush=True)
        return
    print(f"{row['impl']:8s} {row['size']} px, {row['threads']} thread(s), seed {row['seed']}: "
          f"{row['ms_per_iteration']:.0f} ms/it (CPU {row['cpu_ms_per_iteration']:.0f} ms/it), "
          f"first step {row['first_step_s']:.2f} s, SSIM {row['ssim']:.3f} ({row['uptime']})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
