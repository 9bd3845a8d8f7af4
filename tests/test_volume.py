"""Slice-by-slice volumes: warm start, batching, early stopping, lazy input (napari_ganrec.volume)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_ganrec.geometry import Geometry, angles_from_range
from napari_ganrec.methods.ganrec import GANrec, GANrecConfig
from napari_ganrec.phantoms import porous_particle, simulate_projections
from napari_ganrec.projector import Projector
from napari_ganrec.volume import (
    NpySource,
    VolumeProgress,
    as_source,
    iter_volume,
    reconstruct_volume,
    slab_ranges,
)
from napari_ganrec.volume.stacked import StackedGANrec

N, NZ, A = 32, 6, 32
SMALL = dict(channels=8, n_conv=3, dropout=0.0)  # a small GANrec: deterministic, quick on the CPU
FAST = dict(method="ganrec", device="cpu", seed=0, **SMALL)


@pytest.fixture(scope="module")
def data():
    angles = angles_from_range(0, 180, A)
    phantom = porous_particle(N, nz=NZ, n_pores=6, n_inclusions=1, seed=3)
    truth = phantom.rasterize()
    sinos = np.ascontiguousarray(simulate_projections(phantom, angles, factor=1).transpose(1, 0, 2))
    return sinos, angles, truth


@pytest.fixture(scope="module")
def similar():
    """Six similar slices of a limited-angle scan (0-120 degrees): one section, its contrast
    drifting by 2% a slice, with a little noise of its own in each sinogram."""
    from napari_ganrec import phantoms

    angles = angles_from_range(0, 120, 40)
    ph = phantoms.porous_particle(N, seed=2)
    gt = phantoms.ground_truth(ph)
    sino = phantoms.simulate_sinogram(ph, angles)
    rng = np.random.default_rng(0)
    scale = 1 + 0.02 * np.arange(NZ)
    sinos = np.stack([s * sino + 0.005 * sino.max() * rng.standard_normal(sino.shape) for s in scale])
    return sinos.astype(np.float32), angles, scale[:, None, None] * gt[None]


def rel_err(vol, truth):
    return float(np.sqrt(np.mean((vol - truth) ** 2) / np.mean(truth**2)))


class RowLoader:
    """A lazy loader in the shape of napari_ganrec.io.TomoData: records every row range read."""

    def __init__(self, sinos, angles):
        self._sinos = sinos
        self.angles = angles
        self.n_rows = sinos.shape[0]
        self.reads: list[tuple[int, int]] = []

    def sinograms(self, rows=slice(None)):
        a, b, _ = rows.indices(self.n_rows)
        self.reads.append((a, b))
        return self._sinos[a:b].copy()


def test_slab_ranges():
    assert slab_ranges(2, 9, 3) == [(2, 5), (5, 8), (8, 9)]
    assert slab_ranges(0, 2, 5) == [(0, 2)]
    with pytest.raises(ValueError, match="slab size"):
        slab_ranges(0, 4, 0)


@pytest.mark.parametrize("method", ["rwtv", "rwtv+ganrec"])
def test_warm_start_beats_cold_at_equal_iterations_per_slice(similar, method, monkeypatch):
    """Warm start carries every stage's state: at 30 reweighted-TV iterations, similar slices that
    start from their neighbour's states beat slices that start from scratch, alone and as the
    first stage of a chain (which earlier restarted from zero). The chain's GANrec stage gets 2
    iterations, so the comparison is about the first stage; each later slab loads both states."""
    sinos, angles, truth = similar
    loads = {"rwtv": 0, "ganrec": 0}
    from napari_ganrec.methods.rwtv import RWTV

    for cls in (RWTV, GANrec):
        original = cls.load_state

        def counted(self, state, _orig=original):
            loads[self.name] += 1
            return _orig(self, state)

        monkeypatch.setattr(cls, "load_state", counted)
    chain = "+" in method
    first = {"rwtv": 300, "ganrec": 2} if chain else 300
    later = {"rwtv": 30, "ganrec": 2} if chain else 30
    opts = dict(device="cpu", seed=0, method=method, **(SMALL if chain else {}))
    records = []
    warm = reconstruct_volume(sinos, angles, iterations=first, warm_iterations=later,
                              progress=records.append, **opts)
    assert loads == {"rwtv": NZ - 1, "ganrec": (NZ - 1) if chain else 0}
    cold = reconstruct_volume(sinos, angles, iterations=later, warm_start=False, **opts)
    assert warm.shape == (NZ, N, N) and warm.dtype == np.float32
    # the first slab gets the full count, later ones the warm count, and they come in order
    assert [r.iteration for r in records] == [302 if chain else 300] + [32 if chain else 30] * (NZ - 1)
    assert [r.indices for r in records] == [(i,) for i in range(NZ)]
    assert [r.warm for r in records] == [False] + [True] * (NZ - 1)
    assert records[-1].done == NZ and records[-1].fraction == 1.0
    e_warm, e_cold = rel_err(warm[1:], truth[1:]), rel_err(cold[1:], truth[1:])
    assert e_warm < 0.8 * e_cold, (e_warm, e_cold)
    # quantitative: the mean over the volume is on the phantom's scale
    assert abs(warm.mean() / truth.mean() - 1) < 0.25


def test_a_warm_chain_slab_differs_from_a_cold_one(data):
    """The bug this guards: a warm slab of a chain whose first stage restarted from zero equalled
    a cold run of the same length exactly."""
    sinos, angles, _ = data
    opts = dict(method="rwtv+ganrec", device="cpu", seed=0, **SMALL)
    warm = reconstruct_volume(sinos, angles, rows=(0, 2), iterations=20, warm_iterations=20, **opts)
    cold = reconstruct_volume(sinos, angles, rows=(1, 2), iterations=20, **opts)
    assert np.abs(warm[1] - cold[0]).max() > 1e-3 * np.abs(cold).max()
    states = []
    reconstruct_volume(sinos, angles, rows=(0, 1), iterations=5, state_out=states, **opts)
    assert set(states[0]) == {"rwtv", "ganrec"} and {"x", "y1", "y2", "w"} <= set(states[0]["rwtv"])


@pytest.mark.parametrize("mode", ["shared", "independent"])
def test_batched_slabs(data, mode):
    sinos, angles, truth = data
    records = [r for r in iter_volume(sinos, angles, iterations=40, warm_iterations=15, batch=4,
                                      batch_mode=mode, progress_every=None, **FAST)]
    assert [r.indices for r in records] == [(0, 1, 2, 3), (4, 5)]
    assert all(r.finished for r in records)
    vol = np.concatenate([r.images for r in records])
    assert vol.shape == (NZ, N, N)
    assert rel_err(vol, truth) < 0.7


def test_independent_stack_equals_separate_solvers(data):
    """Stacked networks do the arithmetic of separate runs (no dropout: deterministic)."""
    sinos, angles, _ = data
    cfg = GANrecConfig(**SMALL)
    proj = Projector(Geometry.create(angles, N))
    pair = torch.from_numpy(sinos[2:4])
    stacked = StackedGANrec(proj, pair, cfg, seed=1)
    singles = [GANrec(proj, pair[i:i + 1], cfg, seed=1) for i in range(2)]
    for _ in range(8):
        stacked.step()
        for s in singles:
            s.step()
    a = stacked.image().numpy()
    b = np.concatenate([s.image().numpy() for s in singles])
    assert np.abs(a - b).max() < 2e-3 * np.abs(b).max()
    # its state is one network (the last slice's), which warm-starts a plain solver
    state = stacked.state()
    assert state["stage"] == "ganrec"
    ref = singles[1].state()
    for key, value in ref["generator"].items():
        assert state["generator"][key].shape == value.shape
        if key != "last.bias":  # the candidate's normalisation leaves this one gradient ~0 (noise)
            assert torch.allclose(state["generator"][key], value, atol=1e-4), key
    plain = GANrec(proj, pair[:1], cfg)
    plain.load_state(state)
    plain.step()


def test_early_stop(data):
    sinos, angles, _ = data
    never = list(iter_volume(sinos, angles, rows=(0, 3), iterations=30, warm_iterations=30,
                             progress_every=None, **FAST))
    assert [r.iteration for r in never] == [30, 30, 30] and not any(r.converged for r in never)
    early = list(iter_volume(sinos, angles, rows=(0, 3), iterations=30, warm_iterations=30,
                             tol=0.5, window=4, progress_every=None, **FAST))
    its = [r.iteration for r in early]
    assert all(8 <= i < 30 for i in its), its
    assert all(r.converged for r in early)


def test_progress_records_and_close(data):
    sinos, angles, _ = data
    gen = iter_volume(sinos, angles, rows=slice(1, 3), iterations=10, warm_iterations=4,
                      progress_every=3, preview=True, **FAST)
    recs = list(gen)
    assert all(isinstance(r, VolumeProgress) for r in recs)
    assert [(r.iteration, r.finished) for r in recs] == [(3, False), (6, False), (9, False),
                                                         (10, True), (3, False), (4, True)]
    assert recs[0].images.shape == (1, N, N)  # preview
    assert recs[1].positions == (0,) and recs[-1].positions == (1,) and recs[-1].indices == (2,)
    gen = iter_volume(sinos, angles, iterations=50, progress_every=2, **FAST)
    first = next(gen)
    assert first.iteration == 2 and not first.finished
    gen.close()  # stops the run without error


def test_lazy_loader_reads_only_slabs(data):
    sinos, angles, _ = data
    loader = RowLoader(sinos, angles)
    vol = reconstruct_volume(loader, None, rows=(1, 6), method="sirt", iterations=5, batch=2,
                             device="cpu")
    reads = [r for r in loader.reads if r != (0, 1)]  # (0, 1) is the shape probe
    assert reads == [(1, 3), (3, 5), (5, 6)]
    ref = reconstruct_volume(sinos[1:6], angles, method="sirt", iterations=5, batch=2, device="cpu")
    np.testing.assert_allclose(vol, ref, rtol=1e-5, atol=1e-6)


def test_sources(data, tmp_path):
    sinos, angles, _ = data
    path = tmp_path / "sinos.npy"
    np.save(path, sinos)
    src = as_source(NpySource(path))
    assert (src.n_slices, src.n_angles, src.n_det) == sinos.shape
    np.testing.assert_array_equal(src.read(2, 4), sinos[2:4])
    func = as_source(lambda a, b: sinos[a:b], n_slices=NZ)
    np.testing.assert_array_equal(func.read(0, 2), sinos[:2])
    with pytest.raises(ValueError, match="n_slices"):
        as_source(lambda a, b: sinos[a:b])
    with pytest.raises(ValueError, match="n_slices, n_angles, n_det"):
        as_source(sinos[0])
    with pytest.raises(ValueError, match="sinograms must be"):
        as_source(42)


def test_classical_volume_matches_stack_reconstruction(data):
    import napari_ganrec as ng

    sinos, angles, _ = data
    vol = reconstruct_volume(sinos, angles, method="fbp", batch=4, device="cpu")
    ref = ng.reconstruct(sinos, angles, method="fbp", device="cpu")
    np.testing.assert_allclose(vol, ref, rtol=1e-5, atol=1e-5)


def test_state_out_and_external_warm_start(data):
    sinos, angles, _ = data
    states = []
    reconstruct_volume(sinos, angles, rows=(0, 1), iterations=30, state_out=states, **FAST)
    assert len(states) == 1 and set(states[0]) == {"ganrec"}
    recs = list(iter_volume(sinos, angles, rows=(3, 5), iterations=99, warm_iterations=5,
                            first_iterations=7, warm_start=states[0], progress_every=None, **FAST))
    assert [(r.iteration, r.warm) for r in recs] == [(7, True), (5, True)]


def test_bad_input(data):
    sinos, angles, _ = data
    cases = [
        (dict(batch_mode="both"), "batch_mode"),
        (dict(iterations=0), "iterations"),
        (dict(batch=0), "batch"),
        (dict(rows=(4, 4)), "rows"),
        (dict(rows=slice(0, 6, 2)), "contiguous"),
        (dict(method="art"), "method"),
        (dict(tol=-1.0), "tol"),
        (dict(unknown_option=1), "unknown option 'unknown_option'"),
        (dict(warm_iterations={"rwtv": 3}), "not in the method"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            iter_volume(sinos, angles, **{**FAST, **kwargs})
    with pytest.raises(ValueError, match="angles"):
        iter_volume(sinos, angles[:-1], **FAST)
    with pytest.raises(ValueError, match="angles are required"):
        iter_volume(sinos, None, **FAST)
    bad = sinos.copy()
    bad[4, 0, 0] = np.nan
    with pytest.raises(ValueError, match="slices 4:5"):
        reconstruct_volume(bad, angles, method="fbp", device="cpu")


def _volume_benchmark():
    """benchmarks/volume.py as a module."""
    from _benchmarks import load_benchmark

    return load_benchmark("volume")


def test_volume_benchmark_prints_its_tables(capsys):
    bench = _volume_benchmark()
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--size", "32", "--slices", "4", "--angles", "24", "--iterations", "6",
                           "--warm-iterations", "2", "--cold-slices", "2", "--cold-max", "6",
                           "--cold-every", "3", "--batch", "2", "--batch-slices", "4",
                           "--skip-workers", "--skip-gpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "| warm start (first 6, then <= 2) |" in out
    assert "| cold start" in out
    for mode in ("one slice at a time", "shared", "independent"):
        assert f"| {mode} |" in out


def test_volume_benchmark_gpu_section_runs(capsys):
    """The GPU section (run here on the CPU at tiny sizes) prints every table it promises."""
    bench = _volume_benchmark()
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--size", "16", "--slices", "2", "--angles", "12", "--skip-warm",
                           "--skip-workers", "--gpu-device", "cpu", "--gpu-sizes", "16",
                           "--gpu-batches", "2", "--gpu-reps", "2", "--gpu-volume", "16",
                           "--gpu-iterations", "6", "--gpu-warm-iterations", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    for row in ("| 16 | 1 | - | rwtv | fp32 |", "| 16 | 2 | independent | ganrec | auto |",
                "| shared | fp32 |", "| independent | auto |", "| FBP | - |", "| auto | 2 | 6 / 2 |"):
        assert row in out, row
