"""Self-supervised wedge filling (#15, experiment 1): the wedge helpers and the ``wedgefill`` stage."""

import numpy as np
import pytest
import torch

import napari_ganrec as ng
from napari_ganrec.geometry import Geometry
from napari_ganrec.methods import METHODS, REGISTRY, make_plan
from napari_ganrec.methods.rwtv import RWTV, RWTVConfig
from napari_ganrec.methods.wedge import (
    Sector,
    fourier_energy,
    measured_mask,
    missing_sector,
    remove_wedge,
    rotate,
)
from napari_ganrec.methods.wedgefill import WedgeFill, WedgeFillConfig, WedgeNet, dilations
from napari_ganrec.projector import Projector

TINY = {"channels": 4, "depth": 1, "pool": 2, "pool_iterations": 10, "rotations": 2, "average_last": 0}


def _wave(n: int, phi_deg: float, f: float = 0.15) -> np.ndarray:
    """A Gaussian-windowed plane wave whose wave vector ``(ky, kx)`` has the orientation ``phi``."""
    yy, xx = np.mgrid[0:n, 0:n] - n / 2
    phi = np.deg2rad(phi_deg)
    env = np.exp(-(xx**2 + yy**2) / (2 * (n / 6) ** 2))
    return (env * np.cos(2 * np.pi * f * (np.sin(phi) * yy + np.cos(phi) * xx))).astype(np.float32)


def _orientation(img: np.ndarray) -> float:
    """Orientation ``atan2(ky, kx)`` (degrees mod 180) of the strongest Fourier component."""
    p = np.abs(np.fft.fft2(img)) ** 2
    f = np.fft.fftfreq(img.shape[0])
    ky, kx = np.meshgrid(f, f, indexing="ij")
    i = int(np.argmax(p))
    return float(np.rad2deg(np.arctan2(ky.flat[i], kx.flat[i])) % 180)


def _angle_diff(a: float, b: float) -> float:
    d = (a - b) % 180
    return min(d, 180 - d)


# ---------------------------------------------------------------- helpers
def test_missing_sector_is_the_largest_gap_less_half_a_step_each_side():
    assert missing_sector(np.arange(0, 120, 1.0)) == Sector(119.5, 60.0)
    s = missing_sector(np.linspace(-35, 35, 51))
    assert s.start == pytest.approx(35.7) and s.width == pytest.approx(108.6)
    assert missing_sector(np.arange(0, 180, 1.0)) is None  # full range: no wedge
    assert missing_sector(np.arange(0, 176, 1.0), min_width=5.0) is None  # a 4 degree gap
    assert missing_sector(np.arange(0, 170, 1.0)).width == pytest.approx(10.0)
    assert Sector(10.0, 50.0).shifted(30.0) == Sector(160.0, 50.0)


@pytest.mark.parametrize("angles, match", [([10.0], "two distinct"), ([0.0, 180.0], "two distinct"),
                                           ([0.0, np.nan, 3.0], "finite")])
def test_missing_sector_rejects_bad_angles(angles, match):
    with pytest.raises(ValueError, match=match):
        missing_sector(angles)
    with pytest.raises(ValueError, match="min_width"):
        missing_sector([0.0, 1.0], min_width=-1)


def test_the_projector_measures_the_orientation_minus_theta():
    """The module's convention: orientation ``phi`` is seen by the projection at ``-phi mod 180``."""
    n = 48
    angles = np.arange(0, 180, 1.0)
    proj = Projector(Geometry.create(angles, n), device="cpu")
    for phi in (20.0, 75.0, 130.0):
        sino = proj.forward(torch.from_numpy(_wave(n, phi))).numpy()
        theta = float(angles[np.argmax((sino**2).sum(axis=1))])
        assert _angle_diff(theta, -phi) <= 1.0


def test_the_mask_removes_exactly_the_missing_sectors_fourier_energy():
    n = 48
    sector = missing_sector(np.arange(0, 120, 1.0))  # theta in (119.5, 179.5): phi in (0.5, 60.5)
    m = measured_mask(n, sector)
    assert m.shape == (n, n) and float(m[0, 0]) == 1.0
    assert torch.equal(m, torch.roll(torch.flip(m, (0, 1)), (1, 1), (0, 1)))  # k -> -k symmetric
    x = torch.from_numpy(np.random.default_rng(0).random((3, n, n)).astype(np.float32))
    removed = remove_wedge(x, m)
    lost = fourier_energy(x) - fourier_energy(removed)
    assert torch.allclose(lost, fourier_energy(x, 1 - m), rtol=1e-4)
    assert torch.allclose(fourier_energy(removed, 1 - m), torch.zeros(3), atol=1e-3)
    inside = torch.from_numpy(_wave(n, 30.0))  # theta = 150: missing
    outside = torch.from_numpy(_wave(n, 100.0))  # theta = 80: measured
    assert float(fourier_energy(remove_wedge(inside, m)) / fourier_energy(inside)) < 1e-3
    assert float(fourier_energy(remove_wedge(outside, m)) / fourier_energy(outside)) > 0.99
    assert torch.equal(measured_mask(n, None), torch.ones(n, n))
    # about a third of the directions is missing: 60 of 180 degrees
    assert float((1 - m).mean()) == pytest.approx(60 / 180, abs=0.03)


