"""Trace files: plain .npz without pickles, lazy loading, and clear errors for anything else."""

import io
import json
import zipfile

import numpy as np
import pytest

from tracer import TracerError
from tracer.cli import main
from tracer.commands.run import load_model, run_trace
from tracer.i18n import t
from tracer.traces.compare import compare_traces
from tracer.traces.schema import SCHEMA_VERSION
from tracer.traces.tracefile import Trace, load_trace, save_trace

SMALL = ["num_hidden_layers=2", "hidden_size=32", "head_dim=8", "intermediate_size=48", "vocab_size=120",
         "num_attention_heads=4", "num_key_value_heads=2"]


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
    meta = {"schema_version": 1, "records": [{"name": "logits", "shape": [2, 3], "dtype": "float32", "inputs": []}]}
    np.savez(broken, __meta__=np.array(json.dumps(meta)))
    with pytest.raises(TracerError, match=r"lists records it does not contain \(first: logits\)"):
        load_trace(broken)


def test_file_is_a_plain_zip_of_npy_without_the_records_it_can_rebuild(toy_trace):
    path, computed = toy_trace
    with zipfile.ZipFile(path) as z:
        stored = {n.removesuffix(".npy") for n in z.namelist()} - {"__meta__"}
    rebuilt = set(computed.names) - stored
    assert {"layers.0.attn.mask", "layers.0.attn.masked_scores", "layers.0.moe.gates", "embed.onehot",
            "layers.0.resid_mid", "layers.0.resid_post", "layers.0.attn.q_rope", "sample.0.logits"} <= rebuilt
    assert {"layers.0.attn.scores", "layers.0.attn.probs", "logits", "layers.0.moe.router_logits"} <= stored
    npz = np.load(path, allow_pickle=False)
    for name in stored:  # what numpy reads directly is the record itself (nothing half precision here)
        np.testing.assert_array_equal(npz[name], computed[name])


def test_every_record_survives_the_file_bit_for_bit_with_decode_steps(tmp_path):
    computed = run_trace(load_model("qwen3-0.6b", SMALL), [3, 1, 4, 1, 5], max_new_tokens=3)
    trace = load_trace(save_trace(tmp_path / "t.npz", computed))
    assert trace.names == computed.names
    for name in computed.names:
        assert trace[name].dtype == computed[name].dtype and trace[name].shape == computed[name].shape, name
        np.testing.assert_array_equal(trace[name], computed[name], err_msg=name)
    kinds = {r["name"]: r.get("storage", {}).get("kind") for r in trace.meta["records"]}
    assert kinds["decode.2.layers.1.attn.k_cache"] == "rebuilt" and kinds["layers.1.attn.probs"] == "visible"


def test_a_record_that_is_not_its_formula_is_stored_as_numbers(tmp_path):
    """Only records whose rebuild gives back the same bits are left out; anything else keeps its numbers."""
    computed = run_trace(load_model("toy-dense"), [0, 1, 2, 3])
    records = {name: computed[name] for name in computed.names}
    records["layers.0.resid_mid"] = records["layers.0.resid_mid"] + np.float32(1e-3)
    tampered = Trace(None, records, computed.meta)
    trace = load_trace(save_trace(tmp_path / "t.npz", tampered))
    np.testing.assert_array_equal(trace["layers.0.resid_mid"], records["layers.0.resid_mid"])
    assert "storage" not in trace.info["layers.0.resid_mid"]


@pytest.mark.parametrize("half, bits", [("float16", 11), ("bfloat16", 8)])
def test_half_precision_storage_for_display(tmp_path, half, bits):
    computed = run_trace(load_model("qwen3-0.6b", SMALL), [3, 1, 4, 1, 5], max_new_tokens=2)
    full, small = tmp_path / "full.npz", tmp_path / "half.npz"
    save_trace(full, computed)
    trace = load_trace(save_trace(small, computed, half))
    def payload(path):  # the numbers written, without the .npy headers
        npz = np.load(path, allow_pickle=False)
        return sum(npz[n].nbytes for n in npz.files if n != "__meta__")

    assert payload(small) < 0.55 * payload(full)
    with zipfile.ZipFile(small) as z:  # high bytes (sign, exponent) deflated, low bytes stored
        q = {i.filename: i for i in z.infolist() if i.filename.startswith("layers.1.attn.q_proj")}
    assert q["layers.1.attn.q_proj.npy"].compress_type == zipfile.ZIP_DEFLATED
    assert q["layers.1.attn.q_proj.lo.npy"].compress_type == zipfile.ZIP_STORED
    for name in computed.names:
        x, y = computed[name], trace[name]
        assert y.dtype == x.dtype and y.shape == x.shape, name
        if np.issubdtype(x.dtype, np.floating) and "mask" not in name and "masked" not in name:
            if trace.info[name].get("storage", {}).get("kind") == "rebuilt":
                # rebuilt from rounded inputs: their rounding errors add up (a few terms, then the residual chain)
                assert np.abs(y - x).max() <= np.abs(x).max() * 2.0 ** (3 - bits), name
            else:  # rounding to a p-bit significand moves a value by at most 2^-p of itself (+ subnormals)
                assert np.all(np.abs(y - x) <= np.abs(x) * 2.0 ** -bits + 2.0 ** -24), name
        elif not np.issubdtype(x.dtype, np.floating):
            np.testing.assert_array_equal(y, x, err_msg=name)
    assert trace.half_precision == half
    with pytest.raises(TracerError, match="for display"):
        compare_traces(trace, load_trace(full))


