"""The adversary on projections at unmeasured angles (#15, experiment 3): helpers and the option."""

import numpy as np
import pytest
import torch

from napari_ganrec.geometry import Geometry
from napari_ganrec.methods.projection_critic import (
    ProjectionCritic,
    angle_projector,
    missing_angles,
    projection_windows,
)
from napari_ganrec.methods.rwtv import RWTV, RWTVConfig
from napari_ganrec.methods.wedge import Sector, missing_sector
from napari_ganrec.methods.wedgefill import WedgeFill, WedgeFillConfig
from napari_ganrec.projector import Projector

TINY = {"channels": 4, "depth": 1, "pool": 2, "pool_iterations": 10, "rotations": 2, "average_last": 0}
ADV = dict(TINY, projection_weight=0.1, projection_count=4)


def _wave(n: int, phi_deg: float, f: float = 0.15) -> np.ndarray:
    """A Gaussian-windowed plane wave whose wave vector ``(ky, kx)`` has the orientation ``phi``."""
    yy, xx = np.mgrid[0:n, 0:n] - n / 2
    phi = np.deg2rad(phi_deg)
    env = np.exp(-(xx**2 + yy**2) / (2 * (n / 6) ** 2))
    return (env * np.cos(2 * np.pi * f * (np.sin(phi) * yy + np.cos(phi) * xx))).astype(np.float32)


# ---------------------------------------------------------------- helpers
@pytest.mark.parametrize("method", ["matrix", "rotate"])
def test_a_projection_at_a_measured_angle_is_the_real_projectors_row(method):
    n = 40
    angles = np.linspace(-35, 35, 51)
    proj = Projector(Geometry.create(angles, n, center=n / 2 + 0.7), device="cpu", method=method)
    other = angle_projector(proj, angles[[3, 20, 47]])
    assert other.method == method and other.geometry.center == proj.geometry.center
    x = torch.from_numpy(np.random.default_rng(0).random((2, n, n)).astype(np.float32))
    assert torch.allclose(other.forward(x), proj.forward(x)[:, [3, 20, 47]], atol=1e-5)


def test_missing_angles_lie_in_the_sector_and_see_its_orientations():
    sector = missing_sector(np.arange(0, 120, 1.0))  # (119.5, 179.5)
    a = missing_angles(sector, 1.0)
    assert a.size == 60 and a[0] == pytest.approx(120.0) and a[-1] == pytest.approx(179.0)
    assert np.allclose(np.diff(a), 1.0)
    wrap = missing_angles(Sector(150.0, 60.0), 7.0)  # read modulo 180: may pass 180
    assert wrap.size == 9 and wrap.min() > 150 and wrap.max() < 210
    assert missing_angles(Sector(10.0, 0.5), 1.0).tolist() == [10.25]
    # an orientation phi of the missing wedge (projection angle -phi mod 180 = 150) is seen there
    n = 48
    proj = angle_projector(Projector(Geometry.create(np.arange(0, 120, 1.0), n), device="cpu"), a)
    energy = (proj.forward(torch.from_numpy(_wave(n, 30.0))) ** 2).sum(dim=1).numpy()
    assert abs(a[int(np.argmax(energy))] - 150.0) <= 1.0
    with pytest.raises(ValueError, match="angular step must be > 0"):
        missing_angles(sector, 0.0)


