"""npe2 manifest entries of the I/O issue resolve; reader and writer hooks work without a viewer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _io_fixtures import raw_stack, write_dxchange

from napari_ganrec.io import read_volume
from napari_ganrec.io._napari_io import get_reader, write_image, write_labels_layer

MANIFEST = Path(__file__).resolve().parents[1] / "napari_ganrec" / "napari.yaml"
MY_COMMANDS = ["napari-ganrec.get_reader", "napari-ganrec.write_image",
               "napari-ganrec.write_labels", "napari-ganrec.make_preprocess_widget"]


def test_manifest_commands_resolve():
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(MANIFEST)
    commands = {c.id: c for c in pm.contributions.commands}
    for cid in MY_COMMANDS:
        module, name = commands[cid].python_name.split(":")
        import importlib

        assert callable(getattr(importlib.import_module(module), name)), cid
    assert any(r.command == "napari-ganrec.get_reader" and r.accepts_directories
               for r in pm.contributions.readers)
    assert {w.command for w in pm.contributions.writers} >= {"napari-ganrec.write_image",
                                                            "napari-ganrec.write_labels"}
    assert any(w.command == "napari-ganrec.make_preprocess_widget"
               for w in pm.contributions.widgets)


def test_reader_hook_gives_lazy_layer_with_metadata(tmp_path):
    import dask.array as da

    proj, flats, darks, _ = raw_stack()
    path = write_dxchange(tmp_path / "scan.h5", proj, flats, darks)
    assert get_reader(str(tmp_path / "nothing.png")) is None
    reader = get_reader(str(path))
    (data, kwargs, layer_type), = reader(str(path))
    assert layer_type == "image" and isinstance(data, da.Array)
    np.testing.assert_array_equal(data[3].compute(), proj[3])
    meta = kwargs["metadata"]
    assert meta["angles_deg"].shape == (proj.shape[0],)
    assert meta["flats"].shape == flats.shape and meta["format"] == "dxchange"


def test_writer_hooks_round_trip_and_refuse_overwrite(tmp_path):
    vol = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    out = write_image(str(tmp_path / "rec.tif"), vol, {"name": "rec", "metadata": {
        "method": "fbp", "center": 4.0, "flats": np.ones((2, 8, 8))}})
    data, meta = read_volume(out[0])
    np.testing.assert_array_equal(data, vol)
    assert meta["method"] == "fbp" and "flats" not in meta
    # the reader opens it back as an image with its parameters
    (d2, kw, lt), = get_reader(out[0])(out[0])
    assert lt == "image" and kw["metadata"]["center"] == 4.0
    with pytest.raises(FileExistsError, match="rec.tif"):
        write_image(out[0], vol, {"name": "rec", "metadata": {}})
    lab = write_labels_layer(str(tmp_path / "lab.tif"), (vol > 0.5).astype(np.int32),
                             {"name": "pores", "metadata": {}})
    (d3, kw3, lt3), = get_reader(lab[0])(lab[0])
    assert lt3 == "labels" and d3.max() == 1
