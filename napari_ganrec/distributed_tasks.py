"""The worker side of :func:`napari_ganrec.distributed.run_distributed`: the seed and slab tasks
(plain, picklable arguments; each reconstructs its slices, writes them into the Zarr store and drops
its done-marker) and the loop that submits them to a Dask cluster.

The driver (option checks, the resumable bookkeeping, assembly) stays in
:mod:`napari_ganrec.distributed`, which is the public entry point.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from pathlib import Path

from .io._common import atomic_write_bytes
from .io.zarr_store import write_slices
from .volume import iter_volume

__all__: list[str] = []


# ---------------------------------------------------------------------------------------------
# tasks (run on the workers; plain, picklable arguments)
def _pick_device(device: str) -> str:
    """``"auto"`` on a worker of a multi-GPU machine: one GPU per worker, by the worker's name."""
    if device != "auto":
        return device
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count <= 1:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
        digest = hashlib.md5(str(name).encode()).hexdigest()
        index = int(name) if str(name).isdigit() else int(digest, 16)
    except (ImportError, ValueError):
        index = os.getpid()
    return f"cuda:{index % count}"


class _Threads:
    """Torch intra-op threads for the duration of a task (restored after: a task may run in the
    caller's process)."""

    def __init__(self, threads: int | None):
        self.threads = threads
        self.previous = None

    def __enter__(self):
        if self.threads:
            import torch

            self.previous = torch.get_num_threads()
            torch.set_num_threads(int(self.threads))
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            import torch

            torch.set_num_threads(self.previous)


def _seed_task(spec: dict) -> str:
    """Reconstruct the first slice cold; save every stage's state and the slice; returns the path.

    The slab that holds this slice takes the slice from the seed instead of reconstructing it
    again (:func:`_slab_task`), so it is reconstructed once.
    """
    import torch

    path = Path(spec["seed_path"])
    if path.exists():
        return str(path)
    kwargs = dict(spec["volume_kwargs"])
    kwargs["device"] = _pick_device(kwargs.get("device", "auto"))
    states: list = []
    images = None
    a = spec["start"]
    with _Threads(spec.get("threads")):
        for rec in iter_volume(spec["source"], spec["angles"], rows=(a, a + 1), batch=1,
                               warm_start=True, state_out=states, progress_every=None, **kwargs):
            if rec.finished:
                images = rec.images
    buf = io.BytesIO()
    torch.save({"state": states[-1], "row": a, "image": images[0]}, buf)
    atomic_write_bytes(path, buf.getvalue())
    spec["source"].close()
    return str(path)


def _slab_task(spec: dict, seed_path: str | None = None) -> dict:
    """Reconstruct one slab, write its slices into the Zarr store, then its done-marker."""
    import torch

    marker = Path(spec["marker"])
    if marker.exists():
        return json.loads(marker.read_text()) | {"skipped": True}
    t0 = time.perf_counter()
    kwargs = dict(spec["volume_kwargs"])
    kwargs["device"] = _pick_device(kwargs.get("device", "auto"))
    offset = spec["offset"]
    a, b = spec["start"], spec["stop"]
    first = a
    if seed_path is not None:
        seed = torch.load(seed_path, weights_only=False)
        kwargs["warm_start"] = seed["state"]
        kwargs["first_iterations"] = spec["restart_iterations"]
        if seed["row"] == a:  # the seed is this slab's first slice: taken, not made again
            write_slices(spec["store"], a - offset, seed["image"][None])
            first = a + 1
            kwargs["first_iterations"] = kwargs.get("warm_iterations")
    iterations = 0
    with _Threads(spec.get("threads")):
        if first < b:
            for rec in iter_volume(spec["source"], spec["angles"], rows=(first, b), progress_every=None,
                                   **kwargs):
                if rec.finished:
                    write_slices(spec["store"], rec.indices[0] - offset, rec.images)
                    iterations += rec.iteration * len(rec.indices)
    spec["source"].close()
    worker = ""
    try:
        from distributed import get_worker

        worker = str(get_worker().address)
    except (ImportError, ValueError):
        worker = "local"
    info = {"start": a, "stop": b, "seconds": time.perf_counter() - t0, "iterations": iterations,
            "worker": worker}
    atomic_write_bytes(marker, json.dumps(info).encode())
    return info | {"skipped": False}


# ---------------------------------------------------------------------------------------------
# submitting the tasks to Dask
def _default_workers() -> int:
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover
        count = 0
    return count if count > 1 else 1


def _run_on_dask(todo, spec_for, seed_spec, workers, scheduler, threads_per_worker, report):
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    own_client = True
    if scheduler is not None:
        if isinstance(scheduler, Client):
            client, own_client = scheduler, False
        else:
            client = Client(scheduler)
        threads = threads_per_worker
    else:
        n = workers if workers is not None else _default_workers()
        threads = threads_per_worker or max(1, (os.cpu_count() or 1) // n)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    futures = []
    try:
        seed = None
        if seed_spec is not None:
            seed_spec = dict(seed_spec, threads=threads)
            seed = client.submit(_seed_task, seed_spec, pure=False,
                                 key=f"ganrec-seed-{os.getpid()}-{time.time_ns()}")
        for a, b in todo:
            futures.append(client.submit(_slab_task, spec_for(a, b, threads), seed, pure=False,
                                         key=f"ganrec-slab-{a}-{b}-{time.time_ns()}"))
        for fut in as_completed(futures):
            report(fut.result())
    finally:
        for fut in futures:
            fut.cancel()
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()