def test_rotate_turns_the_orientation_by_alpha_and_the_sector_moves_with_it():
    n = 48
    x = torch.from_numpy(np.stack([_wave(n, 10.0), _wave(n, 50.0)]))
    r = rotate(x, torch.tensor([30.0, 30.0]))
    assert _angle_diff(_orientation(r[0].numpy()), 40.0) <= 3.0
    assert _angle_diff(_orientation(r[1].numpy()), 80.0) <= 3.0
    assert torch.allclose(rotate(x, torch.zeros(2)), x, atol=1e-5)
    sector = missing_sector(np.arange(0, 120, 1.0))
    yy, xx = np.mgrid[0:n, 0:n] - n / 2
    env = np.exp(-(xx**2 + yy**2) / (2 * (n / 6) ** 2))  # no edges for the rotation to cut
    img = torch.from_numpy((np.random.default_rng(1).standard_normal((1, n, n)) * env).astype(np.float32))
    turned = rotate(remove_wedge(img, measured_mask(n, sector)), torch.tensor([40.0]))

    def lost(s):
        return float(fourier_energy(turned, 1 - measured_mask(n, s)))

    # the rotated image lacks the shifted sector (up to interpolation), not the original nor the other way
    assert lost(sector.shifted(40.0)) < 0.25 * lost(sector)
    assert lost(sector.shifted(40.0)) < 0.25 * lost(sector.shifted(-40.0))
    with pytest.raises(ValueError, match=r"images \(B, n, n\) and angles \(B,\)"):
        rotate(x, torch.zeros(3))


# ---------------------------------------------------------------- the stage
def _setup(sino, angles):
    proj = Projector(Geometry.create(angles, sino.shape[-1]), device="cpu")
    return proj, torch.from_numpy(sino)[None]


def _rwtv_image(proj, b, iterations=30):
    rw = RWTV(proj, b, RWTVConfig(average_last=0))
    for _ in range(iterations):
        rw.step()
    return rw.image().clone()


def test_the_network_starts_as_the_identity_with_the_stated_dilations():
    assert dilations(4) == (1, 2, 4, 8, 8, 4, 2, 1) and dilations(1) == (1, 1)
    net = WedgeNet(4, dilations(2))
    assert [c.dilation[0] for c in net.blocks] == [1, 2, 2, 1]
    x = torch.rand(2, 20, 20)
    assert torch.equal(net(x), x)


def test_registered_and_offered_as_a_chain():
    assert "wedgefill" in REGISTRY and "rwtv+wedgefill" in METHODS
    assert ng.LABELS["rwtv+wedgefill"] == "reweighted TV + wedge filling"
    plan = make_plan("rwtv:40+wedgefill:5", options={"tv_weight": 0.3})
    assert [s.name for s in plan.stages] == ["rwtv", "wedgefill"]
    assert plan.stages[1].config.tv_weight == 0.3  # the re-projection's reweighted TV gets it too


@pytest.mark.parametrize("removal", ["reproject", "fourier"])
def test_runs_through_the_api_and_fits_the_data(wedge_data, removal):
    sino, angles, gt = wedge_data
    steps = list(ng.iter_reconstruct(sino, angles, method="rwtv+wedgefill", device="cpu", preview_every=1,
                                     iterations={"rwtv": 40, "wedgefill": 4},
                                     wedgefill=dict(TINY, removal=removal)))
    assert [s.stage for s in steps[-4:]] == ["wedgefill"] * 4
    last = steps[-1]
    assert last.image.shape == (48, 48) and np.isfinite(last.image).all() and last.image.min() >= 0
    assert {"loss", "restore", "misfit", "wedge_deg"} <= set(last.losses)  # (the engine adds its residual)
    assert last.losses["wedge_deg"] == pytest.approx(60.0)  # 0-118 in steps of 2: a gap of 62, less one step
    assert 0 < last.losses["misfit"] < 1e-2 and last.losses["restore"] > 0
    # a few steps from reweighted TV's image stay near it: a correlation with the truth like it
    rw = ng.reconstruct(sino, angles, method="rwtv", iterations=40, device="cpu")
    assert np.corrcoef(last.image.ravel(), gt.ravel())[0, 1] > np.corrcoef(rw.ravel(), gt.ravel())[0, 1] - 0.05


