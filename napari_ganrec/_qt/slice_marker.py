"""The slice marker: yellow lines on the projections where the slices to reconstruct lie."""

from __future__ import annotations

from napari.layers import Image, Shapes

from ..widget_model.inputs import InputShape, slice_marker_lines

#: metadata key of the marker layer
MARKER_KEY = "napari_ganrec_slice_marker"


class SliceMarker:
    """Keeps one Shapes layer of lines in ``viewer``; it is made on first use and hidden when not needed."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.layer: Shapes | None = None

    def update(self, layer: Image | None, info: InputShape | None, slices: tuple[int, int]) -> None:
        """Draw ``slices`` on projection stack ``layer`` (hide the marker for anything else)."""
        lines = []
        if layer is not None and info.layout in ("vertical", "horizontal"):
            try:
                lines = slice_marker_lines(layer.data.shape, info.layout, *slices)
            except ValueError:
                lines = []
        marker = self.layer
        if marker is not None and marker not in self.viewer.layers:
            marker = self.layer = None
        if not lines:
            if marker is not None:
                marker.visible = False
            return
        scale = tuple(layer.scale[-2:])
        translate = tuple(layer.translate[-2:])
        if marker is None:
            active = self.viewer.layers.selection.active
            self.layer = self.viewer.add_shapes(
                lines, shape_type="line", edge_color="yellow", edge_width=max(0.5, 0.01 * max(
                    layer.data.shape[-2:])), name="GANrec slice", scale=scale,
                translate=translate, metadata={MARKER_KEY: True}, opacity=0.8)
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active
        else:
            marker.data = lines
            marker.shape_type = ["line"] * len(lines)
            marker.scale = scale
            marker.translate = translate
            marker.visible = True
