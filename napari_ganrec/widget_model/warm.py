"""The engine's warm-up when a widget opens: a plain background thread, best effort."""

from __future__ import annotations

import threading
from collections.abc import Callable


class BackgroundWarmUp:
    """Runs ``warm(device)`` once in a daemon thread named ``napari-ganrec warm-up``.

    The thread touches no widget or layer. A failure only means the first run initialises the
    engine itself (and reports any real error then), so it is swallowed; ``error`` keeps it.

    Parameters
    ----------
    warm : callable
        ``warm(device)``, e.g. :func:`napari_ganrec.widget_model.run.warm_up`.
    device : str
        The device to warm up.
    """

    def __init__(self, warm: Callable[[str], object], device: str):
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(warm, device), daemon=True,
                                        name="napari-ganrec warm-up")
        self._thread.start()

    def _run(self, warm, device: str) -> None:
        try:
            warm(device)
        except Exception as exc:  # noqa: BLE001 - best effort (see the class docstring)
            self.error = exc

    @property
    def done(self) -> bool:
        """Whether the warm-up is over."""
        return not self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds; returns whether it is over."""
        self._thread.join(timeout)
        return self.done
