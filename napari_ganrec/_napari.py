"""npe2 entry points: sample data and the dock widgets.

napari.yaml points here; keep this module thin (the work is in the engine and in ``_qt``).

Widget contributions are classes: napari 0.9 (``napari._qt.qt_main_window._instantiate_dock_widget``)
inspects the contribution's ``__init__`` and passes the viewer to the argument named
``napari_viewer`` or annotated ``napari.viewer.Viewer``; a factory function's ``__init__`` is
``object``'s, so it would get nothing. The classes are imported lazily (module ``__getattr__``),
so that reading the manifest or the sample data does not import Qt.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ._qt.preprocess_widget import PreprocessWidget
    from ._qt.reconstruction_widget import ReconstructionWidget
    from ._qt.segment_widget import SegmentationWidget

__all__ = ["sample_wedge35", "sample_range120", "make_sample", "ReconstructionWidget", "PreprocessWidget",
           "SegmentationWidget", "WIDGETS"]

#: The dock widgets of the manifest: display name -> class name in this module.
WIDGETS = {
    "GANrec reconstruction": "ReconstructionWidget",
    "Pre-processing and centre": "PreprocessWidget",
    "3D pore segmentation": "SegmentationWidget",
}

_WIDGET_MODULES = {
    "ReconstructionWidget": "._qt.reconstruction_widget",
    "PreprocessWidget": "._qt.preprocess_widget",
    "SegmentationWidget": "._qt.segment_widget",
}

SAMPLE_SIZE = 64
SAMPLE_SLICES = 16


def make_sample(start: float, stop: float, count: int, name: str, n: int = SAMPLE_SIZE,
                nz: int = SAMPLE_SLICES, seed: int = 0) -> list[tuple]:
    """A porous particle's projection stack and ground truth as napari layer data.

    Returns two ``(data, kwargs, "image")`` tuples: the projection stack
    ``(angles, rows, detector)`` with ``metadata={"angles", "center", ...}`` and the ground-truth
    volume ``(nz, n, n)``.
    """
    angles, projections, truth = (a.copy() for a in _simulate(start, stop, count, n, nz, seed))
    md = {
        "angles": angles,
        "center": n / 2.0,
        "layout": "vertical",
        "kind": "line_integrals",
        "kind_reason": "simulated line integrals (parallel-beam projections of the phantom)",
        "description": f"Porous particle phantom ({n} px, {nz} slices, seed {seed}): "
                       f"{count} parallel-beam projections from {start:g} to {stop:g} degrees",
    }
    return [
        (projections, {"name": f"{name} projections", "metadata": md, "colormap": "gray"},
         "image"),
        (truth, {"name": f"{name} ground truth", "colormap": "gray", "visible": False,
                 "metadata": {"description": "ground-truth volume (slices, rows, columns)"}},
         "image"),
    ]


@lru_cache(maxsize=4)
def _simulate(start: float, stop: float, count: int, n: int, nz: int, seed: int):
    """Angles, projections and truth of a sample (cached: opening it twice costs nothing)."""
    from .geometry import angles_from_range
    from .phantoms import ground_truth, porous_particle, simulate_projections

    phantom = porous_particle(n, nz=nz, seed=seed)
    angles = angles_from_range(start, stop, count, endpoint=True)
    return angles, simulate_projections(phantom, angles), ground_truth(phantom)


def sample_wedge35() -> list[tuple]:
    """'Porous particle, +-35 degrees (51 projections)': a tilt series with a missing wedge."""
    return make_sample(-35.0, 35.0, 51, "particle +-35")


def sample_range120() -> list[tuple]:
    """'Porous particle, 0-120 degrees': 61 projections over a limited range."""
    return make_sample(0.0, 120.0, 61, "particle 0-120")


def __getattr__(name: str):
    if name in _WIDGET_MODULES:
        from importlib import import_module

        return getattr(import_module(_WIDGET_MODULES[name], __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
