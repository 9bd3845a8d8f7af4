"""benchmarks/quality.py: the reweighted-TV grid row and the wedge-filling chain's row (#15)."""

import pytest
from _benchmarks import load_benchmark


def _quality():
    return load_benchmark("quality")


def test_rwtv_grid_is_the_product_of_its_axes():
    q = _quality()
    assert q.rwtv_grid(["tv_weight=0.1,0.3", "eps=0.5"]) == [{"tv_weight": 0.1, "eps": 0.5},
                                                              {"tv_weight": 0.3, "eps": 0.5}]
    assert q.rwtv_grid([]) == []
    with pytest.raises(ValueError, match="--rwtv-grid expects NAME=V1,V2"):
        q.rwtv_grid(["tv_weight"])
    # or TV_WEIGHT:EPS pairs, as they are (the default grid)
    assert q.rwtv_grid(["0.1:0.1", "0.3:1.0"]) == [{"tv_weight": 0.1, "eps": 0.1}, {"tv_weight": 0.3, "eps": 1.0}]
    with pytest.raises(ValueError, match="not both"):
        q.rwtv_grid(["0.1:0.1", "eps=0.3"])
    with pytest.raises(SystemExit):  # the command line refuses it before any reconstruction
        q.main(["--rwtv-grid", "0.1:x"])


def test_grid_row_and_wedgefill_row(capsys):
    q = _quality()
    assert q.main(["--sizes", "32", "--cases", "pm35", "--iterations", "3", "--tv-iterations", "3",
                   "--sirt-iterations", "3", "--tv-weights", "0.1", "--methods", "rwtv", "rwtv+wedgefill",
                   "--rwtv-grid", "tv_weight=0.1,0.3", "--wedgefill-iterations", "2",
                   "--wedgefill-options", "pool=2", "pool_iterations=3", "channels=4", "depth=1",
                   "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "| reweighted TV, best of grid | 0." in captured.out
    assert "| reweighted TV + wedge filling | 0." in captured.out
    assert "| reweighted TV | " not in captured.out  # the grid's row stands for reweighted TV
    assert "(rwtv:3+wedgefill:2)" in captured.err


def test_a_case_without_a_wedge_runs_no_wedge_filling(capsys):
    q = _quality()
    assert q.main(["--sizes", "32", "--cases", "0-180", "pm35", "--iterations", "3", "--tv-iterations", "3",
                   "--sirt-iterations", "3", "--tv-weights", "0.1", "--methods", "rwtv+wedgefill",
                   "--wedgefill-iterations", "2", "--wedgefill-options", "pool=2", "pool_iterations=3",
                   "channels=4", "depth=1", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "0-180        rwtv+wedgefill: not run, the angles leave no missing wedge" in captured.err
    row = next(line for line in captured.out.splitlines() if line.startswith("| reweighted TV + wedge filling |"))
    assert row.split("|")[2].strip() == "-" and row.split("|")[3].strip().startswith("0.")  # 0-180, ±35


def test_options_take_numbers_and_words():
    q = _quality()
    assert q._option("pool=8") == ("pool", 8) and isinstance(q._option("pool=8")[1], int)
    assert q._option("lr=1e-3") == ("lr", 1e-3) and q._option("projection_weight=0.1") == ("projection_weight", 0.1)
    assert q._option("projection_real=image") == ("projection_real", "image")


def test_wedgefill_row_with_the_projection_adversary(capsys):
    q = _quality()
    assert q.main(["--sizes", "32", "--cases", "0-90", "--iterations", "3", "--tv-iterations", "3",
                   "--sirt-iterations", "3", "--tv-weights", "0.1", "--methods", "rwtv+wedgefill",
                   "--rwtv-grid", "0.1:0.1", "--wedgefill-iterations", "2",
                   "--wedgefill-options", "pool=2", "pool_iterations=3", "channels=4", "depth=1",
                   "projection_weight=0.1", "projection_real=image", "--device", "cpu"]) == 0
    assert "| reweighted TV + wedge filling | 0." in capsys.readouterr().out
