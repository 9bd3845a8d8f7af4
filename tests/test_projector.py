import numpy as np
import pytest
import torch
from skimage.transform import radon

from napari_ganrec.geometry import Geometry
from napari_ganrec.projector import Projector, estimate_matrix_bytes, project, resolve_device


@pytest.fixture(scope="module")
def smooth_image():
    n = 64
    yy, xx = np.mgrid[:n, :n] - n / 2
    img = np.exp(-((xx - 5) ** 2 + (yy + 3) ** 2) / 60.0) + 0.5 * ((xx + 8) ** 2 + yy**2 < 49)
    img[(xx**2 + yy**2) > (n / 2 - 1) ** 2] = 0
    return img.astype(np.float32)


@pytest.mark.parametrize("method", ["matrix", "rotate"])
def test_forward_matches_skimage_radon(smooth_image, method):
    angles = np.linspace(0, 180, 90, endpoint=False)
    ref = radon(smooth_image, theta=angles, circle=True).T
    proj = Projector(Geometry.create(angles, 64), device="cpu", method=method)
    sino = proj.forward(torch.from_numpy(smooth_image)).numpy()
    assert sino.shape == (90, 64)
    assert np.linalg.norm(sino - ref) / np.linalg.norm(ref) < 1e-2


@pytest.mark.parametrize("method", ["matrix", "rotate"])
@pytest.mark.parametrize("n, center", [(33, None), (48, 23.37)])
def test_adjoint_passes_dot_product_test(method, n, center):
    rng = np.random.default_rng(0)
    angles = np.sort(rng.uniform(-70, 70, 51))  # non-uniform tilt series
    proj = Projector(Geometry.create(angles, n, center), device="cpu", method=method)
    x = torch.from_numpy(rng.standard_normal((3, n, n)).astype(np.float32))
    y = torch.from_numpy(rng.standard_normal((3, 51, n)).astype(np.float32))
    lhs = float((proj.forward(x).double() * y.double()).sum())
    rhs = float((x.double() * proj.adjoint(y).double()).sum())
    assert abs(lhs - rhs) / abs(lhs) < 1e-4


def test_backward_is_the_adjoint():
    proj = Projector(Geometry.create(np.arange(0, 180, 6.0), 24), device="cpu")
    x = torch.rand(2, 24, 24, requires_grad=True)
    g = torch.rand(2, 30, 24)
    proj.forward(x).backward(g)
    assert torch.allclose(x.grad, proj.adjoint(g), atol=1e-5)


def test_batch_equals_single_and_mass_is_conserved():
    proj = Projector(Geometry.create(np.arange(0, 180, 3.0), 32), device="cpu")
    imgs = torch.zeros(4, 32, 32)
    imgs[:, 12:20, 10:18] = torch.arange(1, 5, dtype=torch.float32).view(4, 1, 1)
    batch = proj.forward(imgs)
    for k in range(4):
        assert torch.allclose(batch[k], proj.forward(imgs[k]), atol=1e-5)
    # every angle sees the whole (centred) square: sums equal the image's mass
    assert torch.allclose(batch.sum(-1), imgs.sum((-2, -1)).view(4, 1).expand(4, 60), rtol=1e-4)


def test_centre_of_rotation_shifts_the_sinogram():
    img = np.zeros((32, 32), np.float32)
    img[16, 16] = 1.0  # on the rotation axis: projects to the centre bin at every angle
    s = project(img, [0, 45, 90], center=20.0)
    assert np.all(np.argmax(s, axis=1) == 20)


def test_shape_errors_are_clear():
    proj = Projector(Geometry.create(np.arange(0, 40, 10.0), 16), device="cpu")
    with pytest.raises(ValueError, match="image must have shape"):
        proj.forward(torch.zeros(15, 16))
    with pytest.raises(ValueError, match="sinogram must have shape"):
        proj.adjoint(torch.zeros(5, 16))
    with pytest.raises(ValueError, match="method"):
        Projector(Geometry.create(np.arange(0, 40, 10.0), 16), method="fourier")


def test_memory_budget_selects_matrix_free_backend():
    geo = Geometry.create(np.arange(0, 180, 1.0), 64)
    assert Projector(geo, device="cpu").method == "matrix"
    small = Projector(geo, device="cpu", memory_budget=estimate_matrix_bytes(180, 64) // 2)
    assert small.method == "rotate"


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(smooth_image):
    geo = Geometry.create(np.linspace(0, 180, 60, endpoint=False), 64)
    cpu = Projector(geo, device="cpu").forward(torch.from_numpy(smooth_image))
    gpu = Projector(geo, device="cuda").forward(torch.from_numpy(smooth_image)).cpu()
    assert torch.allclose(cpu, gpu, rtol=1e-4, atol=1e-4)


def test_one_column_products_run_as_matrix_vector_products_and_agree(monkeypatch):
    """csr_product: one column on the CPU goes through torch.mv (faster there), several through
    torch.sparse.mm; both give scipy's product up to rounding, forward and adjoint."""
    import numpy as np
    import torch

    from napari_ganrec.geometry import Geometry
    from napari_ganrec.projector import Projector, system_matrix

    geo = Geometry.create(np.linspace(0, 180, 30, endpoint=False), 24)
    proj = Projector(geo, device="cpu", method="matrix")
    mat = system_matrix(geo)
    calls = {"mv": 0, "mm": 0}
    mv, mm = torch.mv, torch.sparse.mm

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(torch, "mv", count("mv", mv))
    monkeypatch.setattr(torch.sparse, "mm", count("mm", mm))
    rng = np.random.default_rng(0)
    one = rng.random((24, 24), dtype=np.float32)
    three = rng.random((3, 24, 24), dtype=np.float32)
    sino = proj.forward(torch.from_numpy(one))
    assert calls == {"mv": 1, "mm": 0}
    np.testing.assert_allclose(sino.numpy().ravel(), mat @ one.ravel(), rtol=1e-5, atol=1e-5)
    back = proj.adjoint(sino)
    assert calls == {"mv": 2, "mm": 0}
    np.testing.assert_allclose(back.numpy().ravel(), mat.T @ sino.numpy().ravel(), rtol=1e-5, atol=1e-4)
    sinos = proj.forward(torch.from_numpy(three))
    assert calls == {"mv": 2, "mm": 1}
    np.testing.assert_allclose(sinos[1].numpy().ravel(), mat @ three[1].ravel(), rtol=1e-5, atol=1e-5)
    x = torch.from_numpy(one).requires_grad_()
    (grad,) = torch.autograd.grad(proj.forward(x), x, sino)
    assert calls == {"mv": 4, "mm": 1}  # the backward pass is one more product
    np.testing.assert_allclose(grad.numpy(), back.numpy(), rtol=1e-6, atol=1e-6)
