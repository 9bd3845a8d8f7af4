"""The loss plot, the wedge plot and the 'Advanced' solver options, on their own."""

import numpy as np
import pytest

from napari_ganrec._qt.loss_plot import LossPlot
from napari_ganrec._qt.solver_options import SolverOptions
from napari_ganrec._qt.wedge_plot import WedgePlot
from napari_ganrec.methods.ganrec import GANrecConfig


def test_loss_plot_draws_axes_once_then_blits(qtbot):
    plot = LossPlot(min_interval_ms=10)
    qtbot.addWidget(plot)
    plot.show()
    plot.start(100)
    history = {"l1": ([], []), "zero": ([], [])}
    for it in range(1, 41):
        history["l1"][0].append(it)
        history["l1"][1].append(1.0 / it)
        history["zero"][0].append(it)
        history["zero"][1].append(0.0)
        plot.set_history(history)
        if it % 10 == 0:
            qtbot.wait(30)
    plot.flush()
    assert plot.axes.get_xlim() == (0, 100)  # the whole run from the start
    lo, hi = plot.axes.get_ylim()
    assert lo <= 1 / 40 and hi >= 1.0
    # the axes were drawn a few times at most; the curve updates were blits
    assert 1 <= plot.full_draws <= 3
    assert plot.blits >= 2
    line = plot._lines["l1"]
    np.testing.assert_allclose(line.get_xdata(), np.arange(1, 41))
    assert "zero" not in plot._lines  # nothing to show on a log axis
    plot.start(10)
    assert plot._lines == {} and plot.axes.get_xlim() == (0, 10)


def test_loss_plot_grows_past_the_planned_range(qtbot):
    plot = LossPlot(min_interval_ms=0)
    qtbot.addWidget(plot)
    plot.start(5)
    plot.set_history({"residual": ([1, 2, 3, 8], [0.5, 0.4, 1e-4, 0.2])})
    plot.flush()
    assert plot.axes.get_xlim()[1] >= 8
    assert plot.axes.get_ylim()[0] <= 1e-4


def test_wedge_plot(qtbot):
    w = WedgePlot()
    qtbot.addWidget(w)
    w.set_angles(np.linspace(0, 120, 61))
    assert w.coverage.missing == pytest.approx(58, abs=0.1)
    assert w.label.text() == "covered 122\u00b0\nmissing 58\u00b0"
    w.set_angles(np.linspace(0, 180, 90, endpoint=False))
    assert w.coverage.wedges == () and "no missing wedge" in w.label.text()
    w.set_angles([])
    assert w.coverage is None and w.label.text() == "no valid angles"


def test_solver_options_report_only_changes(qtbot):
    opts = SolverOptions()
    qtbot.addWidget(opts)
    opts.set_method("ganrec")
    assert opts.options() == {}
    opts.ganrec.editors["lr_g"].setText("0.0005")
    opts.ganrec.editors["channels"].setValue(GANrecConfig().channels + 8)
    assert opts.options() == {"lr_g": 0.0005, "channels": GANrecConfig().channels + 8}
    opts.ganrec.editors["units"].setValue(0)
    assert opts.ganrec.values()["units"] is None  # 'auto'
    opts.ganrec.editors["dropout"].setText("1.5")
    with pytest.raises(ValueError, match="dropout is out of range"):
        opts.options()
    opts.ganrec.editors["dropout"].setText("0.25")
    opts.set_method("tv")
    assert opts.options() == {}
    opts.tv.editors["tv_weight"].setText("0.1")
    assert opts.options() == {"tv_weight": 0.1}
    opts.tv.editors["tv_weight"].setText("-1")
    with pytest.raises(ValueError, match="tv_weight is out of range"):
        opts.options()
    opts.set_method("fbp")
    opts.fbp.editors["filter_name"].setCurrentText("hann")
    assert opts.options() == {"filter_name": "hann"}
    opts.set_method("sirt")
    assert opts.options() == {}


def test_each_stage_of_a_chain_has_its_own_options(qtbot):
    from napari_ganrec.methods import METHODS

    opts = SolverOptions()
    qtbot.addWidget(opts)
    assert set(opts.forms) == set(METHODS)
    opts.set_method("rwtv")
    opts.rwtv.editors["eps"].setText("1.0")
    assert opts.options() == {"eps": 1.0}
    opts.set_method("rwtv+ganrec")
    assert set(opts.forms["rwtv+ganrec"]) == {"rwtv", "ganrec"}
    opts.forms["rwtv+ganrec"]["rwtv"].editors["tv_weight"].setText("0.3")
    opts.forms["rwtv+ganrec"]["ganrec"].editors["lr_g"].setText("0.0005")
    assert opts.options() == {"rwtv": {"tv_weight": 0.3}, "ganrec": {"lr_g": 0.0005}}


def test_execution_choice_reaches_the_engine(qtbot):
    from napari_ganrec.acceleration import resolve_acceleration
    from napari_ganrec.widget_model.run import RunParams

    opts = SolverOptions()
    qtbot.addWidget(opts)
    opts.set_method("ganrec")
    assert "acceleration" not in opts.options()  # auto
    opts.execution.setCurrentText("float32, eager")
    got = opts.options()
    assert got == {"acceleration": {"amp": "off", "compile": "off", "channels_last": "off"}}
    kw = RunParams(angles=(0.0, 1.0), method="ganrec", options=got).engine_kwargs()
    assert kw["acceleration"] == got["acceleration"]
    import torch

    resolved = resolve_acceleration(kw["acceleration"], torch.device("cpu"))
    assert resolved.amp_dtype is None and not resolved.compile
    opts.set_method("tv")
    assert not opts.execution.isEnabled() and opts.options() == {}
