"""benchmarks/reference.py: this project's GAN always; the authors' TensorFlow code only where importable."""

import json

import numpy as np
import pytest
import torch
from _benchmarks import load_benchmark


def _load():
    return load_benchmark("reference")


def test_ours_runs_in_its_own_process_and_prints_the_table(capsys, monkeypatch, tmp_path):
    ref = _load()
    monkeypatch.setattr(ref, "authors_available", lambda: False)
    assert ref.main(["--sizes", "32", "--threads", "1", "--iterations", "3", "--repeats", "1",
                     "--json", str(tmp_path / "runs.json")]) == 0
    out, err = capsys.readouterr()
    assert "pip install --no-deps ganrec" in err  # how to install the reference, nothing installed
    rows = json.loads((tmp_path / "runs.json").read_text())
    assert [r["impl"] for r in rows] == ["ours"]
    row = rows[0]
    assert row["torch_threads"] == 1 and row["iterations"] == 3 and row["finite"]
    assert row["ms_per_iteration"] > 0 and row["cpu_ms_per_iteration"] > 0 and row["first_step_s"] > 0
    assert -1 <= row["ssim"] <= 1
    line = [x for x in out.splitlines() if x.startswith("| 32 | 1 |")]
    assert len(line) == 1 and f"{row['ms_per_iteration']:.0f}" in line[0]


def test_summary_gives_medians_and_ratios():
    ref = _load()
    rows = [
        {"impl": impl, "size": 64, "threads": "1", "ms_per_iteration": ms, "cpu_ms_per_iteration": cpu,
         "first_step_s": 1.0, "ssim": s, "torch_threads": 1, "load": [0.5, 1.5]}
        for impl, ms, cpu, s in [("ours", 10, 8, 0.8), ("authors", 40, 30, 0.5), ("ours", 30, 12, 0.9),
                                 ("authors", 20, 34, 0.6), ("ours", 20, 10, 0.7)]
    ]
    (line,) = ref.summarise(rows)
    assert line["ours"]["ms"] == 20 and line["authors"]["ms"] == 30
    assert line["ratio"] == pytest.approx(20 / 30) and line["cpu_ratio"] == pytest.approx(10 / 32)
    assert line["ours"]["ssim"] == [0.8, 0.9, 0.7] and line["ours"]["runs"] == 3


def test_the_authors_image_is_aligned_from_the_data_alone():
    ref = _load()
    from napari_ganrec.geometry import Geometry, circle_mask
    from napari_ganrec.phantoms import ground_truth, porous_particle
    from napari_ganrec.projector import Projector

    gt = ground_truth(porous_particle(32, seed=2)) * circle_mask(32)
    angles = np.linspace(0, 180, 45, endpoint=False)
    with torch.no_grad():
        sino = Projector(Geometry.create(angles, 32)).forward(torch.from_numpy(gt.astype(np.float32))).numpy()
    theirs = 0.25 * np.rot90(gt, 1)[:, ::-1]  # another orientation, normalised units
    aligned = ref.align_to_data(np.ascontiguousarray(theirs), sino, angles)
    assert np.abs(aligned - gt).max() < 1e-3 * gt.max()


def test_the_authors_code_runs_where_tensorflow_is_installed():
    pytest.importorskip("tensorflow")
    pytest.importorskip("ganrectf")
    ref = _load()
    row = ref._spawn("authors", 32, "1", 3, 0)
    assert "error" not in row, row.get("error")
    assert row["impl"] == "authors" and row["finite"] and row["ms_per_iteration"] > 0
    assert -1 <= row["ssim"] <= 1
