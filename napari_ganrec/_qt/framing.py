"""Put a new result on the canvas: the only thing shown, its slice in view, the camera on it.

Used by every widget when it adds a result (preview, run, centre scan, segmentation), so that the
canvas never keeps showing the projection stack's axes with the result half off-screen. Layers
are only hidden, never removed: the layer list still has them (tick the eye to bring one back).
"""

from __future__ import annotations

import numpy as np

__all__ = ["frame_layer"]


def frame_layer(viewer, layer, hide_others: bool = True) -> None:
    """Show ``layer`` alone and framed.

    - every other visible layer (images, slice markers, earlier results) is hidden;
    - each axis the canvas does not display is set to the middle slice of ``layer`` (a volume
      added over a projection stack would otherwise sit at the stack's angle index, outside it);
    - the camera is reset to the visible layers, i.e. to ``layer``.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    layer : napari.layers.Layer
        A layer of ``viewer``.
    hide_others : bool
        Hide the other layers (default); without, only the slice and camera are set.
    """
    if hide_others:
        for other in viewer.layers:
            if other is not layer and other.visible:
                other.visible = False
    layer.visible = True
    viewer.layers.selection.active = layer
    offset = viewer.dims.ndim - layer.ndim
    shape = np.shape(layer.data)
    for axis in viewer.dims.not_displayed:
        la = axis - offset
        if 0 <= la < layer.ndim:
            world = float(layer.translate[la]) + (int(shape[la]) // 2) * float(layer.scale[la])
            viewer.dims.set_point(axis, world)
    viewer.reset_view()
