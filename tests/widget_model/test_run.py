"""The Qt-free run model: parameters, the worker's generator (throttling, closing), the state."""

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pytest

from napari_ganrec import phantoms
from napari_ganrec.geometry import angles_from_range
from napari_ganrec.widget_model.run import (
    RunParams,
    RunState,
    RunUpdate,
    eta_seconds,
    format_seconds,
    run_metadata,
    run_reconstruction,
)

ANGLES = tuple(angles_from_range(0, 180, 8))


@dataclass
class FakeStep:
    iteration: int
    iterations: int
    losses: dict
    image: np.ndarray | None = None
    residual: np.ndarray | None = None


class FakeEngine:
    """An iter_reconstruct stand-in: one step per clock tick of ``dt`` seconds."""

    def __init__(self, dt=0.01, image_every=5):
        self.t = 0.0
        self.dt = dt
        self.image_every = image_every
        self.closed = False
        self.kwargs = None
        self.steps_made = 0

    def clock(self):
        return self.t

    def __call__(self, sino, angles, **kwargs):
        self.kwargs = kwargs
        self.angles = angles
        return self._gen(kwargs["iterations"])

    def _gen(self, n):
        try:
            for k in range(1, n + 1):
                self.t += self.dt
                self.steps_made += 1
                due = k % self.image_every == 0 or k == n
                img = np.full((4, 4), k, np.float32) if due else None
                yield FakeStep(k, n, {"l1": 1.0 / k}, img)
        finally:
            self.closed = True


def test_params_validate():
    with pytest.raises(ValueError, match="unknown stage 'art'"):
        RunParams(ANGLES, method="art")
    with pytest.raises(ValueError, match="unknown option 'lr_g' for method 'tv'"):
        RunParams(ANGLES, method="tv", options={"lr_g": 1e-3})
    with pytest.raises(ValueError, match="iterations must be a positive integer"):
        RunParams(ANGLES, iterations=0)
    with pytest.raises(ValueError, match="preview_every must be a positive integer"):
        RunParams(ANGLES, preview_every=True)
    p = RunParams(np.array(ANGLES), method="fbp", iterations=50)
    assert p.total == 1 and isinstance(p.angles, tuple)
    chain = RunParams(ANGLES, method="rwtv+ganrec", iterations=50)
    assert chain.total == 100 and chain.label == "reweighted TV + GANrec"


def test_method_labels_come_from_the_registry():
    from napari_ganrec.methods import DEFAULT_METHOD, LABELS, METHODS
    from napari_ganrec.widget_model.run import METHOD_LABELS

    assert set(METHOD_LABELS) == set(METHODS) and next(iter(METHOD_LABELS)) == DEFAULT_METHOD
    assert all(METHOD_LABELS[m] == LABELS[m] for m in METHODS)
    assert METHOD_LABELS["rwtv"] == "reweighted TV" and METHOD_LABELS["ganrec"] == "GANrec"


def test_engine_kwargs_per_method():
    g = RunParams(ANGLES, method="ganrec", options={"lr_g": 1e-4}, seed=3,
                  center=3.5, device="cpu", residual=True)
    kw = g.engine_kwargs()
    assert kw["method"] == "ganrec" and kw["lr_g"] == 1e-4 and kw["seed"] == 3
    assert kw["center"] == 3.5 and kw["device"] == "cpu" and kw["with_residual"] is True
    t = RunParams(ANGLES, method="tv", options={"tv_weight": 0.1}).engine_kwargs()
    assert t["tv_weight"] == 0.1
    f = RunParams(ANGLES, method="fbp", options={"filter_name": "hann"}).engine_kwargs()
    assert f["filter_name"] == "hann"
    c = RunParams(ANGLES, method="rwtv+ganrec", options={"ganrec": {"lr_g": 1e-4},
                                                        "acceleration": {"amp": "off"}}).engine_kwargs()
    assert c["ganrec"] == {"lr_g": 1e-4} and c["acceleration"] == {"amp": "off"}
    assert "tv_weight" not in RunParams(ANGLES, method="sirt").engine_kwargs()


