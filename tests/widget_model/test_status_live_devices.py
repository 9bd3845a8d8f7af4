"""What the Run box says, how the live layers are named and drawn, which devices are offered, the warm-up."""

import threading

import numpy as np
import pytest

from napari_ganrec.widget_model.devices import available_devices
from napari_ganrec.widget_model.live import (
    contrast_limits,
    error_text,
    final_status,
    image_scale,
    image_shape,
    live_layer_name,
)
from napari_ganrec.widget_model.run import METHOD_LABELS, EngineError, RunState
from napari_ganrec.widget_model.status import button_states, eta_text, status_text
from napari_ganrec.widget_model.warm import BackgroundWarmUp


def test_buttons_follow_the_status():
    idle = button_states("idle")
    assert (idle.run, idle.pause, idle.stop, idle.pause_text) == (True, False, False, "Pause")
    running = button_states("running")
    assert (running.run, running.pause, running.stop) == (False, True, True)
    paused = button_states("paused")
    assert paused.pause_text == "Resume" and paused.stop and not paused.run
    stopping = button_states("stopping")
    assert (stopping.run, stopping.pause, stopping.stop) == (False, False, False)
    assert button_states("finished").run


def _state(status="running", iteration=10, total=100, elapsed=5.0, first=(1.0, 2), losses=None, message=""):
    s = RunState()
    s.status, s.iteration, s.total, s.elapsed, s.first_progress, s.message = (
        status, iteration, total, elapsed, first, message)
    s.loss_history = losses or {}
    return s


def test_status_text_shows_iterations_the_latest_non_zero_losses_and_the_message():
    assert status_text(_state("idle")) == "idle"
    s = _state(losses={"l1": ([1, 2], [0.5, 0.25]), "adv": ([2], [0.0]), "tv": ([2], [1234.5])},
               message="stopped by the user")
    assert status_text(s) == "running: iteration 10/100, 5.0 s\nl1 0.25, tv 1.23e+03\nstopped by the user"
    many = {f"l{i}": ([1], [1.0 + i]) for i in range(6)}
    assert status_text(_state(losses=many)).splitlines()[1] == "l0 1, l1 2, l2 3, l3 4"


def test_eta_text_while_running_and_cleared_after():
    # 4 s for 8 iterations since the first progress: 0.5 s each, 90 left
    assert eta_text(_state()) == "ETA 45 s (whole run about 50 s)"
    assert eta_text(_state(iteration=3)) is None  # too early: the last line stays
    assert eta_text(_state("paused")) == ""
    assert eta_text(_state("idle")) is None


def test_live_layer_names_say_the_slices_and_the_method():
    label = METHOD_LABELS["rwtv"]
    assert live_layer_name("proj", (12, 13), "rwtv") == f"proj slice 12 {label}"
    assert live_layer_name("proj", (10, 20), "rwtv") == f"proj slices 10-19 {label}"
    assert live_layer_name("sino", None, "rwtv") == f"sino {label}"
    assert live_layer_name("sino", None, "no-such") == "sino no-such"


def test_image_shape_and_scale_of_the_result():
    assert image_shape((21, 32)) == (32, 32)
    assert image_shape((3, 21, 32)) == (3, 32, 32)
    with pytest.raises(ValueError, match="sinograms must be"):
        image_shape((32,))
    assert image_scale(2, (0.5, 0.5), 2.0) == (0.5, 0.5)
    assert image_scale(3, (0.5, 0.5), 2.0) == (2.0, 0.5, 0.5)


def test_contrast_limits_of_residuals_and_uncertainties():
    assert contrast_limits(np.array([-3.0, 1.0]), symmetric=True) == (-3.0, 3.0)
    assert contrast_limits(np.zeros(3), symmetric=True) == (-1.0, 1.0)
    assert contrast_limits(np.array([0.0, 2.5]), symmetric=False) == (0.0, 2.5)
    assert contrast_limits(np.zeros(3), symmetric=False) == (0.0, 1.0)


def test_error_text_and_final_status():
    assert error_text(ValueError("angles must be degrees")) == "angles must be degrees"
    assert error_text(EngineError("out of memory on cuda:0")) == "out of memory on cuda:0"
    assert error_text(KeyError("x")) == "KeyError: 'x'"
    assert final_status("boom", abort_requested=True) == "failed"
    assert final_status(None, abort_requested=True) == "stopped"
    assert final_status(None, abort_requested=False) == "finished"


def test_available_devices_lists_every_cuda_device(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    devices = available_devices()
    assert devices[:5] == ["auto", "cpu", "cuda:0", "cuda:1", "cuda:2"]


def test_available_devices_survives_a_broken_torch(monkeypatch):
    import torch

    def broken():
        raise RuntimeError("driver gone")

    monkeypatch.setattr(torch.cuda, "device_count", broken)
    assert available_devices() == ["auto", "cpu"]


def test_background_warm_up_runs_once_in_a_named_thread_and_keeps_a_failure():
    seen, go = [], threading.Event()

    def warm(device):
        go.wait(5)
        seen.append((device, threading.current_thread().name))

    w = BackgroundWarmUp(warm, "cpu")
    assert not w.done
    go.set()
    assert w.join(5) and w.done and w.error is None
    assert seen == [("cpu", "napari-ganrec warm-up")]

    def failing(device):
        raise RuntimeError("no engine")

    w = BackgroundWarmUp(failing, "cpu")
    assert w.join(5) and isinstance(w.error, RuntimeError)
