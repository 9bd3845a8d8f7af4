"""Dask slab tasks, resumable chunked output and atomic assembly (napari_ganrec.distributed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_ganrec.distributed import assemble, run_distributed
from napari_ganrec.geometry import angles_from_range
from napari_ganrec.phantoms import porous_particle, simulate_projections
from napari_ganrec.volume import NpySource

N, NZ, A = 32, 8, 32
# threads_per_worker=1 everywhere: results depend on torch's thread count (summation order), not
# on the number of workers.
RUN = dict(slab_size=2, method="rwtv+ganrec", iterations={"rwtv": 20, "ganrec": 4}, warm_iterations=3,
           ganrec={"channels": 8, "n_conv": 3, "dropout": 0.0}, device="cpu", threads_per_worker=1)


@pytest.fixture(scope="module")
def data():
    angles = angles_from_range(0, 180, A)
    phantom = porous_particle(N, nz=NZ, n_pores=6, n_inclusions=1, seed=5)
    sinos = np.ascontiguousarray(simulate_projections(phantom, angles, factor=1).transpose(1, 0, 2))
    return sinos, angles, phantom.rasterize()


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """The in-process (no Dask) result, which every worker count must reproduce."""
    sinos, angles, _ = data
    out = tmp_path_factory.mktemp("ref") / "ref.tif"
    records = []
    run_distributed(sinos, out, angles, workers=0, progress=records.append, **RUN)
    assert not out.with_name("ref.tif.parts").exists()  # work folder removed after assembly
    return tifffile.imread(out), records


def test_in_process_run(data, reference):
    _, _, truth = data
    vol, records = reference
    assert vol.shape == (NZ, N, N) and vol.dtype == np.float32
    assert sorted((r.start, r.stop) for r in records) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert records[-1].done == NZ and not any(r.skipped for r in records)
    # seed state: each task's first slice gets restart_iterations (3 + 3), the next warm (3 + 3); the
    # first task takes its first slice from the seed instead of reconstructing it again
    by_start = {r.start: r.iterations for r in records}
    assert by_start == {0: 6, 2: 12, 4: 12, 6: 12}
    err = np.sqrt(np.mean((vol - truth) ** 2) / np.mean(truth**2))
    assert err < 0.7


def test_two_workers_equal_one_worker(data, reference, tmp_path):
    sinos, angles, _ = data
    ref, _ = reference
    results = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.h5"
        records = []
        run_distributed(sinos, out, angles, workers=workers, progress=records.append, **RUN)
        import h5py

        with h5py.File(out, "r") as fh:
            results[workers] = fh["volume"][()]
            meta = json.loads(fh["volume"].attrs["napari_ganrec"])
        assert meta["slab_size"] == 2 and meta["iterations"] == {"rwtv": 20, "ganrec": 4}
        assert len(records) == 4 and records[-1].done == NZ
    np.testing.assert_allclose(results[2], results[1], atol=1e-4 * np.abs(ref).max())
    np.testing.assert_allclose(results[1], ref, atol=1e-4 * np.abs(ref).max())


def test_killed_run_resumes(data, reference, tmp_path):
    sinos, angles, _ = data
    ref, _ = reference
    np.save(tmp_path / "sinos.npy", sinos)
    np.save(tmp_path / "angles.npy", angles)
    out = tmp_path / "vol.tif"
    # a run on 2 workers in its own process group, killed (SIGKILL) once the first slab is done
    script = textwrap.dedent(f"""
        import numpy as np
        from napari_ganrec.distributed import run_distributed
        from napari_ganrec.volume import NpySource
        if __name__ == "__main__":
            run_distributed(NpySource({str(tmp_path / "sinos.npy")!r}), {str(out)!r},
                            np.load({str(tmp_path / "angles.npy")!r}), workers=2, **{RUN!r})
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done_dir = tmp_path / "vol.tif.parts" / "done"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if done_dir.exists() and any(done_dir.glob("slab_*.json")):
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this test started: run + workers
        proc.wait(timeout=30)
    finished = sorted(done_dir.glob("slab_*.json"))
    assert finished, "the first run finished no slab before the deadline"
    assert not out.exists()
    if len(finished) == 4:
        pytest.skip("the first run finished every slab before it could be killed")
    records = []
    run_distributed(NpySource(tmp_path / "sinos.npy"), out, angles, workers=0,
                    progress=records.append,
                    **RUN)
    skipped = [(r.start, r.stop) for r in records if r.skipped]
    assert len(skipped) == len(finished) >= 1
    assert len(records) == 4 and records[-1].done == NZ
    np.testing.assert_allclose(tifffile.imread(out), ref, atol=1e-4 * np.abs(ref).max())


def test_refuses_to_mix_or_overwrite(data, tmp_path):
    sinos, angles, _ = data
    out = tmp_path / "v.npy"
    kw = dict(RUN, rows=(0, 4), iterations=4, warm_iterations=2, keep_parts=True, workers=0)
    kw["iterations"] = {"rwtv": 4, "ganrec": 2}
    run_distributed(sinos, out, angles, **kw)
    first = np.load(out)
    assert first.shape == (4, N, N)
    with pytest.raises(FileExistsError, match="overwrite"):
        run_distributed(sinos, out, angles, **kw)
    # same parameters, overwrite: every slab is found done, nothing recomputed
    records = []
    run_distributed(sinos, out, angles, overwrite=True, progress=records.append, **kw)
    assert all(r.skipped for r in records)
    np.testing.assert_array_equal(np.load(out), first)
    # other parameters in the same work folder are refused rather than mixed
    out.unlink()
    with pytest.raises(ValueError, match="other parameters"):
        run_distributed(sinos, out, angles, **dict(kw, iterations={"rwtv": 5, "ganrec": 2}))
    with pytest.raises(ValueError, match="other parameters"):
        run_distributed(sinos * 2, out, angles, **kw)