def test_generator_throttles_but_keeps_every_loss():
    eng = FakeEngine(dt=0.01, image_every=5)
    params = RunParams(ANGLES, iterations=100, tick_interval=0.1, image_interval=0.1)
    ups = list(run_reconstruction(np.zeros((8, 4)), params, iterate=eng, clock=eng.clock))
    # one update per ~0.1 s of 0.01 s steps, not one per step
    assert 8 <= len(ups) <= 13
    its = [it for u in ups for it, _ in u.losses]
    assert its == list(range(1, 101))  # no loss value lost
    assert [u.iteration for u in ups] == sorted(u.iteration for u in ups)
    assert ups[-1].iteration == 100 and ups[-1].image is not None
    assert ups[-1].image[0, 0] == 100 and ups[-1].image_iteration == 100
    images = [u for u in ups if u.image is not None]
    assert len(images) >= 5
    for u in images:  # an image is the engine's picture of the iteration it names
        assert u.image[0, 0] == u.image_iteration and u.image_iteration % 5 == 0 or \
            u.image_iteration == 100
    # images are at least image_interval apart (an image may wait one step for its tick), except
    # the last, which always comes
    times = [u.produced_at for u in images[:-1]]
    assert all(b - a >= 0.1 - 0.01 - 1e-9 for a, b in zip(times, times[1:]))
    assert eng.closed


def test_generator_yields_each_step_without_throttle():
    eng = FakeEngine(dt=0.01, image_every=2)
    params = RunParams(ANGLES, iterations=6, tick_interval=0, image_interval=0)
    ups = list(run_reconstruction(np.zeros((8, 4)), params, iterate=eng, clock=eng.clock))
    assert [u.iteration for u in ups] == [1, 2, 3, 4, 5, 6]
    assert [u.image is not None for u in ups] == [False, True, False, True, False, True]


def test_closing_the_generator_closes_the_engine():
    eng = FakeEngine(dt=0.01)
    params = RunParams(ANGLES, iterations=1000, tick_interval=0, image_interval=0)
    gen = run_reconstruction(np.zeros((8, 4)), params, iterate=eng, clock=eng.clock)
    for _ in range(3):
        next(gen)
    gen.close()
    assert eng.closed and eng.steps_made == 3


def test_generator_passes_the_parameters():
    eng = FakeEngine()
    params = RunParams(ANGLES, method="ganrec", iterations=4, center=5.0, seed=7, device="cpu",
                       preview_every=2, options={"channels": 8})
    summary = None
    gen = run_reconstruction(np.zeros((8, 4)), params, iterate=eng, clock=eng.clock)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        summary = stop.value
    assert eng.kwargs["center"] == 5.0 and eng.kwargs["seed"] == 7
    assert eng.kwargs["preview_every"] == 2 and eng.kwargs["channels"] == 8
    np.testing.assert_array_equal(eng.angles, ANGLES)
    assert summary.iteration == 4 and summary.device == "cpu"


def test_generator_runs_the_real_engine():
    p = phantoms.porous_particle(32, seed=0)
    a = angles_from_range(0, 180, 30)
    sino = phantoms.simulate_sinogram(p, a)
    params = RunParams(tuple(a), method="sirt", iterations=30, preview_every=10, device="cpu",
                       residual=True, tick_interval=0, image_interval=0)
    ups = list(run_reconstruction(sino, params))
    assert ups[-1].iteration == 30
    shown = [u for u in ups if u.image is not None]
    assert [u.image_iteration for u in shown] == [10, 20, 30]
    assert shown[-1].image.shape == (32, 32) and shown[-1].residual.shape == (30, 32)
    res = [u.losses[0][1]["residual"] for u in ups]
    assert res[-1] < res[0]  # SIRT's data misfit falls
    truth = phantoms.ground_truth(p)
    assert np.abs(shown[-1].image - truth).mean() < np.abs(shown[0].image - truth).mean()


def test_state_folds_updates():
    s = RunState()
    seen = []
    s.events.iteration.connect(seen.append)
    images = []
    s.events.image.connect(lambda im: images.append(im))
    s.reset(10)
    assert s.status == "running" and s.active
    img = np.ones((2, 2))
    s.apply(RunUpdate(3, 10, ((1, {"l1": 3.0}), (2, {"l1": 2.0}), (3, {"l1": 1.0, "d": 0.5})),
                      image=img, image_iteration=3, produced_at=1.5, elapsed=0.3))
    assert s.iteration == 3 and s.elapsed == 0.3 and s.n_images == 1
    assert s.loss_history["l1"] == ([1, 2, 3], [3.0, 2.0, 1.0])
    assert s.loss_history["d"] == ([3], [0.5])
    assert s.last_losses() == {"l1": 1.0, "d": 0.5}
    assert images == [img] and s.image_produced_at == 1.5
    s.apply(RunUpdate(5, 10, ((4, {"l1": 0.5}), (5, {"l1": 0.4}))))
    assert s.image is img and s.n_images == 1 and s.iteration == 5
    assert seen[-2:] == [3, 5]
    s.status = "finished"
    assert not s.active
    s.reset(4)
    assert s.loss_history == {} and s.iteration == 0 and s.total == 4 and s.image is None