def test_windows_are_neighbouring_rows_scaled_without_their_angle():
    sino = torch.arange(2 * 6 * 5, dtype=torch.float32).reshape(2, 6, 5) + 1
    gen = torch.Generator().manual_seed(0)
    w = projection_windows(sino, 3, 4, gen)
    assert w.shape == (8, 3, 5)
    assert torch.allclose(w.amax(dim=-1), torch.ones(8, 3))
    s = projection_windows(sino, 2, 3, gen, "sinogram", torch.tensor([10.0, 100.0]))
    for k, win in enumerate(s):  # slice-major; each window is two neighbouring rows of its slice
        rows = win * (10.0 if k < 3 else 100.0)
        i = int(rows[0, 0] - 1 - (0 if k < 3 else 30)) // 5
        assert torch.allclose(rows, sino[k // 3, i:i + 2])
    x = sino.clone().requires_grad_(True)
    projection_windows(x, 1, 2, gen).sum().backward()
    assert x.grad is not None
    for kwargs, match in [({"width": 7}, "width must be 1 to 6"), ({"count": 0}, "count must be >= 1"),
                          ({"norm": "max"}, "norm must be one of"), ({"norm": "sinogram"}, "needs the per-slice")]:
        args = {"width": 1, "count": 1, "norm": "row", **kwargs}
        with pytest.raises(ValueError, match=match):
            projection_windows(sino, args["width"], args["count"], gen, args["norm"])


def test_the_critic_takes_windows_of_its_width():
    c = ProjectionCritic(width=3)
    assert c(torch.rand(5, 3, 40)).shape == (5,)


# ---------------------------------------------------------------- the option of the wedge-filling stage
def _setup(wedge_data):
    sino, angles, _ = wedge_data
    proj = Projector(Geometry.create(angles, sino.shape[-1]), device="cpu")
    b = torch.from_numpy(sino)[None]
    rw = RWTV(proj, b, RWTVConfig(average_last=0))
    for _ in range(30):
        rw.step()
    return proj, b, rw.image().clone()


def _run(proj, b, x0, steps=3, **options):
    stage = WedgeFill(proj, b, WedgeFillConfig(**options), x0=x0, seed=1)
    for _ in range(steps):
        losses = stage.step()
    return stage, losses


def test_weight_zero_is_todays_stage_and_a_weight_changes_the_result(wedge_data):
    proj, b, x0 = _setup(wedge_data)
    plain, plain_losses = _run(proj, b, x0, **TINY)
    off, off_losses = _run(proj, b, x0, **dict(TINY, projection_count=3, projection_width=2,
                                               projection_real="image", projection_norm="sinogram"))
    assert off.proj_critic is None and "proj_d" not in off_losses
    assert torch.equal(off.image(), plain.image()) and off_losses["loss"] == plain_losses["loss"]
    on, losses = _run(proj, b, x0, **ADV)
    assert float((on.image() - plain.image()).abs().max()) > 1e-6
    assert losses["proj_d"] > 0 and losses["proj_g"] > 0
    # the missing sector (119, 179) at the measured step of 2 degrees: 30 projections
    assert on.missing_projector.n_angles == 30
    assert on.missing_projector.geometry.angles_deg.min() > 119 and on.missing_projector.geometry.angles_deg.max() < 180


@pytest.mark.parametrize("extra", [{}, {"projection_real": "image", "projection_norm": "sinogram",
                                        "projection_width": 3}])
def test_the_critic_learns_and_travels_with_the_state(wedge_data, extra):
    proj, b, x0 = _setup(wedge_data)
    cfg = dict(ADV, **extra)
    stage = WedgeFill(proj, b, WedgeFillConfig(**cfg), x0=x0)
    before = [p.detach().clone() for p in stage.proj_critic.parameters()]
    for _ in range(2):
        stage.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, stage.proj_critic.parameters()))
    assert all(p.requires_grad for p in stage.proj_critic.parameters())
    state = stage.state()
    assert {"proj_critic", "opt_proj"} <= set(state)
    other = WedgeFill(proj, b, WedgeFillConfig(**cfg), x0=x0, seed=5)
    other.load_state(state)
    assert all(torch.equal(a, p) for a, p in zip(stage.proj_critic.parameters(), other.proj_critic.parameters()))
    other.step()
    assert torch.isfinite(other.image()).all()


def test_a_state_for_another_window_width_is_refused(wedge_data):
    proj, b, x0 = _setup(wedge_data)
    state = _run(proj, b, x0, steps=1, **ADV)[0].state()
    with pytest.raises(ValueError, match="projection critic for windows of 1 angles, not 2"):
        WedgeFill(proj, b, WedgeFillConfig(**dict(ADV, projection_width=2)), x0=x0).load_state(state)


@pytest.mark.parametrize("field, value", [("projection_weight", -0.1), ("projection_weight", float("nan")),
                                          ("projection_count", 0), ("projection_width", 0),
                                          ("projection_real", "sinogram"), ("projection_norm", "max")])
def test_config_rejects_bad_projection_options(field, value):
    with pytest.raises(ValueError, match=f"WedgeFillConfig.{field} is out of range"):
        WedgeFillConfig(**{field: value})


def test_a_window_wider_than_the_missing_grid_is_refused_before_any_work(wedge_data):
    proj, b, x0 = _setup(wedge_data)
    with pytest.raises(ValueError, match=r"projection_width must be 1 to 30 neighbouring angles .*got 31"):
        WedgeFill(proj, b, WedgeFillConfig(**dict(ADV, projection_width=31)), x0=x0)
