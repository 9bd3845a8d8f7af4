import numpy as np
import pytest

from napari_ganrec.geometry import (
    Geometry,
    angles_from_range,
    circle_mask,
    validate_angles,
    validate_sinogram,
)


def test_angles_from_range_full_scan_excludes_endpoint_and_tilt_series_includes_it():
    full = angles_from_range(0, 180, 180)
    assert full[-1] == pytest.approx(179.0)
    tilt = angles_from_range(-70, 70, 141)
    assert tilt[0] == -70 and tilt[-1] == 70
    assert angles_from_range(0, 180, 181)[-1] == 180  # DXchange-style inclusive full scan
    assert angles_from_range(0, 120, 120)[-1] == pytest.approx(119.0)  # one per degree
    assert angles_from_range(-35, 35, 51)[-1] == 35  # the paper's ptychography scan
    assert angles_from_range(0, 120, 40, endpoint=True)[-1] == 120
    with pytest.raises(ValueError, match="angle count"):
        angles_from_range(0, 180, 0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 3)), "1-D"),
        ([], "empty"),
        ([0.0, np.nan, 2.0], "NaN"),
        ("abc", "numbers"),
    ],
)
def test_validate_angles_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_angles(bad)


def test_validate_angles_count_mismatch_names_both_counts():
    with pytest.raises(ValueError, match="3 values but the sinogram has 4"):
        validate_angles([0, 1, 2], n_angles=4)


def test_radians_warn():
    with pytest.warns(UserWarning, match="radians"):
        validate_angles(np.linspace(0, np.pi, 30))


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(5), "2-D"),
        (np.zeros((2, 2, 2, 2)), "2-D"),
        (np.zeros((0, 5)), "empty"),
        (np.zeros((5, 1)), "at least 2"),
        (np.array([[1.0, np.inf], [0, 0]]), "NaN or infinite"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    ],
)
def test_validate_sinogram_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_sinogram(bad)


def test_validate_sinogram_returns_contiguous_float32():
    s = validate_sinogram(np.arange(12, dtype=np.int64).reshape(3, 4).T)
    assert s.dtype == np.float32 and s.flags.c_contiguous and s.shape == (4, 3)


def test_geometry_defaults_and_center_validation():
    geo = Geometry.create(np.arange(10.0), 64)
    assert geo.center == 32.0 and geo.n_angles == 10 and geo.image_shape == (64, 64)
    with pytest.raises(ValueError, match="center"):
        Geometry.create(np.arange(10.0), 64, center=100)
    with pytest.raises(ValueError, match="n_det"):
        Geometry.create(np.arange(10.0), 1)


def test_angular_weights_cover_the_scanned_range():
    full = Geometry.create(angles_from_range(0, 180, 90), 16).angular_weights()
    assert full.sum() == pytest.approx(np.pi)
    assert np.allclose(full, np.pi / 90)
    limited = Geometry.create(np.linspace(0, 120, 120, endpoint=False), 16).angular_weights()
    assert limited.sum() == pytest.approx(np.deg2rad(120), rel=1e-6)
    full360 = Geometry.create(angles_from_range(0, 360, 360), 16).angular_weights()
    assert full360.sum() == pytest.approx(np.pi)


def test_circle_mask_is_symmetric_disk():
    m = circle_mask(32)
    assert m[16, 16] and not m[0, 0]
    assert m.sum() == pytest.approx(np.pi * 16**2, rel=0.03)
