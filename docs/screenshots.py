"""Screenshots of the reconstruction widget during and after a live GANrec run on the sample.

Run it under a real X server (the README's figures come from here, not from hand-made captures)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshots.py

It opens napari with the 'Porous particle, +-35 degrees (51 projections)' sample and the
'GANrec reconstruction' dock widget (both through the plugin's npe2 manifest), runs GANrec on the
middle slice, and writes ``docs/widget_running.png`` (mid-run) and ``docs/widget_finished.png``.
It also prints what the run felt like: the worst main-thread stall (a 10 ms QTimer heartbeat)
and the preview latency (from the engine handing over an image to the canvas drawing it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _open_plugin(viewer):
    """Sample and widget through npe2, as a user gets them (falls back to direct calls)."""
    try:
        viewer.open_sample("napari-ganrec", "wedge35")
    except Exception:  # noqa: BLE001 - plugin not registered (not pip-installed)
        from napari_ganrec._napari import sample_wedge35

        for data, kwargs, _ in sample_wedge35():
            viewer.add_image(data, **kwargs)
    try:
        _, widget = viewer.window.add_plugin_dock_widget("napari-ganrec", "GANrec reconstruction")
    except Exception:  # noqa: BLE001
        from napari_ganrec._qt.reconstruction_widget import ReconstructionWidget

        widget = ReconstructionWidget(viewer)
        viewer.window.add_dock_widget(widget, name="GANrec reconstruction")
    return widget


def _close_toasts(viewer) -> None:
    """Hide notification pop-ups (e.g. napari's PyQt5 deprecation notice) before a shot."""
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
    except (ImportError, AttributeError):
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--preview-every", type=int, default=2)
    parser.add_argument("--method", default="ganrec", help="method shown (napari_ganrec.methods)")
    parser.add_argument("--snapshot-at", type=float, default=0.3,
                        help="fraction of the run at which to take the 'running' screenshot")
    parser.add_argument("-o", "--out", type=Path, default=HERE)
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore", message="napari support for the PyQt5")  # no toast
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-ganrec", show=True)
    QApplication.instance()
    try:
        viewer.window._qt_window.resize(1500, 900)
    except AttributeError:
        pass
    widget = _open_plugin(viewer)

    def pump(seconds: float = 0.0, until=None, timeout: float = 600.0):
        """Run Qt's event loop (as napari does) for ``seconds`` or until ``until()``."""
        from qtpy.QtCore import QEventLoop

        t0 = time.perf_counter()
        loop = QEventLoop()

        def check():
            done = until() if until is not None else time.perf_counter() - t0 >= seconds
            if done or time.perf_counter() - t0 > timeout:
                loop.quit()

        poll = QTimer()
        poll.setInterval(20)
        poll.timeout.connect(check)
        poll.start()
        check()
        if not (until is not None and until()):
            loop.exec_()
        poll.stop()
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("gave up waiting")

    pump(until=lambda: widget.warmed_up)
    widget.set_input("particle +-35 projections")
    widget.set_method(args.method)
    widget.device_combo.setCurrentText("auto")
    widget.iterations_spin.setValue(args.iterations)
    widget.preview_spin.setValue(args.preview_every)
    try:  # a wider dock, so that no row of the widget is cut
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QDockWidget

        qt_window = viewer.window._qt_window
        docks = [d for d in qt_window.findChildren(QDockWidget) if d.widget() is not None
                 and widget in d.widget().findChildren(type(widget)) + [d.widget()]]
        qt_window.resizeDocks(docks, [560] * len(docks), Qt.Orientation.Horizontal)
    except (AttributeError, ImportError):
        pass
    bar = widget.scroll.verticalScrollBar()
    bar.setValue(bar.maximum())  # the live part of the widget: Run, status and the losses
    pump(0.5)

    gaps: list[float] = []
    last = [time.perf_counter()]

    def beat():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(beat)
    last[0] = time.perf_counter()
    timer.start()
    t0 = time.perf_counter()
    if not widget.run():
        raise SystemExit("the run did not start")
    proj = viewer.layers["particle +-35 projections"]
    # show the live slice alone on the canvas, with the slice marker left on the projections
    pump(until=lambda: widget.controller.image_layer is not None)
    proj.visible = False
    widget.marker_layer.visible = False
    viewer.reset_view()
    pump(until=lambda: widget.state.iteration >= args.snapshot_at * args.iterations
         or widget.state.status in ("finished", "stopped", "failed"))
    pump(0.3)
    _close_toasts(viewer)
    running = args.out / "widget_running.png"
    timer.stop()  # the capture itself blocks the main thread: not the widget's doing
    viewer.screenshot(str(running), canvas_only=False, flash=False)
    last[0] = time.perf_counter()
    timer.start()
    it_running = widget.state.iteration
    pump(until=lambda: widget.state.status in ("finished", "stopped", "failed"))
    timer.stop()
    wall = time.perf_counter() - t0
    pump(0.5)
    _close_toasts(viewer)
    finished = args.out / "widget_finished.png"
    viewer.screenshot(str(finished), canvas_only=False, flash=False)

    truth = viewer.layers["particle +-35 ground truth"].data[widget.slice_range()[0]]
    rec = widget.controller.image_layer.data
    lat = np.asarray(widget.controller.preview_latencies) * 1000
    stall = (max(gaps) - 0.010) * 1000
    print(f"status: {widget.state.status}, {widget.state.iteration} iterations in {wall:.1f} s "
          f"({widget.state.n_images} previews)")
    print("| figure | value |")
    print("|---|---|")
    print(f"| worst main-thread stall during the run (10 ms heartbeat) | {stall:.0f} ms |")
    print(f"| heartbeat gaps over 100 ms | {sum(g > 0.11 for g in gaps)} of {len(gaps)} |")
    print(f"| preview latency, engine step to canvas draw (median / max, n={lat.size}) | "
          f"{np.median(lat):.0f} / {np.max(lat):.0f} ms |")
    print(f"| mean absolute error of the final slice vs ground truth | "
          f"{np.abs(rec - truth).mean():.3f} |")
    print(f"wrote {running} (iteration {it_running}) and {finished}")
    viewer.close()
    return 0 if widget.state.status == "finished" else 1


if __name__ == "__main__":
    raise SystemExit(main())
