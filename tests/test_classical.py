import numpy as np
import pytest
import torch
from metrics import ssim
from skimage.transform import iradon

from napari_ganrec.classical import fbp, fourier_filter, sirt_iter, tv_iter
from napari_ganrec.geometry import Geometry, circle_mask
from napari_ganrec.projector import Projector


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
    residuals = []
    for _, x_sirt, res in sirt_iter(proj, b, 100):
        residuals.append(res)
    assert residuals[-1] < residuals[0]  # converges in data
    assert float(x_sirt.min()) >= 0  # non-negative
    for _, x_tv, _ in tv_iter(proj, b, 200, tv_weight=0.05):
        pass
    s_sirt, s_tv = ssim(gt, x_sirt[0].numpy()), ssim(gt, x_tv[0].numpy())
    assert s_sirt > s_fbp + 0.02
    assert s_tv > s_sirt + 0.05


def test_tv_is_batched_per_slice(wedge_data):
    sino, angles, _ = wedge_data
    proj = Projector(Geometry.create(angles, 48), device="cpu")
    b = torch.from_numpy(np.stack([sino, 3 * sino]))
    for _, x, _ in tv_iter(proj, b, 50):
        pass
    # the weight scales with each slice's data: 3x the data gives 3x the image
    assert torch.allclose(x[1], 3 * x[0], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="tv_weight"):
        next(tv_iter(proj, b, 5, tv_weight=-1))
