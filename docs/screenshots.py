"""Screenshots of the README's walk-through: a real scan from File > Open to the pores.

Run it from the repository root under a real X server (the README's figures come from here, not
from hand-made captures)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/screenshots.py

It opens napari, opens ``../shared/data/tooth.h5`` (an APS scan in DXchange layout with flats and
darks) with the plugin's reader, opens the widgets through the Plugins menu's own call, and does
what a user does, writing one picture per step into ``docs/``:

1. ``walkthrough_1_open.png``: the projections and the reconstruction widget (raw counts seen,
   automatic centre found, with the method);
2. ``walkthrough_2_fbp.png``: the FBP preview at the automatic centre;
3. ``walkthrough_3_ganrec.png``: GANrec on one row, detector binned by 4 (also
   ``widget_running.png`` mid-run and ``widget_finished.png``);
4. ``walkthrough_4_volume.png``: volume mode over both rows;
5. ``walkthrough_5_pores.png``: the segmentation widget's result, in 3-D.

It prints the wall-clock time of each step, the worst main-thread stall of the GANrec run (a
10 ms QTimer heartbeat) and the preview latency. Nothing falls back: if the plugin, its reader or
a widget cannot be opened, the script fails with napari's error.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # this checkout's package (and its napari.yaml), not another install
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tooth.h5"
PLUGIN = "napari-ganrec"


def _close_toasts(viewer) -> None:
    """Hide notification pop-ups (e.g. napari's PyQt5 notice) before a shot."""
    from qtpy.QtWidgets import QWidget

    for toast in viewer.window._qt_window.findChildren(QWidget):
        if type(toast).__name__ == "NapariQtNotification":
            toast.close()


def _pump(seconds: float = 0.0, until=None, timeout: float = 900.0) -> None:
    """Run Qt's event loop (as napari does) for ``seconds`` or until ``until()``."""
    from qtpy.QtCore import QEventLoop, QTimer

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
    if until is not None and not until():
        raise TimeoutError("gave up waiting")


def _widen(viewer, docks, width: int = 600) -> None:
    """Give the dock widgets room, so that no row of them is cut in the pictures."""
    from qtpy.QtCore import Qt

    viewer.window._qt_window.resizeDocks(list(docks), [width] * len(docks), Qt.Orientation.Horizontal)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the scan (default: tooth.h5)")
    parser.add_argument("--iterations", type=int, default=60, help="GANrec iterations on one row")
    parser.add_argument("--volume-iterations", type=int, default=20)
    parser.add_argument("-o", "--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    if not args.data.exists():
        raise SystemExit(f"{args.data} is not here: pass --data PATH")

    import warnings

    warnings.filterwarnings("ignore", message="napari support for the PyQt5")  # no toast
    import napari
    import numpy as np
    from qtpy.QtCore import QTimer

    import napari_ganrec

    assert Path(napari_ganrec.__file__).resolve().is_relative_to(ROOT), napari_ganrec.__file__
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    viewer = napari.Viewer(title="napari-ganrec", show=True)
    viewer.window._qt_window.resize(1600, 1000)
    times: dict[str, float] = {}
    shots: list[Path] = []

    def shot(name: str) -> None:
        _pump(0.4)
        _close_toasts(viewer)
        path = args.out / name
        viewer.screenshot(str(path), canvas_only=False, flash=False)
        shots.append(path)

    # 1. File > Open with the plugin's reader; the reconstruction widget from the Plugins menu
    t0 = time.perf_counter()
    (proj,) = viewer.open(str(args.data), plugin=PLUGIN)
    times["open the file"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "GANrec reconstruction")
    _widen(viewer, [dock])
    _pump(until=lambda: widget.auto_center is not None)
    times["automatic centre (widget opened to centre shown)"] = time.perf_counter() - t0
    est = widget.auto_center
    widget.device_combo.setCurrentText("cpu")
    shot("walkthrough_1_open.png")

    # 2. FBP preview at the automatic centre (full size)
    t0 = time.perf_counter()
    widget.fbp_button.click()
    _pump(until=lambda: widget.preview_layer is not None and widget.fbp_button.isEnabled())
    times["FBP preview, 640 px"] = time.perf_counter() - t0
    shot("walkthrough_2_fbp.png")

    # 3. GANrec on one row, detector binned by 4
    widget.set_method("ganrec")
    widget.set_binning(4, rows=False)
    widget.solver_options.ganrec.editors["channels"].setValue(8)  # a small GANrec: few seconds on the CPU
    widget.solver_options.ganrec.editors["n_conv"].setValue(3)
    widget.iterations_spin.setValue(args.iterations)
    widget.preview_spin.setValue(2)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def beat():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(beat)
    _pump(until=lambda: widget.warmed_up)
    bar = widget.scroll.verticalScrollBar()
    bar.setValue(bar.maximum())  # Run, status, ETA and the losses in view
    t0 = time.perf_counter()
    last[0] = t0
    timer.start()
    widget.run_button.click()
    _pump(until=lambda: widget.state.iteration >= args.iterations // 3
          or widget.state.status in ("finished", "stopped", "failed"))
    timer.stop()  # the capture itself blocks the main thread: not the widget's doing
    shot("widget_running.png")
    last[0] = time.perf_counter()
    timer.start()
    _pump(until=lambda: widget.state.status in ("finished", "stopped", "failed"))
    timer.stop()
    times[f"GANrec, 1 row, binned 160 px, {args.iterations} iterations"] = time.perf_counter() - t0
    shot("walkthrough_3_ganrec.png")
    shots.append(shots[-1].with_name("widget_finished.png"))
    viewer.screenshot(str(shots[-1]), canvas_only=False, flash=False)
    lat = np.asarray(widget.controller.preview_latencies) * 1000
    stall = (max(gaps) - 0.010) * 1000 if gaps else float("nan")

    # 4. volume mode over both rows
    widget.slice_spin.setValue(0)
    widget.nslices_spin.setValue(2)
    widget.volume_check.setChecked(True)
    widget.iterations_spin.setValue(args.volume_iterations)
    widget.warm_spin.setValue(max(1, args.volume_iterations // 2))
    t0 = time.perf_counter()
    widget.run_button.click()
    _pump(until=lambda: widget.state.status in ("finished", "stopped", "failed"))
    times["GANrec volume, 2 rows, binned"] = time.perf_counter() - t0
    volume = widget.controller.image_layer
    shot("walkthrough_4_volume.png")

    # 5. segmentation of the volume, in 3-D
    seg_dock, seg = viewer.window.add_plugin_dock_widget(PLUGIN, "3D pore segmentation")
    seg.layer_combo.setCurrentText(volume.name)
    _widen(viewer, [dock, seg_dock])
    t0 = time.perf_counter()
    seg.run_button.click()
    _pump(until=lambda: seg.result is not None and not seg.running)
    times["segmentation"] = time.perf_counter() - t0
    shot("walkthrough_5_pores.png")

    print(f"load: {load}")
    print(f"automatic centre: {est.center:.2f} px by {est.label}")
    print("| step | wall-clock |")
    print("|---|---|")
    for k, v in times.items():
        print(f"| {k} | {v:.1f} s |")
    print(f"| worst main-thread stall during the GANrec run (10 ms heartbeat) | {stall:.0f} ms |")
    if lat.size:
        print(f"| preview latency, engine step to canvas (median / max, n={lat.size}) | "
              f"{np.median(lat):.0f} / {np.max(lat):.0f} ms |")
    print(f"pores: {seg.result.pore_count}, porosity {100 * seg.result.porosity:.2f} %")
    print("wrote " + ", ".join(str(p.name) for p in shots))
    ok = widget.state.status == "finished"
    viewer.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