def test_run_metadata_is_plain():
    params = RunParams(ANGLES, method="ganrec", iterations=50, center=4.0, seed=2, device="cpu",
                       options={"betas": (0.5, 0.9)})
    t0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    md = run_metadata(params, source="proj", slices=(3, 5), layout="vertical", iteration=20,
                      elapsed=1.23456, status="stopped", started=t0)
    assert md["method"] == "ganrec" and md["angles"] == list(ANGLES) and md["method_label"] == "GANrec"
    assert md["stages"] == [{"name": "ganrec", "iterations": 50}]
    assert md["center"] == 4.0 and md["iterations"] == 20 and md["iterations_requested"] == 50
    assert md["seed"] == 2 and md["device"] == "cpu" and md["elapsed_s"] == 1.235
    assert md["started"] == "2024-01-02T03:04:05+00:00" and md["status"] == "stopped"
    assert md["slices"] == [3, 5] and "preset" not in md
    assert md["options"] == {"betas": [0.5, 0.9]}
    import json

    json.dumps(md)  # a writer can store it as it is


def test_runtime_errors_come_out_as_engine_errors():
    """superqt's GeneratorWorker swallows RuntimeError (no errored, no finished signal)."""
    from napari_ganrec.widget_model.run import EngineError

    def failing(sino, angles, **kwargs):
        yield FakeStep(1, 5, {"l1": 1.0})
        raise RuntimeError("CUDA out of memory")

    params = RunParams(ANGLES, iterations=5, tick_interval=0, image_interval=0)
    gen = run_reconstruction(np.zeros((8, 4)), params, iterate=failing)
    assert next(gen).iteration == 1
    with pytest.raises(EngineError, match="^RuntimeError: CUDA out of memory$") as info:
        next(gen)
    assert not isinstance(info.value, RuntimeError)
    # bad arguments stay ValueErrors with the engine's message
    with pytest.raises(ValueError, match="sinogram has 8 projections"):
        next(run_reconstruction(np.zeros((8, 4)), RunParams(ANGLES[:5], iterations=2)))


def test_uncertainty_is_asked_for_and_streamed():
    from napari_ganrec.widget_model.run import RunParams, run_reconstruction

    params = RunParams(angles=(0.0, 60.0, 120.0), method="ganrec", iterations=50, preview_every=10,
                       uncertainty=True)
    assert params.engine_kwargs()["ganrec"] == {"average_last": 10}  # max(10, 50 // 5): GANrec averages none
    assert "ganrec" not in RunParams(angles=(0.0, 1.0), method="ganrec", iterations=50).engine_kwargs()
    # reweighted TV averages its last iterates already
    assert "rwtv" not in RunParams(angles=(0.0, 1.0), method="rwtv", iterations=50,
                                   uncertainty=True).engine_kwargs()
    explicit = RunParams(angles=(0.0, 1.0), method="ganrec", iterations=50, uncertainty=True,
                         options={"average_last": 3})
    assert explicit.engine_kwargs()["average_last"] == 3 and "ganrec" not in explicit.engine_kwargs()

    class FakeStep:
        def __init__(self, k):
            self.iteration, self.iterations, self.losses = k, 2, {"l1": 1.0 / k}
            self.image = np.full((4, 4), k, np.float32)
            self.residual = None
            self.uncertainty = np.full((4, 4), 0.1 * k, np.float32)

    def fake(sino, angles, **kw):
        yield from (FakeStep(k) for k in (1, 2))

    updates = list(run_reconstruction(np.zeros((3, 4), np.float32), params, iterate=fake))
    assert updates[-1].uncertainty is not None
    np.testing.assert_allclose(updates[-1].uncertainty, 0.2)


