"""npe2 glue of the segmentation widget (kept apart from ``_napari.py``).

napari instantiates a widget contribution by calling it with the viewer passed as the argument
annotated ``napari.viewer.Viewer`` (or named ``napari_viewer``) of its ``__init__``; so the
manifest points at :class:`SegmentationWidget`, imported lazily so that importing this module
does not import Qt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import napari

    from ._qt.segment_widget import SegmentationWidget

__all__ = ["SegmentationWidget", "make_segmentation_widget"]


def make_segmentation_widget(napari_viewer: napari.viewer.Viewer) -> SegmentationWidget:
    """The 3-D pore segmentation dock widget for ``napari_viewer``."""
    from ._qt.segment_widget import SegmentationWidget

    return SegmentationWidget(napari_viewer)


def __getattr__(name: str):
    if name == "SegmentationWidget":
        from ._qt.segment_widget import SegmentationWidget

        return SegmentationWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
