"""napari-ganrec: tomographic reconstruction (GANrec, reweighted TV, TV, SIRT, FBP) for napari,
the command line and Dask.

>>> import napari_ganrec as ng
>>> rec = ng.reconstruct(sinogram, angles, method="rwtv", iterations=1000)
>>> rec = ng.reconstruct(sinogram, angles, method="ganrec", iterations=1000)   # the paper's GAN
"""

__version__ = "0.1.0"

import os as _os

# Before torch starts OpenMP: an idle thread spins briefly (10000 turns), then sleeps; measured in
# napari_ganrec.threads' docstring. Left alone when the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT.
if "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from .api import Step, iter_reconstruct, reconstruct  # noqa: E402
from .geometry import Geometry, angles_from_range  # noqa: E402
from .methods import DEFAULT_METHOD, LABELS, METHODS, make_plan  # noqa: E402
from .projector import Projector  # noqa: E402
from .volume import iter_volume, reconstruct_volume  # noqa: E402

__all__ = [
    "__version__",
    "DEFAULT_METHOD",
    "LABELS",
    "METHODS",
    "Geometry",
    "Projector",
    "Step",
    "angles_from_range",
    "iter_reconstruct",
    "iter_volume",
    "make_plan",
    "reconstruct",
    "reconstruct_volume",
]