def test_zarr_output_and_bad_arguments(data, tmp_path):
    import zarr

    sinos, angles, _ = data
    out = tmp_path / "v.zarr"
    run_distributed(sinos, out, angles, method="fbp", slab_size=3, workers=0, device="cpu")
    vol = np.asarray(zarr.open_array(str(out), mode="r")[:])
    import napari_ganrec as ng

    np.testing.assert_allclose(vol, ng.reconstruct(sinos, angles, method="fbp", device="cpu"),
                               rtol=1e-5, atol=1e-5)
    assert not (tmp_path / "v.zarr.parts").exists()
    with pytest.raises(ValueError, match="out_path"):
        run_distributed(sinos, tmp_path / "v.png", angles, workers=0)
    with pytest.raises(ValueError, match="workers"):
        run_distributed(sinos, tmp_path / "a.tif", angles, workers=-1)
    with pytest.raises(ValueError, match="slab_size"):
        run_distributed(sinos, tmp_path / "a.tif", angles, slab_size=0, workers=0)
    with pytest.raises(ValueError, match="batch_mode"):
        run_distributed(sinos, tmp_path / "a.tif", angles, batch_mode="x", workers=0)

    class Unpicklable:
        n_rows = NZ
        angles = None

        def __init__(self):
            self.lock = __import__("threading").Lock()

        def sinograms(self, rows):
            return sinos[rows]

    with pytest.raises(ValueError, match="cannot be sent"):
        run_distributed(Unpicklable(), tmp_path / "a.tif", angles, workers=0)


def test_assemble_is_atomic_and_refuses_existing(tmp_path):
    import zarr

    store = tmp_path / "s.zarr"
    arr = zarr.open_array(str(store), mode="w-", shape=(5, 4, 4), chunks=(1, 4, 4), dtype="float32")
    arr[:] = np.arange(80, dtype=np.float32).reshape(5, 4, 4)
    out = assemble(store, tmp_path / "o.tif", chunk=2)
    np.testing.assert_array_equal(tifffile.imread(out), arr[:])
    with pytest.raises(FileExistsError):
        assemble(store, out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


class RowLoader:
    """A picklable lazy loader that records the rows each read asked for."""

    def __init__(self, sinos, angles, log):
        self._sinos, self.angles, self.n_rows, self.log = sinos, angles, sinos.shape[0], log

    def sinograms(self, rows):
        a, b, _ = rows.indices(self.n_rows)
        self.log.append((a, b))
        return self._sinos[a:b]


def test_tasks_read_only_their_slab(data, tmp_path):
    sinos, angles, _ = data
    log: list = []
    run_distributed(RowLoader(sinos, None, log), tmp_path / "v.npy", angles, rows=(1, 8),
                    method="sirt", iterations=3, slab_size=3, batch=2, workers=0, device="cpu")
    reads = sorted(set(log) - {(0, 1)})  # (0, 1): the shape probe
    # the seed task reads row 1; the first task takes that slice from the seed and reads on from 2
    assert reads == [(1, 2), (2, 4), (4, 6), (6, 7), (7, 8)]
    assert max(b - a for a, b in log) <= 2  # never more than one batch in memory from the input


def test_the_first_slice_is_reconstructed_once(data, tmp_path, monkeypatch):
    """With more than one slab, the seed task reconstructs the first slice and the slab holding it
    takes it from the seed: counted by the slabs the engine runs."""
    import napari_ganrec.engine as engine

    sinos, angles, _ = data
    ran: list = []
    original = engine.run

    def counting(source, rows, *args, **kwargs):
        for rec in original(source, rows, *args, **kwargs):
            if rec.finished:  # slices the engine reconstructed (not merely asked for, as a check)
                ran.extend(rec.indices)
            yield rec

    monkeypatch.setattr(engine, "run", counting)
    out = run_distributed(sinos, tmp_path / "v.npy", angles, rows=(1, 7), method="rwtv", iterations=10,
                          warm_iterations=4, slab_size=2, workers=0, device="cpu")
    assert sorted(ran) == list(range(1, 7)) and ran[0] == 1
    vol = np.load(out)
    assert vol.shape == (6, N, N) and np.abs(vol[0]).max() > 0  # the seed slice is in the output


def test_path_input_through_read_tomo(data, tmp_path):
    """A file path (what the CLI passes) is opened with napari_ganrec.io.read_tomo on the worker."""
    pytest.importorskip("napari_ganrec.io")
    sinos, angles, _ = data
    path = tmp_path / "proj.tif"
    # a transmission projection stack (angles, rows, det): read_tomo's -log gives sinos back
    tifffile.imwrite(path, np.exp(-sinos.transpose(1, 0, 2) / 10).astype(np.float32))
    out = run_distributed(str(path), tmp_path / "v.tif", angles, method="fbp", slab_size=3,
                          workers=0, device="cpu")
    import napari_ganrec as ng

    ref = ng.reconstruct(sinos / 10, angles, method="fbp", device="cpu")
    np.testing.assert_allclose(tifffile.imread(out), ref, atol=1e-4 * np.abs(ref).max())
