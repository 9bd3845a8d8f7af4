"""Put a new result on the canvas: the only thing shown, its slice in view, the camera on it.

Used by every widget when it adds a result (preview, run, centre scan, segmentation), so that the
canvas never keeps showing the projection stack's axes with the result half off-screen. Layers
are only hidden, never removed: the layer list still has them (tick the eye to bring one back).
"""

from __future__ import annotations

import numpy as np

__all__ = ["frame_layer", "framing_steps"]


def framing_steps(viewer, layer, hide_others: bool = True, keep=()) -> list:
    """:func:`frame_layer` as separate steps (callables), each a slice of main-thread work, so
    that a caller can let the event loop run in between (during a run). ``keep``: layers shown
    with ``layer`` (a run's residual and uncertainty layers)."""
    # napari may hand plugins proxies of its layers: compare what is behind them
    shown = {id(getattr(ly, "__wrapped__", ly)) for ly in (layer, *keep) if ly is not None}

    def hide():
        if hide_others:
            for other in viewer.layers:
                if id(getattr(other, "__wrapped__", other)) not in shown and other.visible:
                    other.visible = False
        layer.visible = True

    def select():
        viewer.layers.selection.active = layer

    def frame():
        offset = viewer.dims.ndim - layer.ndim
        shape = np.shape(layer.data)
        for axis in viewer.dims.not_displayed:
            la = axis - offset
            if 0 <= la < layer.ndim:
                world = float(layer.translate[la]) + (int(shape[la]) // 2) * float(layer.scale[la])
                viewer.dims.set_point(axis, world)
        viewer.reset_view()

    return [hide, select, frame]


def frame_layer(viewer, layer, hide_others: bool = True) -> None:
    """Show ``layer`` alone and framed.

    - every other visible layer (images, slice markers, earlier results) is hidden;
    - ``layer`` becomes the selected layer;
    - each axis the canvas does not display is set to the middle slice of ``layer`` (a volume
      added over a projection stack would otherwise sit at the stack's angle index, outside it);
    - the camera is reset to the visible layers, i.e. to ``layer``.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    layer : napari.layers.Layer
        A layer of ``viewer``.
    hide_others : bool
        Hide the other layers (default); without, only the selection, slice and camera are set.
    """
    for step in framing_steps(viewer, layer, hide_others):
        step()
