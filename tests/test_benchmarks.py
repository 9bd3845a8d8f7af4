"""The benchmark scripts run (tiny settings) and print their tables."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quality_benchmark_prints_ssim_and_psnr_tables(capsys):
    quality = _load("quality")
    assert quality.main(["--sizes", "32", "--cases", "pm35", "noisy-0-120", "--iterations", "3",
                         "--tv-iterations", "5", "--sirt-iterations", "5", "--presets", "default",
                         "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| method | ±35 (51) | noisy 0-120 |" in out
    for method in ("FBP", "SIRT", "TV", "GANrec default"):
        assert f"| {method} | 0." in out


def test_speed_benchmark_measures_one_configuration():
    speed = _load("speed")
    row = speed._one(32, 2, "cpu", iterations=2, preset="default")
    assert row["batch"] == 2 and row["ms_per_iteration"] > 0
    assert row["ms_per_slice_iteration"] == row["ms_per_iteration"] / 2
    assert row["peak_rss_mb"] > 0 and row["projector"] == "matrix"
    net = speed._one(32, 1, "cpu", iterations=2, preset="default", stage="network")
    assert net["stage"] == "network" and net["ms_per_iteration"] > 0
