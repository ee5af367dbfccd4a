"""Trace files: plain .npz without pickles, lazy loading, and clear errors for anything else."""

import json
import zipfile

import numpy as np
import pytest

from tracer import TracerError
from tracer.run import load_model, run_trace
from tracer.schema import SCHEMA_VERSION
from tracer.tracefile import load_trace, save_trace


@pytest.fixture
def toy_trace(tmp_path):
    model = load_model("toy-moe")
    trace = run_trace(model, [0, 1, 2, 3], prompt=None)
    return save_trace(tmp_path / "t.npz", trace), trace


def test_round_trip_in_recording_order(toy_trace):
    path, computed = toy_trace
    trace = load_trace(path)
    assert trace.names == computed.names
    for name in computed.names:
        np.testing.assert_array_equal(trace[name], computed[name])
    assert trace.meta["schema_version"] == SCHEMA_VERSION
    assert trace.info["layers.0.moe.experts.2.act"]["op"] == "relu"
    assert trace.info["layers.0.moe.experts.2.act"]["formula_text"] == "A = max(H, 0)"


def test_recorded_arrays_are_read_only(toy_trace):
    _, computed = toy_trace
    with pytest.raises(ValueError):
        computed["layers.0.attn.probs"][0, 0, 0] = 1.0


def test_not_a_zip(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(TracerError, match="not a readable .npz trace"):
        load_trace(bad)


def test_truncated_file(toy_trace, tmp_path):
    path, _ = toy_trace
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(TracerError):
        load_trace(cut)


def test_foreign_npz(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(TracerError, match="not a qwen3-tracer trace"):
        load_trace(foreign)


def test_newer_schema_version(tmp_path):
    newer = tmp_path / "newer.npz"
    np.savez(newer, __meta__=np.array(json.dumps({"schema_version": SCHEMA_VERSION + 1, "records": []})))
    with pytest.raises(TracerError, match="newer than this qwen3-tracer"):
        load_trace(newer)


def test_meta_listing_missing_records(tmp_path):
    broken = tmp_path / "broken.npz"
    meta = {"schema_version": 1, "records": [{"name": "logits"}]}
    np.savez(broken, __meta__=np.array(json.dumps(meta)))
    with pytest.raises(TracerError, match="first: logits"):
        load_trace(broken)


def test_file_is_a_plain_zip_of_npy(toy_trace):
    path, computed = toy_trace
    with zipfile.ZipFile(path) as z:
        assert {n.removesuffix(".npy") for n in z.namelist()} == set(computed.names) | {"__meta__"}


def test_failed_write_keeps_the_old_file(toy_trace, monkeypatch):
    path, computed = toy_trace
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(TracerError, match="No space left"):
        save_trace(path, computed)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]