def test_the_untrained_network_returns_the_initial_image(wedge_data):
    sino, angles, _ = wedge_data
    proj, b = _setup(sino, angles)
    x0 = _rwtv_image(proj, b)
    stage = WedgeFill(proj, b, WedgeFillConfig(**TINY), x0=x0)
    assert torch.allclose(stage.image(), x0 * stage.mask, atol=1e-5 * float(x0.max()))
    alone = WedgeFill(proj, b, WedgeFillConfig(**TINY))  # method="wedgefill": from the non-negative FBP
    assert float(alone.image().min()) >= 0 and float(alone.image().max()) > 0


def test_state_round_trip_gives_the_same_image_and_rejects_other_networks(wedge_data):
    sino, angles, _ = wedge_data
    proj, b = _setup(sino, angles)
    x0 = _rwtv_image(proj, b)
    a = WedgeFill(proj, b, WedgeFillConfig(**TINY), x0=x0, seed=1)
    for _ in range(3):
        a.step()
    state = a.state()
    assert state["stage"] == "wedgefill" and state["iteration"] == 3
    assert all(v.device.type == "cpu" for v in state["net"].values())
    moved = float((a.image() - x0).abs().max())
    assert moved > 0  # the network learned something
    b2 = WedgeFill(proj, b, WedgeFillConfig(**TINY), x0=x0, seed=2)
    b2.load_state(state)
    assert torch.allclose(b2.image(), a.image(), atol=1e-6)
    b2.step()  # and it continues (the optimiser state came along)
    assert torch.isfinite(b2.image()).all()
    with pytest.raises(ValueError, match="another wedgefill network"):
        WedgeFill(proj, b, WedgeFillConfig(**dict(TINY, channels=5)), x0=x0).load_state(state)
    with pytest.raises(ValueError, match="not of the 'wedgefill' stage"):
        a.load_state({"stage": "rwtv"})
    small = torch.from_numpy(sino[:, :40])[None]
    with pytest.raises(ValueError, match="made for 48 px images, not 40"):
        WedgeFill(Projector(Geometry.create(angles, 40), device="cpu"), small,
                  WedgeFillConfig(**TINY)).load_state(state)


def test_warm_start_through_the_api(wedge_data):
    sino, angles, _ = wedge_data
    opts = dict(method="rwtv+wedgefill", device="cpu", iterations={"rwtv": 20, "wedgefill": 3}, wedgefill=TINY)
    first = list(ng.iter_reconstruct(sino, angles, **opts))[-1]
    again = list(ng.iter_reconstruct(sino, angles, warm_start=first.state, **opts))[-1]
    assert again.state["wedgefill"]["iteration"] == 3
    assert np.isfinite(again.image).all()


def test_full_range_is_refused_before_any_stage_runs():
    """No wedge: a clear error from the stage, and from a chain before its reweighted TV starts
    (a result labelled "wedge filling" would otherwise be reweighted TV's image)."""
    import napari_ganrec as ng
    from napari_ganrec import phantoms

    p = phantoms.porous_particle(32, n_pores=4, n_inclusions=1, seed=2)
    angles = np.arange(0, 180, 2.0)
    sino = phantoms.simulate_sinogram(p, angles)
    proj, b = _setup(sino, angles)
    with pytest.raises(ValueError, match="wedge filling needs a missing wedge.*90 angles.*use method='rwtv'"):
        WedgeFill(proj, b, WedgeFillConfig(**TINY), x0=_rwtv_image(proj, b, 2))
    steps = ng.iter_reconstruct(sino, angles, method="rwtv+wedgefill", iterations={"rwtv": 5, "wedgefill": 2})
    with pytest.raises(ValueError, match="wedge filling needs a missing wedge"):
        next(steps)  # before the first reweighted-TV iteration
    gap10 = np.arange(0, 170, 2.0)  # a 10-degree gap: a wedge, unless the threshold is higher
    assert WedgeFillConfig().check_angles(gap10) is None
    with pytest.raises(ValueError, match="no gap wider than 20 degrees"):
        WedgeFillConfig(min_wedge_deg=20.0).check_angles(gap10)


