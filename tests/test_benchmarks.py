"""The benchmark scripts run (tiny settings) and print their tables."""

import pytest
from _benchmarks import load_benchmark as _load


def test_quality_benchmark_prints_ssim_and_psnr_tables(capsys):
    quality = _load("quality")
    assert quality.main(["--sizes", "32", "--cases", "pm35", "noisy-0-120", "--iterations", "3",
                         "--tv-iterations", "5", "--sirt-iterations", "5", "--chain-ganrec-iterations", "2",
                         "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| method | ±35 (51) | noisy 0-120 |" in out
    for method in ("FBP", "SIRT", "TV", "reweighted TV, best of grid", "reweighted TV, automatic strength", "GANrec",
                   "reweighted TV + GANrec"):
        assert f"| {method} | 0." in out


def test_speed_benchmark_measures_one_configuration():
    speed = _load("speed")
    row = speed._one(32, 2, "cpu", iterations=2, stage="rwtv", repeats=2)
    assert row["batch"] == 2 and row["ms_per_iteration"] > 0
    assert row["ms_per_slice_iteration"] == row["ms_per_iteration"] / 2
    assert row["peak_rss_mb"] > 0 and row["projector"] == "matrix"
    assert row["execution"] == "fp32" and "fp32" in row["execution_detail"]
    assert row["cpu_ms_per_iteration"] > 0
    for stage in ("ganrec", "ganrec+x0"):
        net = speed._one(32, 1, "cpu", iterations=2, stage=stage, execution="auto", repeats=1)
        assert net["stage"] == stage and net["ms_per_iteration"] > 0 and net["recoveries"] == 0
    for stage in ("sirt", "tv"):  # the classical iterative stages, timed the same way
        classical = speed._one(32, 1, "cpu", iterations=2, stage=stage, repeats=1)
        assert classical["stage"] == stage and classical["ms_per_iteration"] > 0


def test_speed_benchmark_sets_the_thread_count(monkeypatch):
    import argparse

    import torch

    from napari_ganrec import threads

    speed = _load("speed")
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_configured", threads._configured)  # restored afterwards
    try:
        assert speed._one(32, 1, "cpu", iterations=1, stage="rwtv", repeats=1, threads=2)["threads"] == 2
        monkeypatch.setenv("NAPARI_GANREC_THREADS", "1")  # "auto" is what a run chooses: here the variable
        assert speed._one(32, 1, "cpu", iterations=1, stage="rwtv", repeats=1, threads="auto")["threads"] == 1
    finally:
        torch.set_num_threads(before)
    assert speed._parse_threads("auto") == "auto" and speed._parse_threads("3") == 3
    for bad in ("0", "two"):
        with pytest.raises(argparse.ArgumentTypeError, match="--threads"):
            speed._parse_threads(bad)


def test_speed_benchmark_accuracy_compares_executions():
    speed = _load("speed")
    plain = speed.accuracy("cpu", "fp32", None, size=32, prior=5, network=3, paper_iterations=4)
    mixed = speed.accuracy("cpu", "auto", "bf16", size=32, prior=5, network=3, paper_iterations=4)
    assert [r["method"] for r in plain] == ["rwtv+ganrec", "ganrec"]
    assert all(r["finite"] and -1 <= r["ssim"] <= 1 for r in plain + mixed)
    assert abs(plain[0]["ssim"] - mixed[0]["ssim"]) < 0.05  # bf16 generator on reweighted TV's image
    assert plain[0]["iterations"] == 8 and mixed[1]["execution"] == "auto"




def test_real_wedge_benchmark_runs_on_the_tooth_scan(capsys):
    from _io_fixtures import TOOTH

    if not TOOTH.is_file():
        pytest.skip("../shared/data/tooth.h5 is not here")
    bench = _load("real_wedge")
    assert bench.parse_method("rwtv+wedgefill:projection_weight=0.03") == (
        "rwtv+wedgefill", {"wedgefill": {"projection_weight": 0.03}})
    assert bench.main(["--data", str(TOOTH), "--bin", "8", "--cuts", "90", "--iterations", "3",
                       "--wedgefill-iterations", "2",
                       "--methods", "rwtv", "rwtv+wedgefill:pool=2,pool_iterations=3,channels=4,depth=1"]) == 0
    out = capsys.readouterr().out
    assert "| 0-90 | rwtv | 0." in out and "| 0-90 | rwtv+wedgefill:pool=2" in out


def test_real_wedge_benchmark_says_when_the_data_are_missing(tmp_path, capsys):
    bench = _load("real_wedge")
    assert bench.main(["--data", str(tmp_path / "none.h5")]) == 2
    assert "no data at" in capsys.readouterr().err