def test_store_dtype_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "h.npz"
    assert main(["trace", "toy-dense", "--tokens", "0,1,2,3", "--store-dtype", "bfloat16", "--out", str(out)]) == 0
    assert load_trace(out).meta["store_dtype"] == "bfloat16"
    assert main(["trace", "toy-dense", "--tokens", "0", "--store-dtype", "int8", "--out", str(out)]) == 2


def test_failed_write_keeps_the_old_file(toy_trace, monkeypatch):
    path, computed = toy_trace
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np.lib.format, "write_array", boom)
    with pytest.raises(TracerError, match=t("errors.os_disk_full")):  # errno 28, said in the reader's words
        save_trace(path, computed)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_long_chains_of_rebuilt_records_read_without_recursion(tmp_path):
    """Each decode step's cache is rebuilt from the step before: 1,200 steps of chain, read in one go."""
    computed = run_trace(load_model("toy-dense", ["max_position_embeddings=2000"]), [0, 1, 2, 3],
                         sampling=None, max_new_tokens=1)
    records = {name: computed[name] for name in computed.names}
    meta = {**computed.meta, "records": list(computed.meta["records"])}
    previous = "layers.0.attn.k_rope"
    piece = records[previous]
    for step in range(1, 1201):  # a made-up generation: every step appends the same keys to the cache
        name = f"decode.{step}.layers.0.attn.k_cache"
        records[name] = np.concatenate([records[previous], piece], axis=1)
        meta["records"].append({"name": name, "shape": list(records[name].shape), "dtype": "float32",
                                "op": "kv_append", "inputs": [previous, "layers.0.attn.k_rope"]})
        previous = name
    trace = load_trace(save_trace(tmp_path / "chain.npz", Trace(None, records, meta)))
    assert trace.info[previous]["storage"]["kind"] == "rebuilt"
    np.testing.assert_array_equal(trace[previous], records[previous])


def _rewrite(src, dst, change_meta=None, damage=None):
    """Copy a trace file member by member, changing its meta or flipping a byte of one member's data."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "__meta__.npy" and change_meta is not None:
                meta = json.loads(bytes(np.load(src)["__meta__"]).decode("utf-8"))
                change_meta(meta)
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
                data = buf.getvalue()
            zout.writestr(info, data)
    if damage is not None:  # flip one byte in the middle of a stored member's numbers: its CRC no longer matches
        raw = bytearray(dst.read_bytes())
        with zipfile.ZipFile(dst) as z:
            info = z.getinfo(damage)
        raw[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF
        dst.write_bytes(bytes(raw))


@pytest.mark.parametrize("case, needle", [
    ("flipped byte", "is not a readable .npz trace"),
    ("records not a list", "is not qwen3-tracer metadata"),
    ("record without a name", "the file is damaged"),
    ("rebuilt from a missing record", "must be a rebuild from records before it"),
    ("lying shape", "its metadata says"),
])
def test_a_damaged_trace_is_one_line_not_a_traceback(toy_trace, tmp_path, capsys, case, needle):
    path, _ = toy_trace
    bad = tmp_path / "bad.npz"

    def edit(meta):
        records = meta["records"]
        if case == "records not a list":
            meta["records"] = "abc"
        elif case == "record without a name":
            del records[3]["name"]
        elif case == "rebuilt from a missing record":
            next(r for r in records if r.get("storage", {}).get("kind") == "rebuilt")["inputs"][0] = "nope"
        elif case == "lying shape":
            next(r for r in records if r["name"] == "logits")["shape"] = [4, 7]

    _rewrite(path, bad, change_meta=None if case == "flipped byte" else edit,
             damage="logits.npy" if case == "flipped byte" else None)
    code = main(["show", str(bad), "logits"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_meta_is_compressed_utf8_json_and_v1_string_meta_still_reads(toy_trace, tmp_path):
    path, computed = toy_trace
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("__meta__.npy")
    assert info.compress_type == zipfile.ZIP_DEFLATED and info.compress_size < info.file_size / 3
    meta = json.loads(bytes(np.load(path)["__meta__"]).decode("utf-8"))
    old = tmp_path / "v1.npz"  # schema v1: every record stored, the meta a NumPy string
    meta_v1 = {**meta, "schema_version": 1, "records": [{k: v for k, v in r.items() if k != "storage"}
                                                        for r in meta["records"]]}
    np.savez(old, **{n: computed[n] for n in computed.names}, __meta__=np.array(json.dumps(meta_v1)))
    trace = load_trace(old)
    for name in computed.names:
        np.testing.assert_array_equal(trace[name], computed[name])