def test_reprojection_strength_follows_the_data_as_reweighted_tv_does():
    """tv_weight/eps "auto": the chain's two stages choose one setting; numbers given win."""
    import napari_ganrec as ng
    from napari_ganrec import phantoms
    from napari_ganrec.methods.rwtv import RWTVConfig

    p = phantoms.porous_particle(32, n_pores=4, n_inclusions=1, seed=2)
    angles = np.arange(0, 120, 2.0)
    clean = phantoms.simulate_sinogram(p, angles)
    noisy = phantoms.add_poisson_noise(clean, 3e3, seed=1)
    assert WedgeFillConfig().tv_weight == "auto" and WedgeFillConfig().eps == "auto"
    assert WedgeFillConfig().resolved(clean).tv_weight == pytest.approx(0.1)
    rw = RWTVConfig().resolved(noisy)
    wf = WedgeFillConfig().resolved(noisy)
    assert rw.tv_weight > 0.1 and (wf.tv_weight, wf.eps) == (rw.tv_weight, rw.eps)
    assert WedgeFillConfig(tv_weight=0.05).resolved(noisy).tv_weight == 0.05  # given: kept
    plan = ng.make_plan("rwtv+wedgefill").resolved(noisy)
    first, second = (s.config for s in plan.stages)
    assert (second.tv_weight, second.eps) == (first.tv_weight, first.eps) == (rw.tv_weight, rw.eps)
    proj, b = _setup(noisy, angles)
    stage = WedgeFill(proj, b, WedgeFillConfig(**TINY), x0=_rwtv_image(proj, b, 2))
    assert (stage.config.tv_weight, stage.config.eps) == (rw.tv_weight, rw.eps)  # what its copies use
    with pytest.raises(ValueError, match="WedgeFillConfig.tv_weight must be 'auto' or a finite number"):
        WedgeFillConfig(tv_weight="strong")


@pytest.mark.parametrize("field, value", [("removal", "sirt"), ("channels", 0), ("depth", 0),
                                          ("depth", 9), ("pool", 0), ("pool_iterations", 0),
                                          ("lr", 0.0), ("data_weight", -1.0), ("min_wedge_deg", 180.0),
                                          ("rotations", 0)])
def test_config_rejects_out_of_range_fields(field, value):
    with pytest.raises(ValueError, match=f"WedgeFillConfig.{field} is out of range"):
        WedgeFillConfig(**{field: value})


def test_unknown_option_is_named(wedge_data):
    sino, angles, _ = wedge_data
    with pytest.raises(ValueError, match=r"unknown wedgefill option\(s\) \['rotation'\]"):
        ng.reconstruct(sino, angles, method="rwtv+wedgefill", iterations=2, wedgefill={"rotation": 3})


def test_the_result_averages_the_last_images(wedge_data):
    sino, angles, _ = wedge_data
    proj, b = _setup(sino, angles)
    stage = WedgeFill(proj, b, WedgeFillConfig(**dict(TINY, average_last=50)), x0=_rwtv_image(proj, b))
    seen = []
    for _ in range(3):
        stage.step()
        seen.append(stage.current.clone())
    assert not torch.allclose(seen[0], seen[2])
    assert torch.allclose(stage.image(), torch.stack(seen).mean(0) * stage.x_scale, atol=1e-6)


# ---------------------------------------------------------------- experiment 2: the orientation critic
def test_orientation_views_show_measured_and_missing_directions():
    from napari_ganrec.methods.orientation import orientation_views

    n = 64
    sector = missing_sector(np.linspace(-35, 35, 51))
    noise = torch.from_numpy(np.random.default_rng(3).standard_normal((1, n, n)).astype(np.float32))
    image = remove_wedge(noise, measured_mask(n, sector)).requires_grad_(True)
    gen = torch.Generator().manual_seed(0)
    real, fake = orientation_views(image, sector, 16, 8, gen)
    assert real.shape == fake.shape == (8, 16, 16)
    # along x (the reference angle 0's wave vectors after the turn), real views vary, fake ones hardly
    def along_x(p):
        return float((p[..., :, 1:] - p[..., :, :-1]).detach().pow(2).mean())

    assert along_x(fake) < 0.5 * along_x(real)
    fake.sum().backward()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="orientation patch must be 4 to 43 px for 64 px images, got 50"):
        orientation_views(image, sector, 50, 1, gen)


def test_the_orientation_prior_trains_a_critic_and_saves_it(wedge_data):
    sino, angles, _ = wedge_data
    proj, b = _setup(sino, angles)
    cfg = WedgeFillConfig(**dict(TINY, orientation_weight=0.1, orientation_patch=16))
    stage = WedgeFill(proj, b, cfg, x0=_rwtv_image(proj, b))
    before = [p.detach().clone() for p in stage.critic.parameters()]
    for _ in range(2):
        losses = stage.step()
    assert losses["orient_d"] > 0 and losses["orient_g"] > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, stage.critic.parameters()))
    assert all(p.requires_grad for p in stage.critic.parameters())
    state = stage.state()
    other = WedgeFill(proj, b, cfg, x0=_rwtv_image(proj, b), seed=5)
    other.load_state(state)
    assert all(torch.equal(a, p) for a, p in zip(stage.critic.parameters(), other.critic.parameters()))
    with pytest.raises(ValueError, match="orientation patch must be 4 to 31 px for 48 px images, got 40"):
        WedgeFill(proj, b, WedgeFillConfig(**dict(TINY, orientation_weight=0.1, orientation_patch=40)))
