"""Execution options of GANrec (mixed precision, channels-last, torch.compile, deferred checks).

The CUDA defaults cannot run here; each option is forced on the CPU, where it must give the same
result as plain float32 (or, for bfloat16, the same quality), and a failing compilation must fall
back to eager execution.
"""

import math
import warnings

import numpy as np
import pytest
import torch
from metrics import ssim

import napari_ganrec as ng
from napari_ganrec.acceleration import (
    Acceleration,
    CompiledOrEager,
    Losses,
    resolve_acceleration,
)
from napari_ganrec.geometry import Geometry
from napari_ganrec.methods.ganrec import GANrec, GANrecConfig
from napari_ganrec.methods.rwtv import RWTV
from napari_ganrec.projector import Projector
from napari_ganrec.volume import iter_volume

OFF = Acceleration.off()
# plain float32 with the CPU's fused Adam and heap kept: the base the single options are compared to
FUSED = Acceleration(amp="off", channels_last="off", compile="off", fused_adam="on")
# GANrec fitting a residual on a short reweighted-TV image (the chain "rwtv+ganrec")
SHORT = dict(residual=True, channels=16, n_conv=5)


def _rwtv_image(proj, b, iterations=20, acceleration=None):
    stage = RWTV(proj, b, acceleration=acceleration)
    for _ in range(iterations):
        stage.step()
    return stage, stage.image()


def _run(sino, angles, acceleration, residual=False, iterations=40, seed=0, **overrides):
    proj = Projector(Geometry.create(angles, sino.shape[-1]), device="cpu")
    b = torch.from_numpy(sino)[None]
    x0 = _rwtv_image(proj, b)[1] if residual else None
    solver = GANrec(proj, b, GANrecConfig(**overrides), x0=x0, seed=seed, acceleration=acceleration)
    losses = [solver.step() for _ in range(iterations)]
    return solver, losses


def test_auto_on_the_cpu_is_float32_with_fused_adam_and_channels_last():
    r = resolve_acceleration(None, torch.device("cpu"))
    assert r.amp_dtype is None and not r.compile and r.check_every == 1
    assert r.channels_last and r.fused_adam
    off = resolve_acceleration(Acceleration.off(), torch.device("cpu"))
    assert not (off.channels_last or off.fused_adam or off.cpu_heap)


def test_fused_adam_and_channels_last_on_the_cpu_give_the_same_image(wedge_data):
    sino, angles, _ = wedge_data
    # One iteration: from the second on, rounding flips the signs of the L1 residuals that sit at
    # zero and of near-zero gradients, which Adam scales to full steps (1e-6 after one iteration,
    # 1e-3 after two, 1e-1 after four, for any two float32 orders of summation).
    plain, _ = _run(sino, angles, OFF, iterations=1)
    auto, _ = _run(sino, angles, Acceleration(), iterations=1)
    assert auto.opt_g.defaults["fused"] and not plain.opt_g.defaults.get("fused")
    assert auto.G.conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert auto.G.last.cpu_kernels and auto.D.memory_format is torch.channels_last
    a, b = plain.image().numpy(), auto.image().numpy()
    assert np.abs(a - b).max() < 1e-5 * np.abs(a).max()  # the same computation up to rounding


def test_bad_options_are_clear_errors(wedge_data):
    sino, angles, _ = wedge_data
    with pytest.raises(ValueError, match="amp"):
        Acceleration(amp="fp8")
    with pytest.raises(ValueError, match="check_every"):
        Acceleration(check_every=0)
    with pytest.raises(ValueError, match="compile"):
        Acceleration(compile="sometimes")
    with pytest.raises(ValueError, match="acceleration"):
        resolve_acceleration("fast", torch.device("cpu"))
    # the API validates before the first step
    with pytest.raises(ValueError, match="unknown acceleration option.*nonsense"):
        ng.iter_reconstruct(sino, angles, acceleration={"nonsense": 1}, device="cpu")


def test_channels_last_gives_the_same_image(wedge_data):
    sino, angles, _ = wedge_data
    # a few iterations: the adversarial game amplifies rounding (1e-7 after 3 iterations, 2e-3 after 10)
    plain, _ = _run(sino, angles, FUSED, iterations=3, **SHORT)
    nhwc, _ = _run(sino, angles, Acceleration(channels_last="on", amp="off", compile="off", fused_adam="on"),
                   iterations=3, **SHORT)
    assert nhwc.G.conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    a, b = plain.image().numpy(), nhwc.image().numpy()
    assert np.abs(a - b).max() < 1e-5 * np.abs(a).max()


