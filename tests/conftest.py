"""Shared fixtures: small phantoms and sinograms (32-64 px) so the suite runs in minutes on 2 cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_ganrec import phantoms

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def particle48():
    p = phantoms.porous_particle(48, n_pores=8, n_inclusions=2, seed=3)
    return p, phantoms.ground_truth(p)


@pytest.fixture(scope="session")
def wedge_data(particle48):
    """0-120 degree sinogram of a 48 px particle, simulated on a 3x finer grid."""
    p, gt = particle48
    angles = np.linspace(0.0, 120.0, 60, endpoint=False)
    return phantoms.simulate_sinogram(p, angles), angles, gt


@pytest.fixture(scope="session")
def shared_data_dir():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available on this machine")
    return SHARED_DATA


def pytest_configure(config):
    import os

    import torch

    torch.set_num_threads(1)  # 2 shared cores: one thread per test process
    # ...and for every run the suite starts (napari_ganrec.threads.configure_threads honours it): a
    # benchmark's own thread choice must not leave later tests with the load-chosen count, which
    # differs between a busy developer machine and an idle CI one. The tests that check the
    # automatic choice remove it with monkeypatch. Set it to 2 to run the suite at 2 threads.
    os.environ.setdefault("NAPARI_GANREC_THREADS", "1")

    # GUI tests want a real X server (CI runs under xvfb-run); fall back to offscreen rendering.
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
