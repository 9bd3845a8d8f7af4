import numpy as np
import pytest

import napari_ganrec as ng


@pytest.mark.parametrize("method", ng.METHODS)
def test_every_method_returns_float32_images_of_the_api_shape(wedge_data, method):
    sino, angles, _ = wedge_data
    rec = ng.reconstruct(sino, angles, method=method, iterations=4, device="cpu")
    assert rec.shape == (48, 48) and rec.dtype == np.float32
    stack = ng.reconstruct(np.stack([sino, sino]), angles, method=method, iterations=4, device="cpu")
    assert stack.shape == (2, 48, 48)
    assert np.allclose(stack[0], stack[1], atol=1e-4 * float(np.abs(stack).max()) + 1e-6)


def test_previews_come_every_n_iterations_and_at_the_end(wedge_data):
    sino, angles, _ = wedge_data
    steps = list(ng.iter_reconstruct(sino, angles, method="ganrec", iterations=7, preview_every=3,
                                     device="cpu", with_residual=True))
    assert [s.image is not None for s in steps] == [False, False, True, False, False, True, True]
    assert all({"g_loss", "d_loss", "l1"} <= set(s.losses) for s in steps)
    assert steps[-1].residual.shape == sino.shape
    assert "residual" in steps[-1].losses


def test_a_chain_counts_iterations_over_its_stages_and_names_each(wedge_data):
    sino, angles, _ = wedge_data
    steps = list(ng.iter_reconstruct(sino, angles, method="rwtv+ganrec", iterations={"rwtv": 4, "ganrec": 3},
                                     preview_every=2, device="cpu"))
    assert [s.iteration for s in steps] == list(range(1, 8)) and steps[-1].iterations == 7
    assert [s.stage for s in steps] == ["rwtv"] * 4 + ["ganrec"] * 3
    assert [s.stage_iteration for s in steps] == [1, 2, 3, 4, 1, 2, 3]
    # reweighted TV reports its own misfit, not a generator loss
    assert set(steps[0].losses) == {"misfit", "abs_misfit"}
    assert {"g_loss", "d_loss", "l1", "adv"} <= set(steps[-1].losses)
    assert set(steps[-1].state) == {"rwtv", "ganrec"}
    # the same plan as a spec string
    again = list(ng.iter_reconstruct(sino, angles, method="rwtv:4+ganrec:3", device="cpu", preview_every=7))
    np.testing.assert_array_equal(again[-1].image, steps[-1].image)


def test_default_method_is_the_registry_recommendation(wedge_data):
    sino, angles, _ = wedge_data
    step = next(ng.iter_reconstruct(sino, angles, iterations=2, device="cpu"))
    assert step.stage == ng.DEFAULT_METHOD.split("+")[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="art"), "unknown stage 'art'"),
        (dict(method="rwtv+fbp"), "FBP ignores an initial image"),
        (dict(method="rwtv+ganrec", iterations={"rwtv": 3}), "no count for the stage 'ganrec'"),
        (dict(method="rwtv", iterations={"ganrec": 3}), "not in the method"),
        (dict(iterations=0), "iterations must be a positive integer"),
        (dict(iterations=2.5), "iterations must be a positive integer"),
        (dict(preview_every=0), "preview_every"),
        (dict(device="gpu7"), "device"),
        (dict(center=1e6), "center"),
        (dict(method="tv", l1_weight=2), "unknown option 'l1_weight' for method 'tv'"),
        (dict(method="ganrec", lr_gen=1e-3), "unknown option 'lr_gen'"),
        (dict(method="ganrec", gan_weight=0), "GANrecConfig.gan_weight is out of range"),
        (dict(method="fbp", filter_name="bogus"), "filter_name"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(wedge_data, kwargs, message):
    sino, angles, _ = wedge_data
    with pytest.raises(ValueError, match=message):
        ng.reconstruct(sino, angles, **kwargs)


def test_data_errors(wedge_data):
    sino, angles, _ = wedge_data
    with pytest.raises(ValueError, match="has 59 values but the sinogram has 60"):
        ng.reconstruct(sino, angles[:-1])
    bad = sino.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ng.reconstruct(bad, angles)
    with pytest.raises(ValueError, match="empty"):
        ng.reconstruct(np.zeros((0, 48)), [])
    with pytest.warns(UserWarning, match="radians"):
        ng.reconstruct(sino, np.deg2rad(angles), method="fbp", device="cpu")


def test_tv_weight_reaches_every_stage_that_has_one(wedge_data):
    """tv_weight goes to each stage of the method that has that field (TV, reweighted TV)."""
    from napari_ganrec.methods import make_plan

    plan = make_plan("rwtv+ganrec", 2, {"tv_weight": 0.5})
    assert plan.stages[0].config.tv_weight == 0.5
    assert make_plan("tv", 2, {"tv_weight": 0.7}).stages[0].config.tv_weight == 0.7
    per_stage = make_plan("rwtv+ganrec", 2, {"ganrec": {"lr_g": 5e-4}})
    assert per_stage.stages[1].config.lr_g == 5e-4 and per_stage.stages[0].config.tv_weight == "auto"
    sino, angles, _ = wedge_data
    weak = ng.reconstruct(sino, angles, method="rwtv", iterations=60, device="cpu", tv_weight=0.001)
    strong = ng.reconstruct(sino, angles, method="rwtv", iterations=60, device="cpu", tv_weight=3.0)
    assert np.abs(np.diff(strong, axis=0)).sum() < 0.8 * np.abs(np.diff(weak, axis=0)).sum()
