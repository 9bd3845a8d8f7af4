"""The Advanced section shows and reads reweighted TV's automatic strength ("auto")."""

import pytest

from napari_ganrec._qt.solver_options import SolverOptions


def test_rwtv_fields_show_auto_and_accept_numbers_or_auto(qtbot):
    opts = SolverOptions()
    qtbot.addWidget(opts)
    opts.set_method("rwtv")
    editors = opts.rwtv.editors
    assert editors["tv_weight"].text() == "auto" and editors["eps"].text() == "auto"
    assert editors["noise"].text() == ""
    assert opts.options() == {}  # automatic: nothing changed
    editors["tv_weight"].setText("0.3")
    assert opts.options() == {"tv_weight": 0.3}
    editors["noise"].setText("0.02")
    assert opts.options() == {"tv_weight": 0.3, "noise": 0.02}
    editors["tv_weight"].setText("AUTO")
    editors["noise"].setText("")
    assert opts.options() == {}
    opts.rwtv.set_values({"tv_weight": 0.2, "eps": "auto", "noise": None})
    assert opts.options() == {"tv_weight": 0.2}
    editors["eps"].setText("sharp")
    with pytest.raises(ValueError, match="solver option eps must be a number or 'auto', got 'sharp'"):
        opts.options()
    opts.set_method("tv")
    opts.tv.editors["tv_weight"].setText("auto")
    with pytest.raises(ValueError, match="only for reweighted TV"):
        opts.options()
