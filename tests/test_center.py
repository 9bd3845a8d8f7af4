"""Centre of rotation: synthetic scans with known centres and the APS tooth scan."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _io_fixtures import TOOTH

from napari_ganrec import center as C
from napari_ganrec.geometry import Geometry
from napari_ganrec.methods.fbp import fbp
from napari_ganrec.phantoms import ground_truth, porous_particle
from napari_ganrec.projector import Projector, project

N = 64


@pytest.fixture(scope="module")
def image():
    return ground_truth(porous_particle(N, seed=1))


def test_center_scan_matches_classical_fbp(image):
    a = np.arange(0, 180, 2.0)
    sino = project(image, a, center=34.5)
    with torch.no_grad():
        ref = fbp(Projector(Geometry.create(a, N, 34.5), "cpu"), torch.from_numpy(sino)[None])
    scan = C.center_scan(sino, a, [34.5, 30.0])
    assert scan.shape == (2, N, N)
    assert np.corrcoef(scan[0].ravel(), ref[0].numpy().ravel())[0, 1] > 0.999
    assert C.sharpness(scan[0]) > C.sharpness(scan[1])


@pytest.mark.parametrize("c_true", [28.6, 32.0, 35.3])
def test_vo_and_phase_correlation(image, c_true):
    a180 = np.arange(0, 180, 1.5)
    assert C.find_center_vo(project(image, a180, center=c_true), a180) == pytest.approx(
        c_true, abs=0.3)
    a360 = np.arange(0, 360, 3.0)
    s360 = project(image, a360, center=c_true)
    assert C.find_center_pc(s360, a360) == pytest.approx(c_true, abs=0.3)
    assert C.find_center(s360, a360) == pytest.approx(c_true, abs=0.3)  # auto -> pc


@pytest.mark.parametrize("c_true", [45.7, 52.4])
def test_limited_angle_sharpness_search(c_true):
    img = ground_truth(porous_particle(96, seed=1))
    a = np.arange(-60, 60, 2.0)
    sino = project(img, a, center=c_true)
    c = C.find_center(sino, a, method="sharpness")  # FBP sharpness (tv) search
    assert c == pytest.approx(c_true, abs=1.0)


@pytest.mark.parametrize("c_true, span", [(30.0, (-35, 35)), (35.5, (0, 120)), (28.0, (0, 90))])
def test_limited_angle_auto_uses_centre_of_mass_fit(c_true, span):
    """The paper's 51-projection +-35 degree scan: the centroid sinusoid gives the centre exactly,
    from data simulated on a finer grid with another projector."""
    from napari_ganrec.phantoms import simulate_sinogram

    a = np.linspace(span[0], span[1], 51)
    sino = simulate_sinogram(porous_particle(64, seed=1), a, center=c_true)
    assert C.find_center(sino, a) == pytest.approx(c_true, abs=0.05)  # auto -> com
    assert C.find_center_com(sino, a) == pytest.approx(c_true, abs=0.05)
    with pytest.raises(ValueError, match="three projections"):
        C.find_center_com(sino[:2], a[:2])


def test_center_errors(image):
    a = np.arange(0, 90, 2.0)
    sino = project(image, a)
    with pytest.raises(ValueError, match="180 degrees"):
        C.find_center_vo(sino, a)
    with pytest.raises(ValueError, match="180 degrees apart"):
        C.find_center_pc(sino, a)
    with pytest.raises(ValueError, match="method must be"):
        C.find_center(sino, a, method="magic")
    with pytest.raises(ValueError, match="angles has 3 values"):
        C.center_scan(sino, [0, 1, 2], [32])


@pytest.mark.skipif(not TOOTH.is_file(), reason="shared/data/tooth.h5 not available")
def test_tooth_auto_center_matches_fine_scan_and_sharpens_fbp():
    from napari_ganrec.io import read_tomo
    from napari_ganrec.preprocess import bin_stack

    with read_tomo(TOOTH) as d:
        sino = d.sinograms(rows=slice(0, 1))[0]
        angles = d.angles
    auto = C.find_center(sino, angles)  # 180 degrees -> Vo's method
    # fine manual scan: 0.25 px steps around the detector middle region of the object
    centers = np.arange(np.round(auto) - 3, np.round(auto) + 3.01, 0.25)
    best, scores = C.fine_scan(sino, angles, centers, size=384)
    print(f"tooth: automatic centre {auto:.2f}, fine-scan optimum {best:.2f}")
    assert abs(auto - best) <= 1.0
    assert scores.argmax() not in (0, len(centers) - 1)  # a true optimum, not the scan's edge
    # FBP (classical, on the projector) at the found centre beats the default centre, binned 2x
    b = bin_stack(sino[:, None, :], (1, 2))[:, 0, :]
    n = b.shape[1]
    recs = []
    for c in ((auto - 0.5) / 2, n / 2):  # binned bin k covers pixels 2k, 2k+1
        proj = Projector(Geometry.create(angles, n, c), "cpu", method="rotate")
        with torch.no_grad():
            recs.append(fbp(proj, torch.from_numpy(b)[None])[0].numpy())
    assert C.sharpness(recs[0]) > 1.05 * C.sharpness(recs[1])


@pytest.mark.parametrize("span, method", [((0, 180), "vo"), ((0, 360), "pc"), ((-35, 35), "com"),
                                          ((0, 120), "com")])
def test_estimate_center_says_which_method_found_it(image, span, method):
    from napari_ganrec.geometry import angles_from_range

    a = angles_from_range(span[0], span[1], 90)
    sino = project(image, a, center=33.0)
    est = C.estimate_center(sino, a)
    assert est.method == method == C.auto_center_method(a)
    assert est.center == pytest.approx(33.0, abs=0.5)
    assert est.label == C.CENTER_METHOD_LABELS[method]
    assert C.find_center(sino, a) == est.center
    forced = C.estimate_center(sino, a, method="sharpness")
    assert forced.method == "sharpness"
    with pytest.raises(ValueError, match="method must be"):
        C.estimate_center(sino, a, method="magic")


def test_the_cli_uses_the_same_automatic_centre(image):
    from napari_ganrec.cli.reconstruct import _resolve_center

    a = np.arange(0, 180, 2.0)
    sino = project(image, a, center=30.5)
    assert _resolve_center(None, sino, a) == C.estimate_center(sino, a).center
    assert _resolve_center("31.25", sino, a) == 31.25
