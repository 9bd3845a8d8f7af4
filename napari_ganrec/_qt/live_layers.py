"""The live layers of one run: the image (and optionally the residual and the uncertainty), added
hidden before the worker starts, shown and framed with the first picture, refreshed with each.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from qtpy.QtCore import QTimer

from ..widget_model.live import contrast_limits, image_scale, image_shape
from ..widget_model.run import RunUpdate
from .framing import framing_steps


class LiveLayers:
    """The live layers of the current (or last) run in ``viewer``.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the layers go.
    timed : callable
        ``timed(name, fn)`` calls ``fn`` and notes its main-thread time (the controller's ledger).
    gap_ms : callable
        Milliseconds of event loop between two framing steps.

    Attributes
    ----------
    image, residual, uncertainty : napari.layers.Image or None
        The layers (``None`` where not asked for, not yet added or dropped).
    """

    def __init__(self, viewer, timed: Callable, gap_ms: Callable[[], int]):
        self.viewer = viewer
        self.timed = timed
        self.gap_ms = gap_ms
        self.image = self.residual = self.uncertainty = None
        self.revealed = False

    def reset(self) -> None:
        """A new run: no layers yet, none shown."""
        self.image = self.residual = self.uncertainty = None
        self.revealed = False

    def _add(self, data_shape, name: str, md: dict, content: str, **kwargs):
        return self.viewer.add_image(np.zeros(data_shape, np.float32), name=name,
                                     metadata={**md, "content": content}, visible=False, **kwargs)

    def add_image(self, sino_shape: tuple[int, ...], name: str, md: dict, scale, slice_scale: float) -> None:
        """Add the run's live layer before the worker starts.

        Adding a napari layer is the costliest thing the main thread does for a run (Qt controls,
        a vispy visual); doing it at the click keeps it out of the stream of updates.
        """
        shape = image_shape(sino_shape)
        self.image = self._add(shape, name, md, "image", colormap="gray",
                               scale=image_scale(len(shape), scale, slice_scale), contrast_limits=(0.0, 1.0))

    def add_residual(self, sino_shape: tuple[int, ...], name: str, md: dict) -> None:
        """The second live layer: model sinogram minus data."""
        self.residual = self._add(sino_shape, f"{name} residual", md, "residual", colormap="PiYG",
                                  contrast_limits=(-1.0, 1.0))

    def add_uncertainty(self, sino_shape: tuple[int, ...], name: str, md: dict, scale, slice_scale: float) -> None:
        """The uncertainty layer: where the last iterates of the final stage disagree."""
        shape = image_shape(sino_shape)
        self.uncertainty = self._add(shape, f"{name} uncertainty", md, "uncertainty", colormap="magma",
                                     scale=image_scale(len(shape), scale, slice_scale),
                                     contrast_limits=(0.0, 1.0), blending="additive")

    def layers(self):
        """``(layer, content)`` of each layer the run has."""
        return [(ly, kind) for ly, kind in ((self.image, "image"), (self.residual, "residual"),
                                            (self.uncertainty, "uncertainty")) if ly is not None]

    def update_metadata(self, md: Callable[[], dict]) -> None:
        """Write the run's metadata (``md()``, one fresh dict a layer) into each layer."""
        for layer, kind in self.layers():
            d = md()
            d["content"] = kind
            layer.metadata.update(d)

    def drop(self) -> None:
        """Remove the layers (the run showed nothing: empty placeholders)."""
        for layer, _ in self.layers():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.reset()

    def show(self, update: RunUpdate) -> bool:
        """Put ``update``'s pictures into the layers; returns whether the image layer is still there."""
        layer = self.image
        if layer is None or layer not in self.viewer.layers:
            return False  # the user removed it: the run goes on without a picture
        layer.data = np.asarray(update.image)
        layer.reset_contrast_limits()
        reveal = not self.revealed
        if reveal:
            # added hidden (so adding it does not also draw it), shown with its first picture,
            # alone and framed: the canvas leaves the projection stack's axes for the result's
            self.revealed = True
            layer.visible = True
            self._frame_later(framing_steps(self.viewer, layer, keep=(self.residual, self.uncertainty)))
        layer.metadata["iterations"] = int(update.image_iteration)
        layer.metadata["elapsed_s"] = round(float(update.elapsed), 3)
        for extra, data, symmetric in ((self.residual, update.residual, True),
                                       (self.uncertainty, update.uncertainty, False)):
            if data is None or extra is None or extra not in self.viewer.layers:
                continue
            d = np.asarray(data)
            extra.data = d
            extra.contrast_limits = contrast_limits(d, symmetric)
            extra.metadata["iterations"] = int(update.image_iteration)
            if reveal:
                extra.visible = True
        return True

    def _frame_later(self, steps: list) -> None:
        """Run the framing steps one per event-loop turn (each costs a redraw of the layer list
        or canvas), so that the viewer keeps answering in between."""
        if not steps:
            return
        step = steps.pop(0)

        def run():
            image = self.image
            if image is not None and image in self.viewer.layers:
                self.timed("framing", step)
                self._frame_later(steps)

        QTimer.singleShot(self.gap_ms(), run)
