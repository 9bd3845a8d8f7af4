import numpy as np
import pytest
import torch
from metrics import ssim
from skimage.transform import iradon

import napari_ganrec.methods as M
from napari_ganrec.geometry import Geometry, circle_mask
from napari_ganrec.methods.fbp import fbp, fourier_filter
from napari_ganrec.methods.rwtv import RWTV, RWTVConfig
from napari_ganrec.methods.sirt import SIRT
from napari_ganrec.methods.tv import TV, TVConfig
from napari_ganrec.projector import Projector


def _run(stage, n):
    losses = [stage.step() for _ in range(n)]
    return stage.image(), losses


@pytest.mark.parametrize("name", ["ramp", "shepp-logan", "hann"])
def test_fbp_matches_skimage_iradon(particle48, name):
    from napari_ganrec import phantoms

    p, _ = particle48
    angles = np.linspace(0, 180, 96, endpoint=False)
    sino = phantoms.simulate_sinogram(p, angles)
    proj = Projector(Geometry.create(angles, 48), device="cpu")
    ours = fbp(proj, torch.from_numpy(sino)[None], name)[0].numpy()
    ref = iradon(sino.T, theta=angles, circle=True, filter_name=name)
    m = circle_mask(48)
    assert np.linalg.norm((ours - ref)[m]) / np.linalg.norm(ref[m]) < 0.03


def test_unknown_filter_is_rejected():
    with pytest.raises(ValueError, match="filter"):
        fourier_filter(64, "butterworth")


def test_sirt_and_tv_beat_fbp_on_limited_angles(wedge_data):
    sino, angles, gt = wedge_data
    proj = Projector(Geometry.create(angles, 48), device="cpu")
    b = torch.from_numpy(sino)[None]
    s_fbp = ssim(gt, fbp(proj, b)[0].numpy())
    x_sirt, losses = _run(SIRT(proj, b), 100)
    residuals = [d["residual"] for d in losses]
    assert residuals[-1] < residuals[0]  # converges in data
    assert float(x_sirt.min()) >= 0  # non-negative
    x_tv, _ = _run(TV(proj, b, TVConfig(tv_weight=0.05)), 200)
    s_sirt, s_tv = ssim(gt, x_sirt[0].numpy()), ssim(gt, x_tv[0].numpy())
    assert s_sirt > s_fbp + 0.02
    assert s_tv > s_sirt + 0.05
    # reweighted TV, the same steps with reweighting, beats plain TV at the same weight and budget
    x_rw, rw_losses = _run(RWTV(proj, b, RWTVConfig(tv_weight=0.05, reweight_every=50)), 200)
    assert ssim(gt, x_rw[0].numpy()) > s_tv
    assert set(rw_losses[0]) == {"misfit", "abs_misfit"}
    assert rw_losses[-1]["misfit"] < rw_losses[0]["misfit"]


def test_tv_is_batched_per_slice(wedge_data):
    sino, angles, _ = wedge_data
    proj = Projector(Geometry.create(angles, 48), device="cpu")
    b = torch.from_numpy(np.stack([sino, 3 * sino]))
    for cls in (TV, RWTV):
        x, _ = _run(cls(proj, b), 50)
        # the weight scales with each slice's data: 3x the data gives 3x the image
        assert torch.allclose(x[1], 3 * x[0], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="tv_weight"):
        TVConfig(tv_weight=-1)
    with pytest.raises(ValueError, match="RWTVConfig.eps"):
        RWTVConfig(eps=0)


@pytest.mark.parametrize("cls", [SIRT, TV, RWTV])
def test_iterative_stages_start_from_an_initial_image_and_continue_from_their_state(wedge_data, cls):
    sino, angles, _ = wedge_data
    proj = Projector(Geometry.create(angles, 48), device="cpu")
    b = torch.from_numpy(sino)[None]
    x_ref, _ = _run(cls(proj, b), 40)
    # from an initial image: the first iterate is near it, not near zero
    first = cls(proj, b, x0=x_ref)
    first.step()
    assert torch.linalg.vector_norm(first.image() - x_ref) < 0.2 * torch.linalg.vector_norm(x_ref)
    # state -> load_state: 20 + 20 iterations equal 40
    a = cls(proj, b)
    _run(a, 20)
    state = a.state()
    assert state["stage"] == cls.name and all(not t.is_cuda for t in state.values() if torch.is_tensor(t))
    c = cls(proj, b)
    c.load_state(state)
    x_c, _ = _run(c, 20)
    if cls is RWTV:  # the running average restarts with the state: compare the last iterates
        assert torch.allclose(c.x, _last_iterate(proj, b, 40), atol=1e-5)
    else:
        assert torch.allclose(x_c, x_ref, atol=1e-5)


def _last_iterate(proj, b, n):
    s = RWTV(proj, b)
    _run(s, n)
    return s.x


def test_the_registry_is_the_one_list_of_methods():
    assert M.METHODS == ("fbp", "sirt", "tv", "rwtv", "ganrec", "wedgefill", "rwtv+ganrec", "rwtv+wedgefill")
    assert M.LABELS["rwtv"] == "reweighted TV" and M.LABELS["rwtv+ganrec"] == "reweighted TV + GANrec"
    assert M.DEFAULT_METHOD in M.METHODS
    plan = M.make_plan("rwtv+ganrec", {"rwtv": 300, "ganrec": 200})
    assert plan.describe(with_config=False) == {
        "method": "rwtv+ganrec", "stages": [{"name": "rwtv", "iterations": 300},
                                            {"name": "ganrec", "iterations": 200}]}
    assert M.make_plan("rwtv:300+ganrec:200", 7) == plan
    assert M.make_plan("fbp+tv", 9).describe(False)["stages"] == [{"name": "fbp", "iterations": 1},
                                                                  {"name": "tv", "iterations": 9}]
    assert plan.with_iterations(50).iterations == 100
    assert plan.with_iterations("rwtv:5+ganrec:6").iterations == 11
    with pytest.raises(ValueError, match="names stage"):
        plan.with_iterations({"sirt": 3})


def test_a_chain_passes_each_stage_image_to_the_next(wedge_data):
    sino, angles, _ = wedge_data
    proj = Projector(Geometry.create(angles, 48), device="cpu")
    b = torch.from_numpy(sino)[None]
    rw, _ = _run(RWTV(proj, b), 30)
    records = list(M.iter_chain(M.make_plan("rwtv+sirt", {"rwtv": 30, "sirt": 1}), proj, b))
    first_stage_end = records[29]
    assert first_stage_end.image is not None and torch.allclose(first_stage_end.image, rw)
    # SIRT's one step started from that image: its result is close to it, far from SIRT from zero
    cold, _ = _run(SIRT(proj, b), 1)
    last = records[-1].image
    assert torch.linalg.vector_norm(last - rw) < torch.linalg.vector_norm(cold - rw)
    assert records[-1].finished and set(records[-1].states) == {"rwtv", "sirt"}
