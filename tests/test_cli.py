import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_ganrec import phantoms
from napari_ganrec.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_writes_reconstruction_and_comparison_figure(tmp_path, capsys):
    out = tmp_path / "demo"
    from napari_ganrec.methods import DEFAULT_METHOD, DEMO_METHODS, EXPERIMENTAL, LABELS

    assert main(["demo", "-o", str(out), "--size", "32", "--iterations", "6", "--device", "cpu"]) == 0
    name = f"reconstruction_{DEFAULT_METHOD.replace('+', '_')}.tif"
    rec = tifffile.imread(out / name)
    assert rec.shape == (32, 32) and rec.dtype == np.float32
    with tifffile.TiffFile(out / name) as tif:
        meta = json.loads(tif.pages[0].description)
    assert meta["method"] == DEFAULT_METHOD and len(meta["angles"]) == 120
    assert meta["stages"] == [{"name": s, "iterations": 6} for s in DEFAULT_METHOD.split("+")]
    png = (out / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    # every method of the registry but the experimental ones, under its own name, with its SSIM and time
    for m in DEMO_METHODS:
        assert re.search(rf"^{re.escape(LABELS[m])}\s+SSIM 0\.\d{{3}}  \(\d+\.\d s", printed, re.M), m
    assert EXPERIMENTAL and not any(re.search(rf"^{re.escape(LABELS[m])}\s+SSIM", printed, re.M)
                                    for m in EXPERIMENTAL)
    summary = json.loads((out / "demo.json").read_text())
    assert summary["methods"]["rwtv+ganrec"]["stages"] == [{"name": "rwtv", "iterations": 6},
                                                           {"name": "ganrec", "iterations": 6}]
    assert summary["methods"]["sirt"]["stages"] == [{"name": "sirt", "iterations": 200}]
    # a second run refuses to overwrite the user's files
    assert main(["demo", "-o", str(out), "--size", "32", "--iterations", "2", "--device", "cpu"]) == 2


def _stack(tmp_path):
    p = phantoms.porous_particle(32, nz=4, n_pores=4, seed=1)
    angles = np.linspace(0, 120, 40, endpoint=False)
    proj = phantoms.simulate_projections(p, angles)  # (angles, rows, det)
    path = tmp_path / "proj.npy"
    np.save(path, proj)
    return path, proj, angles


def test_reconstruct_projection_stack_with_slices(tmp_path):
    path, proj, _ = _stack(tmp_path)
    out = tmp_path / "rec.tif"
    code = main(["reconstruct", str(path), "-o", str(out), "--angles", "0:120:40", "--method", "fbp",
                 "--slices", "1:3", "--device", "cpu", "--center", "16"])
    assert code == 0
    rec = tifffile.imread(out)
    assert rec.shape == (2, 32, 32)
    from napari_ganrec import reconstruct

    expected = reconstruct(proj[:, 1:3].transpose(1, 0, 2), np.linspace(0, 120, 40, endpoint=False),
                           method="fbp", device="cpu")
    assert np.allclose(rec, expected, atol=1e-5)


def test_negative_ranges_are_values_not_options(tmp_path):
    """A tilt series' ``--angles -60:60`` and the last rows ``--slices -2:`` as typed (argparse alone
    stops at them with "expected one argument")."""
    path, proj, _ = _stack(tmp_path)
    out = tmp_path / "rec.tif"
    assert main(["reconstruct", str(path), "-o", str(out), "--angles", "-60:60", "--method", "fbp",
                 "--slices", "-2:", "--device", "cpu", "--center", "16"]) == 0
    with tifffile.TiffFile(out) as tif:
        rec, meta = tif.asarray(), json.loads(tif.pages[0].description)
    assert rec.shape == (2, 32, 32)
    assert meta["angles"][0] == -60.0 and meta["angles"][-1] == pytest.approx(57.0)
    from napari_ganrec import reconstruct

    expected = reconstruct(proj[:, 2:4].transpose(1, 0, 2), np.linspace(-60, 60, 40, endpoint=False),
                           method="fbp", device="cpu", center=16)
    assert np.allclose(rec, expected, atol=1e-5)


def test_attach_negative_values_joins_only_options_that_take_a_value():
    from napari_ganrec.cli import attach_negative_values

    opts = {"--angles", "--slices"}
    assert attach_negative_values(["x", "--angles", "-70:70", "--slices", "-1:"], opts) == [
        "x", "--angles=-70:70", "--slices=-1:"]
    # a flag, a value given with '=', a plain word and a short option stay as they are
    argv = ["--overwrite", "-1.tif", "--angles=-5:5", "--slices", "a:b", "-o", "-3.tif"]
    assert attach_negative_values(argv, opts) == argv


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--angles", "0:120:41"], "41 angles but the input has 40"),
        (["--angles", "0:120", "--center", "left"], "--center must be"),
        (["--angles", "0:x"], "START:STOP"),
        (["--angles", "0:120", "--slices", "3:9"], "outside the 4 rows"),
        ([], "no projection angles"),
    ],
)
def test_reconstruct_reports_bad_arguments(tmp_path, capsys, extra, message):
    path, _, _ = _stack(tmp_path)
    code = main(["reconstruct", str(path), "-o", str(tmp_path / "r.tif"), "--method", "fbp", *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_missing_input_file_is_a_clear_error(tmp_path, capsys):
    code = main(["reconstruct", str(tmp_path / "nope.npy"), "-o", str(tmp_path / "r.tif"), "--angles", "0:180"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_console_script_is_installed():
    res = subprocess.run(["napari-ganrec", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "demo" in res.stdout and "reconstruct" in res.stdout


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- test-command -->\s*```bash\n(.*?)\n```", readme, re.S).group(1)
    assert "pip install torch==2.13.0" in block and "pytest" in block
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci and "xvfb-run" in ci


def test_reconstruct_finds_the_centre_and_records_parameters(tmp_path):
    from napari_ganrec.io import read_volume

    path, _, _ = _stack(tmp_path)
    (tmp_path / "angles.txt").write_text("\n".join(str(a) for a in np.linspace(0, 120, 40, endpoint=False)))
    out = tmp_path / "rec.h5"
    assert main(["reconstruct", str(path), "-o", str(out), "--angles-file", str(tmp_path / "angles.txt"),
                 "--method", "sirt", "--iterations", "5", "--device", "cpu"]) == 0
    rec, meta = read_volume(out)
    assert rec.shape == (4, 32, 32)
    assert abs(meta["center"] - 16) < 1.0
    assert meta["method"] == "sirt" and meta["stages"] == [{"name": "sirt", "iterations": 5}]
    assert len(meta["angles"]) == 40


def test_reconstruct_volume_goes_slab_by_slab_with_warm_start_and_resumes(tmp_path):
    from napari_ganrec.io import read_volume

    path, _, _ = _stack(tmp_path)
    out = tmp_path / "vol.tif"
    args = ["reconstruct", str(path), "-o", str(out), "--angles", "0:120:40", "--method", "rwtv+ganrec",
            "--iterations", "rwtv:6+ganrec:2", "--warm-iterations", "3", "--slab", "2", "--device", "cpu",
            "--center", "16"]
    assert main(args) == 0
    rec, meta = read_volume(out)
    assert rec.shape == (4, 32, 32) and np.isfinite(rec).all()
    assert meta["method"] == "rwtv+ganrec" and meta["method_label"] == "reweighted TV + GANrec"
    assert meta["stages"] == [{"name": "rwtv", "iterations": 6}, {"name": "ganrec", "iterations": 2}]
    assert meta["warm_stages"] == [{"name": "rwtv", "iterations": 3}, {"name": "ganrec", "iterations": 3}]
    assert meta["center"] == 16
    assert not (tmp_path / "vol.tif.parts").exists()  # no chunked store in a local run
    assert main(args) == 2  # never overwrites silently
    assert main([*args, "--overwrite", "--workers", "1"]) == 0  # the same on a local Dask cluster
    assert not (tmp_path / "vol.tif.parts").exists()  # the chunked store is cleaned up
    # (not equal to the local run: each Dask task starts from the seed slice's states, so that tasks
    # do not wait for each other, where the local run chains every slice from its neighbour)
    again, meta2 = read_volume(out)
    assert again.shape == rec.shape and np.isfinite(again).all() and meta2["stages"] == meta["stages"]


def test_a_local_run_of_several_slices_needs_no_dask_and_no_store(tmp_path):
    """Without --workers/--scheduler the engine runs in this process and writes once through io."""
    path, _, _ = _stack(tmp_path)
    out = tmp_path / "vol.tif"
    script = (
        "import sys\n"
        "from napari_ganrec.cli import main\n"
        f"rc = main(['reconstruct', {str(path)!r}, '-o', {str(out)!r}, '--angles', '0:120:40', "
        "'--method', 'rwtv', '--iterations', '5', '--warm-iterations', '2', '--slab', '2', "
        "'--device', 'cpu', '--center', '16'])\n"
        "print(rc, *(m in sys.modules for m in ('dask', 'distributed', 'zarr')))\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert res.stdout.split()[-4:] == ["0", "False", "False", "False"], res.stderr[-2000:]
    assert tifffile.imread(out).shape == (4, 32, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj.npy", "vol.tif", "vol.tif.json"]


def test_reconstruct_passes_batch_and_gpu_options(tmp_path, monkeypatch):
    """--batch/--batch-mode/--tol and the execution flags reach the engine and the metadata."""
    from napari_ganrec import engine
    from napari_ganrec.acceleration import Acceleration
    from napari_ganrec.io import read_volume

    seen = {}
    real = engine.run

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "run", spy)
    path, _, _ = _stack(tmp_path)
    out = tmp_path / "vol.h5"
    assert main(["reconstruct", str(path), "-o", str(out), "--angles", "0:120:40", "--method", "ganrec",
                 "--iterations", "6",
                 "--warm-iterations", "3", "--slab", "4", "--batch", "2", "--batch-mode", "independent",
                 "--tol", "1e-3", "--device", "cpu", "--center", "16", "--amp", "off",
                 "--channels-last", "on", "--check-every", "3"]) == 0
    assert seen["batch"] == 2 and seen["batch_mode"] == "independent" and seen["tol"] == 1e-3
    assert seen["acceleration"] == Acceleration(amp="off", channels_last="on", check_every=3)
    rec, meta = read_volume(out)
    assert rec.shape == (4, 32, 32) and np.isfinite(rec).all()
    assert meta["acceleration"]["channels_last"] == "on" and meta["acceleration"]["check_every"] == 3


def test_reconstruct_rejects_bad_gpu_options(tmp_path, capsys):
    path, _, _ = _stack(tmp_path)
    code = main(["reconstruct", str(path), "-o", str(tmp_path / "r.tif"), "--angles", "0:120",
                 "--slices", "0:1", "--iterations", "2", "--device", "cpu", "--check-every", "0"])
    assert code == 2 and "check_every" in capsys.readouterr().err


def test_demo_runs_the_methods_asked_for(tmp_path, capsys):
    from napari_ganrec.cli.demo import demo_methods
    from napari_ganrec.methods import DEFAULT_METHOD, METHODS

    assert demo_methods("all") == METHODS
    assert demo_methods("fbp") == tuple(m for m in METHODS if m in ("fbp", DEFAULT_METHOD))
    with pytest.raises(ValueError, match="--methods takes 'all' or names"):
        demo_methods("fbp,art")
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--size", "24", "--iterations", "2", "--device", "cpu",
                 "--methods", "fbp,rwtv+wedgefill"]) == 0
    summary = json.loads((out / "demo.json").read_text())
    assert list(summary["methods"]) == [m for m in METHODS if m in ("fbp", DEFAULT_METHOD, "rwtv+wedgefill")]
    assert summary["methods"]["rwtv+wedgefill"]["stages"] == [{"name": "rwtv", "iterations": 2},
                                                              {"name": "wedgefill", "iterations": 2}]
    assert main(["demo", "-o", str(tmp_path / "bad"), "--methods", "art"]) == 2


def test_wedgefill_3d_follows_reweighted_tv_on_the_whole_volume(tmp_path, capsys):
    """--wedgefill-3d: the volume through 3-D wedge filling, recorded as a stage; refused where it
    cannot run, before any reading."""
    p = phantoms.foam(16, n_pores=6, seed=1, nz=16)
    angles = np.linspace(0, 90, 30, endpoint=False)
    path = tmp_path / "proj.npy"
    np.save(path, phantoms.simulate_projections(p, angles))  # (angles, 16 rows, 16 px)
    base = ["reconstruct", str(path), "--angles", "0:90:30", "--method", "rwtv", "--iterations", "20",
            "--device", "cpu", "--center", "8", "--data", "line-integrals"]
    assert main([*base, "-o", str(tmp_path / "rwtv.tif")]) == 0
    assert main([*base, "-o", str(tmp_path / "wf.tif"), "--wedgefill-3d", "3"]) == 0
    with tifffile.TiffFile(tmp_path / "wf.tif") as tif:
        rec, meta = tif.asarray(), json.loads(tif.pages[0].description)
    first = tifffile.imread(tmp_path / "rwtv.tif")
    assert rec.shape == first.shape == (16, 16, 16) and np.isfinite(rec).all()
    assert not np.allclose(rec, first)  # the network ran on it
    assert [s["name"] for s in meta["stages"]] == ["rwtv", "wedgefill3d"]
    assert meta["stages"][1]["iterations"] == 3 and meta["method_label"] == "reweighted TV + 3-D wedge filling"
    assert meta["configs"]["wedgefill3d"]["tv_weight"] == meta["configs"]["rwtv"]["tv_weight"]
    capsys.readouterr()
    for extra, message in [(["--method", "fbp"], "use it with --method rwtv"),
                           (["--workers", "1"], "needs the whole volume in this process"),
                           (["--wedgefill-3d", "0"], "positive number of iterations"),
                           (["--slices", "0:8"], "at least as many slices as detector pixels (16), got 8")]:
        out = tmp_path / "refused.tif"
        assert main([*base, "-o", str(out), "--wedgefill-3d", "3", *extra]) == 2
        assert message in capsys.readouterr().err and not out.exists()
