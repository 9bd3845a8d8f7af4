"""The npe2 manifest: valid, importable, shipped, and contributing what the issue asks for."""

from pathlib import Path

import numpy as np
import pytest

npe2 = pytest.importorskip("npe2")

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "napari_ganrec" / "napari.yaml"


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_file(MANIFEST)


def test_manifest_validates_and_imports(manifest):
    assert manifest.name == "napari-ganrec"
    manifest.validate_imports()  # what `npe2 validate --imports` does: every python_name imports


def test_root_manifest_is_the_package_one():
    assert (ROOT / "napari.yaml").resolve() == MANIFEST.resolve()


def test_manifest_is_shipped_and_registered():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["napari.manifest"]["napari-ganrec"] == (
        "napari_ganrec:napari.yaml")
    assert "napari.yaml" in meta["tool"]["setuptools"]["package-data"]["napari_ganrec"]


def test_reconstruction_widget_and_samples_are_contributed(manifest):
    c = manifest.contributions
    commands = {cmd.id: cmd for cmd in c.commands}
    widgets = {w.display_name: w.command for w in c.widgets}
    assert widgets["GANrec reconstruction"] == "napari-ganrec.make_reconstruction_widget"
    assert commands["napari-ganrec.make_reconstruction_widget"].python_name == (
        "napari_ganrec._napari:ReconstructionWidget")
    samples = {s.display_name: s.command for s in c.sample_data}
    wedge = "Porous particle, +-35 degrees (51 projections)"
    assert samples[wedge] == "napari-ganrec.sample_wedge35"
    assert samples["Porous particle, 0-120 degrees"] == "napari-ganrec.sample_range120"


def test_every_widget_is_a_class_napari_hands_the_viewer(manifest):
    """napari 0.9 inspects the contribution's ``__init__`` and passes the viewer only to an argument
    named ``napari_viewer`` or annotated ``napari.viewer.Viewer``: a factory function gets nothing."""
    import importlib
    import inspect

    from napari_ganrec._napari import WIDGETS

    commands = {cmd.id: cmd for cmd in manifest.contributions.commands}
    widgets = {w.display_name: commands[w.command].python_name for w in manifest.contributions.widgets}
    assert set(widgets) == set(WIDGETS)
    for name, python_name in widgets.items():
        module, attr = python_name.split(":")
        assert module == "napari_ganrec._napari" and attr == WIDGETS[name]
        cls = getattr(importlib.import_module(module), attr)
        assert inspect.isclass(cls), f"{name}: {python_name} is not a class"
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        first = params[0]
        assert first.name == "napari_viewer" and first.annotation in ("napari.viewer.Viewer",), (
            f"{name}: napari would not pass the viewer to {first}")
        assert all(p.default is not inspect.Parameter.empty for p in params[1:])


def test_manifest_keeps_the_other_issues_slots():
    text = MANIFEST.read_text()
    for marker in ("# --- segmentation", "# --- readers", "# --- writers"):
        assert marker in text


def test_npe2_discovers_the_plugin():
    """After a pip install (regular or editable), npe2 finds the manifest by its entry point."""
    from importlib.metadata import entry_points

    if not any(ep.name == "napari-ganrec" for ep in entry_points(group="napari.manifest")):
        pytest.skip("napari-ganrec is not pip-installed in this environment")
    pm = npe2.PluginManager()
    pm.discover()
    m = pm.get_manifest("napari-ganrec")
    assert "napari-ganrec.make_reconstruction_widget" in {c.id for c in m.contributions.commands}


@pytest.mark.parametrize(
    ("key", "n_angles", "first", "last"),
    [("sample_wedge35", 51, -35.0, 35.0), ("sample_range120", 61, 0.0, 120.0)],
)
def test_sample_data(manifest, key, n_angles, first, last):
    from napari_ganrec import _napari

    layers = getattr(_napari, key)()
    assert len(layers) == 2
    (proj, pkw, pkind), (truth, tkw, tkind) = layers
    assert pkind == tkind == "image"
    assert proj.shape == (n_angles, 16, 64) and proj.dtype == np.float32
    angles = pkw["metadata"]["angles"]
    assert len(angles) == n_angles and angles[0] == first and angles[-1] == last
    assert pkw["metadata"]["center"] == 32.0
    assert truth.shape == (16, 64, 64)
    assert set(np.unique(np.round(truth[8], 6))) >= {0.0, 1.0}  # particle and pores
    # the projections are the line integrals of the ground truth (same units)
    mid = proj[:, 8, :]
    assert mid.sum(axis=1).std() / mid.sum(axis=1).mean() < 0.01  # mass is angle independent
    assert mid.sum(axis=1).mean() == pytest.approx(truth[8].sum(), rel=0.03)


def test_sample_layers_are_fresh_copies():
    from napari_ganrec import _napari

    first = _napari.sample_wedge35()
    first[0][0][:] = 0  # a user edits the layer...
    first[0][1]["metadata"]["angles"][:] = 0
    again = _napari.sample_wedge35()  # ...and opens the sample again: untouched
    assert again[0][0].max() > 0 and again[0][1]["metadata"]["angles"][0] == -35.0