def test_bf16_autocast_keeps_the_quality(wedge_data):
    """Over three seeds, as one seed's SSIM moves with rounding: on an Intel Xeon (AMX) seeds 0-2
    gave float32 0.813 / 0.786 / 0.801 and bfloat16 0.799 / 0.794 / 0.801."""
    sino, angles, gt = wedge_data
    bf16 = Acceleration(amp="bf16", channels_last="off", compile="off", fused_adam="on")
    diffs = []
    for seed in range(3):
        plain, _ = _run(sino, angles, FUSED, iterations=60, seed=seed, **SHORT)
        mixed, losses = _run(sino, angles, bf16, iterations=60, seed=seed, **SHORT)
        a, b = plain.image().numpy()[0], mixed.image().numpy()[0]
        assert b.dtype == np.float32 and np.isfinite(b).all()
        assert not np.array_equal(a, b)  # the generator really ran in bfloat16
        assert all(math.isfinite(x["l1"]) for x in losses)
        diffs.append(ssim(gt, a) - ssim(gt, b))
    assert abs(np.mean(diffs)) < 0.01 and max(abs(d) for d in diffs) < 0.03


def test_compiled_run_matches_eager(wedge_data):
    sino, angles, _ = wedge_data
    plain, _ = _run(sino, angles, FUSED, **SHORT)
    comp, _ = _run(sino, angles, Acceleration(compile="on", compile_backend="aot_eager", amp="off", channels_last="off",
                                              fused_adam="on"), **SHORT)
    assert comp._run_g.compiled
    a, b = plain.image().numpy(), comp.image().numpy()
    assert np.abs(a - b).max() < 1e-4 * np.abs(a).max()
    # the reweighted-TV stage compiles its element-wise updates too, to the same result
    proj = Projector(Geometry.create(angles, sino.shape[-1]), device="cpu")
    bt = torch.from_numpy(sino)[None]
    rw_plain, x_plain = _rwtv_image(proj, bt, acceleration=OFF)
    rw_comp, x_comp = _rwtv_image(proj, bt, acceleration=Acceleration(compile="on", compile_backend="aot_eager"))
    assert rw_comp._dual.compiled and rw_comp._primal.compiled and not rw_plain._dual.compiled
    assert torch.allclose(x_plain, x_comp, atol=1e-5 * float(x_plain.max()))


def test_compiled_run_in_channels_last_traces_the_cpu_convolution_kernels(wedge_data):
    """compile="on" on the CPU with channels-last: the generator's own autograd functions (the
    narrow-side GEMM convolutions, the bias-in-conv convolutions) compile and give the eager result."""
    sino, angles, _ = wedge_data
    nhwc = Acceleration(channels_last="on", amp="off", compile="off", fused_adam="on")
    eager, _ = _run(sino, angles, nhwc, iterations=3, **SHORT)
    comp, _ = _run(sino, angles, Acceleration(compile="on", compile_backend="aot_eager", amp="off",
                                              channels_last="on", fused_adam="on"), iterations=3, **SHORT)
    assert comp._run_g.compiled and comp._backward_ok and comp.G.last.cpu_kernels
    a, b = eager.image().numpy(), comp.image().numpy()
    assert np.abs(a - b).max() < 1e-5 * np.abs(a).max()


def test_failing_compilation_falls_back_to_eager(wedge_data):
    sino, angles, _ = wedge_data
    plain, _ = _run(sino, angles, FUSED, **SHORT)
    with pytest.warns(RuntimeWarning, match="running it eagerly"):
        broken, _ = _run(sino, angles, Acceleration(compile="on", compile_backend="no-such-backend", amp="off",
                                                    channels_last="off", fused_adam="on"), **SHORT)
    assert not broken._run_g.compiled and broken._run_g.error
    np.testing.assert_allclose(broken.image().numpy(), plain.image().numpy(), rtol=0, atol=1e-6)


def test_backend_error_at_first_call_falls_back(monkeypatch):
    calls = []

    def fn(x):
        calls.append(1)
        return x * 2

    def exploding_compile(f, **kwargs):
        def run(*args):
            raise RuntimeError("C++ compiler not found")
        return run

    monkeypatch.setattr(torch, "compile", exploding_compile)
    wrapped = CompiledOrEager(fn, True, name="test function")
    assert wrapped.compiled
    with pytest.warns(RuntimeWarning, match="C\\+\\+ compiler not found"):
        out = wrapped(torch.ones(3))
    assert torch.equal(out, torch.full((3,), 2.0)) and not wrapped.compiled
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        wrapped(torch.ones(3))
    assert len(calls) == 2