def test_volume_mode_fills_the_volume_slice_by_slice_with_warm_start():
    from napari_ganrec import phantoms
    from napari_ganrec.widget_model.run import RunParams, run_metadata, run_reconstruction

    p = phantoms.porous_particle(24, nz=3, n_pores=3, seed=2)
    angles = np.linspace(0, 120, 30, endpoint=False)
    sinos = phantoms.simulate_projections(p, angles).transpose(1, 0, 2).copy()
    params = RunParams(angles=tuple(angles), method="rwtv+ganrec", iterations=6, warm_iterations=2,
                       preview_every=2, device="cpu", options={"ganrec": {"channels": 8}}, volume_slices=3,
                       tick_interval=0, image_interval=0)
    assert params.total == 12 + 2 * 4
    gen = run_reconstruction(sinos, params)
    updates = []
    while True:
        try:
            updates.append(next(gen))
        except StopIteration as stop:
            summary = stop.value
            break
    images = [u.image for u in updates if u.image is not None]
    assert len(images) == 3  # one per finished slice
    filled = [int((np.abs(im).sum(axis=(1, 2)) > 0).sum()) for im in images]
    assert filled == [1, 2, 3]
    assert updates[-1].iteration == params.total and summary.iteration == params.total
    assert np.isfinite(images[-1]).all() and images[-1].shape == (3, 24, 24)
    md = run_metadata(params, source="s", slices=(0, 3), layout="vertical", iteration=10, elapsed=1.0,
                      status="finished")
    assert md["volume_mode"] == {"slices": 3, "first_iterations": 6, "warm_iterations": 2}


def test_eta_from_the_rate_after_the_first_iterations():
    # the first update (iteration 1 at 5 s) carries the set-up; then 2 s per iteration
    assert eta_seconds(5.0, 1, 100, 5.0, 1) is None  # nothing to measure yet
    assert eta_seconds(7.0, 2, 100, 5.0, 1) is None  # one iteration: not yet
    assert eta_seconds(9.0, 3, 100, 5.0, 1) == pytest.approx(2.0 * 97)
    assert eta_seconds(9.0, 100, 100, 5.0, 1) is None  # done
    assert format_seconds(42.4) == "42 s"
    assert format_seconds(185) == "3 min 05 s"
    assert format_seconds(3720) == "1 h 02 min"


def test_state_estimates_the_time_left():
    st = RunState()
    st.reset(50)
    assert st.eta() is None
    st.apply(RunUpdate(iteration=2, total=50, elapsed=10.0))  # slow first iterations (set-up)
    st.apply(RunUpdate(iteration=6, total=50, elapsed=12.0))  # then 0.5 s per iteration
    assert st.first_progress == (10.0, 2)
    assert st.eta() == pytest.approx(0.5 * 44)
    st.reset(10)
    assert st.first_progress == (0.0, 0) and st.eta() is None


def test_run_metadata_takes_what_the_widget_adds():
    p = RunParams(angles=(0.0, 90.0), method="fbp", center=73.375)
    md = run_metadata(p, source="tooth", slices=(0, 1), layout="vertical", iteration=1,
                      elapsed=0.5, status="finished",
                      extra={"center": 295.0, "center_binned": 73.375, "binning": {"factor": 4}})
    assert md["center"] == 295.0 and md["center_binned"] == 73.375
    assert md["binning"] == {"factor": 4}


def test_automatic_options_are_chosen_once_from_the_middle_slice():
    angles = angles_from_range(0, 120, 60)
    clean = np.stack([phantoms.simulate_sinogram(phantoms.porous_particle(32, n_pores=4, seed=k), angles)
                      for k in range(3)])
    noisy = clean.copy()
    noisy[1] = phantoms.add_poisson_noise(clean[1], 3e3, seed=0)  # only the middle slice is noisy
    params = RunParams(tuple(angles), method="rwtv", iterations=5)
    chosen = params.with_automatic_options(noisy).options["rwtv"]
    assert chosen["tv_weight"] > 0.1 and chosen["noise"] > 0.01  # from the middle slice
    assert params.with_automatic_options(clean).options["rwtv"]["tv_weight"] == pytest.approx(0.1)
    # the chosen numbers are what runs
    assert params.with_automatic_options(noisy).plan.stages[0].config.tv_weight == chosen["tv_weight"]
    # a number the user gave wins; the other field is still chosen
    given = RunParams(tuple(angles), method="rwtv", iterations=5, options={"rwtv": {"tv_weight": 0.05}})
    mixed = given.with_automatic_options(noisy).options["rwtv"]
    assert mixed["tv_weight"] == 0.05 and mixed["eps"] == chosen["eps"]
    # nothing automatic: the same parameters
    sirt = RunParams(tuple(angles), method="sirt", iterations=5)
    assert sirt.with_automatic_options(noisy) is sirt
