import numpy as np
import pytest

import napari_ganrec as ng


@pytest.mark.parametrize("method", ["fbp", "sirt", "tv", "ganrec"])
def test_every_method_returns_float32_images_of_the_api_shape(wedge_data, method):
    sino, angles, _ = wedge_data
    rec = ng.reconstruct(sino, angles, method=method, iterations=4, device="cpu")
    assert rec.shape == (48, 48) and rec.dtype == np.float32
    stack = ng.reconstruct(np.stack([sino, sino]), angles, method=method, iterations=4, device="cpu")
    assert stack.shape == (2, 48, 48)
    assert np.allclose(stack[0], stack[1], atol=1e-4 * float(np.abs(stack).max()) + 1e-6)


def test_previews_come_every_n_iterations_and_at_the_end(wedge_data):
    sino, angles, _ = wedge_data
    steps = list(ng.iter_reconstruct(sino, angles, iterations=7, preview_every=3, device="cpu",
                                     with_residual=True))
    assert [s.image is not None for s in steps] == [False, False, True, False, False, True, True]
    assert all({"g_loss", "d_loss", "l1"} <= set(s.losses) for s in steps)
    assert steps[-1].residual.shape == sino.shape
    assert "residual" in steps[-1].losses


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="art"), "method must be one of"),
        (dict(iterations=0), "iterations must be a positive integer"),
        (dict(iterations=2.5), "iterations must be a positive integer"),
        (dict(preview_every=0), "preview_every"),
        (dict(device="gpu7"), "device"),
        (dict(center=1e6), "center"),
        (dict(method="tv", l1_weight=2), "only apply to method='ganrec'"),
        (dict(lr_gen=1e-3), "unknown GANrec option"),
        (dict(filter_name="bogus"), "filter_name"),
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


def test_tv_weight_reaches_the_ganrec_prior(wedge_data):
    """tv_weight is also a GANrec option (its prior's weight); it must not be swallowed by the
    TV method's own argument."""
    from napari_ganrec.volume import iter_volume

    sino, angles, _ = wedge_data
    step = next(ng.iter_reconstruct(sino, angles, iterations=2, device="cpu", tv_weight=0.5))
    assert step.solver.config.tv_weight == 0.5
    step = next(ng.iter_reconstruct(sino, angles, iterations=2, device="cpu"))
    assert step.solver.config.tv_weight == ng.PRESETS["default"].tv_weight
    weak = ng.reconstruct(sino, angles, iterations=60, device="cpu", tv_weight=0.001)
    strong = ng.reconstruct(sino, angles, iterations=60, device="cpu", tv_weight=3.0)
    assert np.abs(np.diff(strong, axis=0)).sum() < 0.8 * np.abs(np.diff(weak, axis=0)).sum()
    states = []
    for _ in iter_volume(np.stack([sino, sino]), angles, iterations=2, warm_iterations=1, device="cpu",
                         tv_weight=0.7, state_out=states):
        pass
    assert states and states[-1].config.tv_weight == 0.7