def test_losses_stay_on_the_device_between_checks(wedge_data):
    sino, angles, _ = wedge_data
    solver, losses = _run(sino, angles, Acceleration(check_every=10, amp="off", compile="off"),
                          iterations=9)
    assert all(isinstance(x, Losses) and x.pending for x in losses)
    assert "l1" in losses[0] and "nope" not in losses[0] and losses[0].pending  # no device read
    assert solver._bad is not None  # the finite check of 9 iterations waits for the host
    tenth = solver.step()
    assert solver._bad is None and tenth["recovered"] == 0.0
    assert set(tenth) == {"g_loss", "d_loss", "l1", "adv", "recovered"}
    assert dict(losses[0])["l1"] == pytest.approx(losses[0]["l1"])


def test_deferred_check_recovers_from_nan(wedge_data):
    sino, angles, _ = wedge_data
    solver, _ = _run(sino, angles, Acceleration(check_every=5, amp="off", compile="off"),
                     iterations=10, snapshot_every=5)
    good = {k: v.clone() for k, v in solver.G.state_dict().items()}
    with torch.no_grad():
        solver.G.fc[0].weight[0, 0] = float("nan")
    out = [solver.step() for _ in range(5)]
    assert [x["recovered"] for x in out] == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert solver.lr_scale == 0.5 and solver.iteration == 10 and solver.recoveries == 1
    for k, v in solver.G.state_dict().items():  # back to the snapshot of iteration 10
        assert torch.equal(v, good[k]), k
    assert math.isfinite(solver.step()["g_loss"])
    assert np.isfinite(solver.image().numpy()).all()


def test_image_checks_pending_iterations(wedge_data):
    """A preview between two checks never shows a non-finite image: image() checks first."""
    sino, angles, _ = wedge_data
    solver, _ = _run(sino, angles, Acceleration(check_every=50, amp="off", compile="off"),
                     iterations=3, snapshot_every=1)
    with torch.no_grad():
        solver.G.fc[0].weight[0, 0] = float("nan")
    solver.step()
    assert np.isfinite(solver.image().numpy()).all() and solver.recoveries == 1


def test_api_and_volume_take_acceleration(wedge_data):
    sino, angles, _ = wedge_data
    chain = dict(method="rwtv+ganrec", iterations={"rwtv": 10, "ganrec": 20}, device="cpu", channels=8)
    ref = ng.reconstruct(sino, angles, **chain)
    got = ng.reconstruct(sino, angles, acceleration=Acceleration(check_every=7, channels_last="on"), **chain)
    assert np.abs(got - ref).max() < 1e-4 * np.abs(ref).max()
    stack = np.stack([sino, sino])
    kwargs = dict(method="rwtv+ganrec", iterations={"rwtv": 5, "ganrec": 7}, warm_iterations=3,
                  progress_every=None, device="cpu", channels=8)
    plain = list(iter_volume(stack, angles, acceleration=OFF, **kwargs))
    recs = list(iter_volume(stack, angles, acceleration={"check_every": 4}, **kwargs))
    assert [r.iteration for r in recs] == [12, 6]
    # independent batches: the stacked solver takes the options too
    seen = []
    import napari_ganrec.methods.ganrec as ganrec_mod

    real = ganrec_mod.resolve_acceleration

    def spy(acc, device, residual_generator=True):
        seen.append(acc)
        return real(acc, device, residual_generator)

    ganrec_mod.resolve_acceleration = spy
    try:
        list(iter_volume(stack, angles, acceleration={"check_every": 4}, batch=2, batch_mode="independent",
                         **kwargs))
    finally:
        ganrec_mod.resolve_acceleration = real
    assert seen == [{"check_every": 4}]
    # the host check's period changes when the host looks, not what is computed: bit for bit
    every_step = list(iter_volume(stack, angles, acceleration={"check_every": 1}, **kwargs))
    for r, e, p in zip(recs, every_step, plain):
        np.testing.assert_array_equal(r.images, e.images)
        # fused Adam and channels-last kernels round differently from the plain path, and training
        # amplifies rounding (2.6e-4 of the maximum after 7 GAN steps at 2 threads): close, not equal
        assert np.abs(r.images - p.images).max() < 5e-3 * np.abs(p.images).max()
    with pytest.raises(ValueError, match="check_every"):
        iter_volume(stack, angles, acceleration={"check_every": -1}, **kwargs)


def test_early_stopping_reads_losses_only_when_it_decides():
    from napari_ganrec.methods import Convergence

    def _Convergence(tol, window, min_iterations):
        return Convergence(tol, window, min_iterations, monitor="l1")

    stop = _Convergence(tol=0.5, window=3, min_iterations=0)  # decides at 6, 9, 12, ...
    fed = []
    for k in range(5):
        fed.append(Losses({"l1": torch.tensor(1.0 / (k + 1))}))
        assert not stop.update(fed[-1])
    assert all(x.pending for x in fed)
    fed.append(Losses({"l1": torch.tensor(1.0 / 6)}))
    stop.update(fed[-1])
    assert not any(x.pending for x in fed) and len(stop.values) == 6
    assert not _Convergence(None, 3, 0).update(Losses({"l1": torch.tensor(1.0)}))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (covered on CPU above)")
def test_cuda_defaults_keep_the_quality(wedge_data):
    sino, angles, gt = wedge_data
    kw = dict(method="rwtv+ganrec", iterations={"rwtv": 40, "ganrec": 40}, device="cuda", seed=0)
    plain = ng.reconstruct(sino, angles, acceleration=OFF, **kw)
    auto = ng.reconstruct(sino, angles, **kw)
    assert abs(ssim(gt, plain) - ssim(gt, auto)) < 0.01


def test_automatic_bf16_only_for_residual_generators(monkeypatch):
    """bfloat16 kept the SSIM of a generator fitting a residual on a reweighted-TV image but cost the
    paper's GANrec 0.1 (speed.py --accuracy):
    'auto' turns it on only where the generator fits a residual."""
    import napari_ganrec.acceleration as acc_mod

    monkeypatch.setattr(acc_mod, "_bf16_ok", lambda device: True)
    cuda = torch.device("cuda")
    assert resolve_acceleration(None, cuda, residual_generator=True).amp_dtype is torch.bfloat16
    assert resolve_acceleration(None, cuda, residual_generator=False).amp_dtype is None
    forced = resolve_acceleration(Acceleration(amp="bf16"), cuda, residual_generator=False)
    assert forced.amp_dtype is torch.bfloat16
    auto = resolve_acceleration(None, cuda)
    assert auto.channels_last and auto.fused_adam and auto.check_every == 25 and not auto.compile


def test_solver_tells_whether_its_generator_is_residual(wedge_data, monkeypatch):
    import napari_ganrec.methods.ganrec as ganrec_mod

    seen = []

    def spy(acc, device, residual_generator=True):
        seen.append(residual_generator)
        return resolve_acceleration(acc, device, residual_generator)

    monkeypatch.setattr(ganrec_mod, "resolve_acceleration", spy)
    sino, angles, _ = wedge_data
    for residual in (True, False):
        _run(sino, angles, None, residual=residual, iterations=1)
    assert seen == [True, False]


def test_failing_compiled_backward_falls_back_and_redoes_the_iteration(wedge_data, monkeypatch):
    """inductor compiles a backward lazily, at its first use: a failure there must not end the run."""

    class _Boom(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            raise RuntimeError("backward compilation failed")

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: (lambda *a: _Boom.apply(fn(*a))))
    sino, angles, _ = wedge_data
    plain, _ = _run(sino, angles, Acceleration(), iterations=3, dropout=0.0)  # eager, same CPU defaults
    with pytest.warns(RuntimeWarning, match="backward compilation failed"):
        solver, losses = _run(sino, angles, Acceleration(compile="on"), iterations=3, dropout=0.0)
    assert not solver._run_g.compiled and solver.iteration == 3
    assert all(x["recovered"] == 0.0 for x in losses)
    g1 = dict(plain.G.named_parameters())
    for name, p in solver.G.named_parameters():  # same generator as an eager run
        assert torch.allclose(p, g1[name], atol=1e-6), name


def test_the_cpu_heap_setting_is_resolved_per_device_and_applies_on_glibc():
    import platform

    from napari_ganrec.acceleration import keep_cpu_heap

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert resolve_acceleration(None, torch.device("cpu")).cpu_heap == glibc
    assert not resolve_acceleration(Acceleration(cpu_heap="off"), torch.device("cpu")).cpu_heap
    assert not resolve_acceleration(Acceleration(cpu_heap="on"), torch.device("meta")).cpu_heap
    assert keep_cpu_heap() == glibc
    with pytest.raises(ValueError, match="cpu_heap"):
        Acceleration(cpu_heap="always")
