"""Hostile input: every command and file type, tried as an attacker would.

Each case asserts exit code 2, exactly one line on stderr (``tracer: error: …``) naming the value, no traceback,
no temporary file left behind, and an old output file untouched. Files are built by the tests themselves.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tracer.cli import main
import tracer.safety.budget
import tracer.safety.limits
import tracer.safety.safefiles
from tracer.traces.tracefile import meta_text

OLD = b"OLD OUTPUT, MUST SURVIVE"
SMALL = ["--set", "num_hidden_layers=1", "--set", "hidden_size=32", "--set", "head_dim=8",
         "--set", "intermediate_size=48", "--set", "vocab_size=97"]


# --- files the cases are built from -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A good toy trace and a good small checkpoint, shared read-only by the cases."""
    root = tmp_path_factory.mktemp("base")
    assert main(["trace", "toy-dense", "--tokens", "0,1,2,3", "--max-new-tokens", "2",
                 "--out", str(root / "good.npz")]) == 0
    assert main(["export", "qwen3-0.6b", *SMALL, "--out", str(root / "ckpt")]) == 0
    return root


def good_parts(base: Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(base / "good.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
        meta = json.loads(meta_text(z["__meta__"]))
    return arrays, meta


def write_trace(path: Path, arrays: dict, meta: dict | str) -> Path:
    text = meta if isinstance(meta, str) else json.dumps(meta)
    np.savez(path, **arrays, __meta__=np.array(text))
    return path


def mutate(edit: Callable[[dict, dict], None]) -> Callable[[Path, Path], Path]:
    """A builder: the good trace with ``edit(arrays, meta)`` applied."""
    def build(d: Path, base: Path) -> Path:
        arrays, meta = good_parts(base)
        edit(arrays, meta)
        return write_trace(d / "h.npz", arrays, meta)
    return build


def raw(content: bytes) -> Callable[[Path, Path], Path]:
    def build(d: Path, base: Path) -> Path:
        (d / "h.npz").write_bytes(content)
        return d / "h.npz"
    return build


def zip_members(members: dict[str, bytes], compress: bool = False) -> Callable[[Path, Path], Path]:
    def build(d: Path, base: Path) -> Path:
        with zipfile.ZipFile(d / "h.npz", "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
            for name, data in members.items():
                z.writestr(name, data)
        return d / "h.npz"
    return build


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def meta_npy(meta: dict | str) -> bytes:
    return npy_bytes(np.array(meta if isinstance(meta, str) else json.dumps(meta)))


def bomb(d: Path, base: Path) -> Path:
    """A 0.3 MB file declaring a 256 MiB array of zeros (about 1000:1, like the 4 MB / 4.4 GB bomb)."""
    header = io.BytesIO()
    n = 256 * 1024**2
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (n // 4,)})
    _, meta = good_parts(base)
    with zipfile.ZipFile(d / "h.npz", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("__meta__.npy", meta_npy(meta))
        with z.open("tokens.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            chunk = bytes(1 << 24)
            for _ in range(n >> 24):
                f.write(chunk)
    return d / "h.npz"


def fifo(d: Path, base: Path) -> Path:
    os.mkfifo(d / "h.npz")
    return d / "h.npz"


def link_to_device(d: Path, base: Path) -> Path:
    (d / "h.npz").symlink_to("/dev/zero")
    return d / "h.npz"


def folder(d: Path, base: Path) -> Path:
    (d / "h.npz").mkdir()
    return d / "h.npz"


def missing(d: Path, base: Path) -> Path:
    return d / "no-such.npz"


def _drop(key):
    return lambda a, m: m.pop(key)


def _set(key, value):
    return lambda a, m: m.__setitem__(key, value)


def _record(name, value):
    def edit(a, m):
        a[name] = value
    return edit


def _nan_in(name):
    def edit(a, m):
        a[name] = np.full_like(a[name], np.nan)
    return edit


def _rename_record(new):
    def edit(a, m):
        a[new] = a.pop("tokens")
        m["records"][0]["name"] = new
    return edit


TRACE_FILES: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "not-a-zip": (raw(b"this is not a zip file"), "not a readable .npz"),
    "empty-file": (raw(b""), "not a readable .npz"),
    "truncated-zip": (lambda d, b: raw((b / "good.npz").read_bytes()[:3000])(d, b), "not a readable .npz"),
    "no-meta": (zip_members({"x.npy": npy_bytes(np.ones(3))}), "not a qwen3-tracer trace"),
    "meta-not-json": (zip_members({"__meta__.npy": meta_npy("{")}), "not valid JSON"),
    "meta-nested-deep": (zip_members({"__meta__.npy": meta_npy("[" * 100_000 + "]" * 100_000)}), "not valid JSON"),
    "meta-a-list": (zip_members({"__meta__.npy": meta_npy("[1, 2]")}), "not qwen3-tracer metadata"),
    "meta-newer": (zip_members({"__meta__.npy": meta_npy({"schema_version": 99, "records": []})}), "newer"),
    "meta-numeric-array": (zip_members({"__meta__.npy": npy_bytes(np.ones(3))}), "__meta__"),
    "meta-missing-model": (mutate(_drop("model")), "lacks the key 'model'"),
    "meta-missing-token-ids": (mutate(_drop("token_ids")), "lacks the key 'token_ids'"),
    "meta-missing-config": (mutate(_drop("config")), "lacks the key 'config'"),
    "meta-token-ids-text": (mutate(_set("token_ids", "0,1")), "'token_ids'"),
    "meta-labels-numbers": (mutate(_set("token_labels", [1, 2])), "'token_labels'"),
    "meta-record-no-shape": (mutate(lambda a, m: m["records"][0].pop("shape")), "records[0].shape"),
    "meta-record-text-number": (mutate(lambda a, m: m["records"][0].__setitem__("en", 5)), "records[0].en"),
    "meta-record-ansi-name": (mutate(_rename_record("x\x1b[2J")), "records[0].name"),
    "meta-record-markdown-name": (mutate(_rename_record("![x](http://evil/a.png)")), "records[0].name"),
    "meta-config-nan": (mutate(lambda a, m: m["config"].__setitem__("rms_norm_eps", float("nan"))), "finite"),
    "meta-config-unknown-key": (mutate(lambda a, m: m["config"].__setitem__("evil", 1)), "'config'"),
    "meta-lists-missing-record": (mutate(lambda a, m: a.pop("logits")), "first: logits"),
    "record-object-dtype": (mutate(_record("logits", np.array([{"a": 1}], dtype=object))), "dtype object"),
    "record-string-dtype": (mutate(_record("logits", np.array(["abc"]))), "dtype <U3"),
    "record-complex-dtype": (mutate(_record("logits", np.ones((4, 6), dtype=np.complex64))), "dtype complex64"),
    "record-shape-lie": (mutate(_record("logits", np.ones((2, 2), dtype=np.float32))), "has shape [2, 2]"),
    "member-not-npy": (zip_members({"__meta__.npy": meta_npy({"schema_version": 1, "records": []}),
                                    "evil.txt": b"x"}), "'evil.txt'"),
    "npy-bad-magic": (zip_members({"__meta__.npy": b"NOTNUMPY" * 8}), "'__meta__'"),
    "npy-shape-larger-than-data": (zip_members({"__meta__.npy": meta_npy("{}"),
                                                "x.npy": npy_bytes(np.ones(4))[:-16]}), "'x'"),
    "zip-bomb": (bomb, "zip bomb"),
    "fifo": (fifo, "not a regular file"),
    "link-to-dev-zero": (link_to_device, "not a regular file"),
    "a-folder": (folder, "not a regular file"),
    "missing": (missing, "does not exist"),
}
READ_TIME_FILES = {  # open fine, refused when the bad record is read (show prints it; compare reports it)
    "record-nan": (mutate(_nan_in("embed.out")), "holds NaN"),
    "record-inf-outside-mask": (mutate(_record("logits", np.full((4, 6), np.inf, dtype=np.float32))), "holds Inf"),
}


# --- checkpoint directories ---------------------------------------------------------------------------------------
def ckpt(edit: Callable[[Path], None]) -> Callable[[Path, Path], Path]:
    def build(d: Path, base: Path) -> Path:
        out = d / "ck"
        out.mkdir()
        for f in (base / "ckpt").iterdir():
            (out / f.name).write_bytes(f.read_bytes())
        edit(out)
        return out
    return build


def _config(**changes):
    def edit(c: Path) -> None:
        cfg = json.loads((c / "config.json").read_text())
        cfg.update(changes)
        (c / "config.json").write_text(json.dumps(cfg))
    return edit


def _config_text(text):
    return lambda c: (c / "config.json").write_text(text)


def _index(weight_map):
    def edit(c: Path) -> None:
        (c / "model.safetensors").rename(c / "shard.safetensors")
        (c / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map(c)}))
    return edit


def _all_to(file):
    def make(c: Path):
        from safetensors import safe_open
        with safe_open(str(c / "shard.safetensors"), framework="numpy") as f:
            return {k: file for k in f.keys()}
    return make


def _shard_fifo(c: Path) -> None:
    _index(_all_to("pipe.safetensors"))(c)
    os.mkfifo(c / "pipe.safetensors")


def _shard_link_out(c: Path) -> None:
    _index(_all_to("out.safetensors"))(c)
    outside = c.parent / "outside.safetensors"
    (c / "shard.safetensors").rename(outside)
    (c / "out.safetensors").symlink_to(outside)


def _single_link_out(c: Path) -> None:
    outside = c.parent / "outside.safetensors"
    (c / "model.safetensors").rename(outside)
    (c / "model.safetensors").symlink_to(outside)


def _single_fifo(c: Path) -> None:
    (c / "model.safetensors").unlink()
    os.mkfifo(c / "model.safetensors")


def _nan_weight(c: Path) -> None:
    path = c / "model.safetensors"
    data = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    start = 8 + length + header["model.norm.weight"]["data_offsets"][0]
    data[start:start + 4] = struct.pack("<f", float("nan"))
    path.write_bytes(bytes(data))


def _truncate(c: Path) -> None:
    path = c / "model.safetensors"
    path.write_bytes(path.read_bytes()[:200])


def _pickled_only(c: Path) -> None:
    (c / "model.safetensors").unlink()
    (c / "pytorch_model.bin").write_bytes(b"\x80\x04evil")


CHECKPOINTS: dict[str, tuple[Callable[[Path, Path], Path], str]] = {
    "no-config": (ckpt(lambda c: (c / "config.json").unlink()), "no config.json"),
    "config-not-json": (ckpt(_config_text("{nope")), "not valid JSON"),
    "config-a-list": (ckpt(_config_text("[1]")), "JSON object"),
    "config-deep": (ckpt(_config_text("[" * 50_000 + "]" * 50_000)), "not valid JSON"),
    "config-llama": (ckpt(_config(model_type="llama")), "'llama'"),
    "config-nan-eps": (ckpt(_config_text('{"model_type": "qwen3", "vocab_size": 97, "hidden_size": 32, '
                                         '"intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 16, '
                                         '"num_key_value_heads": 8, "head_dim": 8, "max_position_embeddings": 64, '
                                         '"rms_norm_eps": NaN}')), "rms_norm_eps"),
    "config-inf-theta": (ckpt(_config(rope_theta=float("inf"))), "rope_theta"),
    "config-negative-width": (ckpt(_config(hidden_size=-32)), "hidden_size"),
    "config-zero-layers": (ckpt(_config(num_hidden_layers=0)), "num_hidden_layers"),
    "config-billion-layers": (ckpt(_config(num_hidden_layers=10**9)), "weight tensors"),
    "config-huge-vocab": (ckpt(_config(vocab_size=10**12)), "vocab_size"),
    "config-heads-inconsistent": (ckpt(_config(num_key_value_heads=3)), "multiple of num_key_value_heads"),
    "config-layers-text": (ckpt(_config(num_hidden_layers="two")), "num_hidden_layers"),
    "weight-map-a-list": (ckpt(_index(lambda c: ["model.safetensors"])), "weight_map"),
    "weight-map-dotdot": (ckpt(_index(_all_to("../outside.safetensors"))), "../outside.safetensors"),
    "weight-map-absolute": (ckpt(_index(_all_to("/etc/passwd"))), "/etc/passwd"),
    "weight-map-number": (ckpt(_index(_all_to(7))), "'7'"),
    "index-not-json": (ckpt(lambda c: (c / "model.safetensors.index.json").write_text("{")), "not valid JSON"),
    "shard-fifo": (ckpt(_shard_fifo), "not a regular file"),
    "shard-link-out": (ckpt(_shard_link_out), "not a regular file"),
    "single-link-out": (ckpt(_single_link_out), "not a regular file"),
    "single-fifo": (ckpt(_single_fifo), "not a regular file"),
    "truncated-safetensors": (ckpt(_truncate), "not a readable safetensors"),
    "pickled-only": (ckpt(_pickled_only), "pickled"),
    "not-a-folder": (lambda d, b: raw(b"x")(d, b), "not a GGUF file"),
}


# --- the cases ----------------------------------------------------------------------------------------------------
def _cases():
    cases = []

    def case(cid, argv, expect, build=None):
        cases.append(pytest.param(argv, expect, build, id=cid))

    trace = ["trace", "toy-dense", "--out", "{old}"]
    for value, expect in [("0,²", "0,²"), ("", "empty"), (",", "empty"), ("a,b", "a,b"), ("-1", "-1"),
                          ("1e3", "1e3"), ("99999999999999999999", "99999999999999999999"), ("0;1", "0;1"),
                          ("0,\x1b[31m", "\\x1b")]:
        case(f"trace-tokens-{value!r}", trace + ["--tokens", value], expect)
    for flag, value, expect in [
        ("--temperature", "nan", "nan"), ("--temperature", "inf", "inf"), ("--temperature", "-1", "-1"),
        ("--temperature", "warm", "'warm'"), ("--top-p", "nan", "nan"), ("--top-p", "0", "top_p"),
        ("--top-p", "1.5", "1.5"), ("--top-k", "0", "top_k"), ("--top-k", "-3", "-3"), ("--top-k", "1.5", "1.5"),
        ("--max-new-tokens", "0", "--max-new-tokens"), ("--max-new-tokens", "x", "'x'"),
        ("--max-new-tokens", "100000", "max_position_embeddings"), ("--round", "-1", "-1"), ("--round", "13", "13"),
        ("--seed", "-1", "-1"), ("--suppress", "0,1,2,3,4,5", "every one"), ("--suppress", "abc", "abc"),
        ("--suppress", "99", "99"), ("--max-memory", "lots", "'lots'"), ("--max-memory", "0", "'0'"),
        ("--max-memory", "1K", "budget"), ("--dtype", "bfloat16", "--backend torch"),
        ("--device", "cuda", "--backend torch"), ("--lang", "fr", "fr"),
    ]:
        case(f"trace{flag}={value}", trace + ["--tokens", "0,1", flag, value], expect)
    for value, expect in [("num_hidden_layers=1000000000", "weight tensors"), ("num_hidden_layers=0", "positive"),
                          ("rms_norm_eps=NaN", "finite"), ("rope_theta=Infinity", "finite"),
                          ("initializer_range=-Infinity", "finite"), ("mask_value=NaN", "mask_value"),
                          ("mask_value=5", "mask_value"), ("hidden_size=-1", "hidden_size"),
                          ("num_hidden_layers", "KEY=VALUE"), ("=2", "KEY=VALUE"), ("evil=1", "'evil'"),
                          ("head_dim=3", "head_dim"), ("vocab_size=1e20", "vocab_size"),
                          ("mlp_only_layers=\"x\"", "mlp_only_layers"),
                          ('rope_scaling={{"rope_type": "yarn", "factor": NaN, '
                           '"original_max_position_embeddings": 64}}', "finite"),
                          ("rope_scaling=[]", "rope_scaling"), ("sliding_window=100000000000000", "sliding_window")]:
        case(f"trace-set-{value}", ["trace", "qwen3-0.6b", "--tokens", "1,2", "--out", "{old}", "--set", value],
             expect)
    case("trace-rope-angle-nan", ["trace", "toy-dense", "--tokens", "0", "--out", "{old}", "--set",
                                  "rope_degrees_per_position=[NaN]"], "finite")
    case("trace-billion-experts", ["trace", "qwen3-30b-a3b", "--tokens", "0", "--out", "{old}", "--set",
                                   "num_experts=100000000"], "weight tensors")
    case("trace-30b-over-budget", ["trace", "qwen3-30b-a3b", "--tokens", "1,2", "--out", "{old}",
                                   "--max-memory", "4G"], "--set num_hidden_layers=2")
    case("trace-out-is-folder", ["trace", "toy-dense", "--tokens", "0", "--out", "{d}"], "directory")
    case("trace-out-no-folder", ["trace", "toy-dense", "--tokens", "0", "--out", "{d}/no/x.npz"], "does not exist")
    case("trace-out-not-npz", ["trace", "toy-dense", "--tokens", "0", "--out", "{d}/x.txt"], ".npz")
    case("trace-empty-prompt", trace + ["--prompt", "   "], "empty")
    case("trace-chat-toy", trace + ["--prompt", "hi", "--chat"], "toy vocabulary")
    case("trace-no-input", trace, "--prompt")
    small = ["trace", "qwen3-0.6b", *SMALL, "--tokens", "0,1", "--out", "{old}", "--backend", "torch"]
    case("trace-torch-no-cuda", small + ["--device", "cuda"], "CUDA")
    case("trace-torch-bad-device", small + ["--device", "quantum"], "quantum")
    case("trace-unknown-model", ["trace", "qwen9", "--tokens", "0", "--out", "{old}"], "qwen9")
    for cid, (build, expect) in CHECKPOINTS.items():
        case(f"trace-ckpt-{cid}", ["trace", "{file}", "--tokens", "1,2", "--out", "{old}"], expect, build)
        if cid != "not-a-folder":
            case(f"info-ckpt-{cid}", ["info", "{file}"], expect, build)
    case("trace-ckpt-nan-weight", ["trace", "{file}", "--tokens", "1,2", "--out", "{old}"], "model.norm.weight",
         ckpt(_nan_weight))
    case("tokenize-model-missing", ["tokenize", "hi", "--model", "{d}/nothing"], "does not exist")
    case("tokenize-model-no-tokenizer", ["tokenize", "hi", "--model", "{file}"], "no tokenizer",
         ckpt(lambda c: None))
    for cid, (build, expect) in TRACE_FILES.items():
        case(f"show-{cid}", ["show", "{file}"], expect, build)
        case(f"compare-{cid}", ["compare", "{file}", "{good}"], expect, build)
        if cid in ("zip-bomb", "fifo", "meta-missing-model", "record-object-dtype", "meta-not-json"):
            case(f"app-{cid}", ["app", "{file}"], expect, build)
    for cid, (build, expect) in READ_TIME_FILES.items():
        case(f"show-{cid}", ["show", "{file}"], expect, build)
    for value, expect in [("-5", "-5"), ("13", "13"), ("x", "'x'"), ("²", "²")]:
        case(f"show-decimals-{value}", ["show", "{good}", "--decimals", value], expect)
    case("show-no-match", ["show", "{good}", "nothing.*"], "nothing.*")
    case("show-lang", ["show", "{good}", "--lang", "fr"], "fr")
    messages = ["chat", "--messages", "{file}"]
    for cid, content, expect in [
        ("not-json", "{", "not valid JSON"), ("deep", "[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ("not-a-list", '{"role": "user"}', "non-empty JSON list"), ("empty", "[]", "non-empty JSON list"),
        ("bad-role", '[{"role": "root", "content": "x"}]', "root"),
        ("content-not-text", '[{"role": "user", "content": 5}]', "content"),
        ("tool-call-broken", '[{"role": "assistant", "content": "", "tool_calls": [7]}]', "tool call 0"),
    ]:
        def build(d, b, content=content):
            (d / "m.json").write_text(content)
            return d / "m.json"
        case(f"chat-messages-{cid}", messages, expect, build)
    case("chat-messages-folder", ["chat", "--messages", "{d}"], "folder")
    case("chat-messages-missing", ["chat", "--messages", "{d}/none.json"], "does not exist")
    case("chat-messages-binary", messages, "not valid JSON", raw(b"\xff\xfe\x00garbage"))
    case("chat-messages-fifo", messages, "cannot read", fifo)

    def user_messages(d: Path) -> None:
        (d / "m.json").write_text('[{"role": "user", "content": "hi"}]')

    for cid, template, expect in [
        ("loop", "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", "to render"),
        ("huge-output", "{% for i in range(99999) %}{% for j in range(99999) %}xxxxxxxx{% endfor %}{% endfor %}",
         "characters"),
        ("string-times", "{{ 'a' * 1000000000 }}", "characters"),
        ("power", "{{ 10 ** 100000000 }}", "characters"),
        ("syntax", "{% for %}", "chat template failed"),
        ("raises", "{{ raise_exception('no') }}", "refused"),
        ("python-escape", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "chat template failed"),
    ]:
        def build(d, b, template=template):
            c = ckpt(lambda c: (c / "chat_template.jinja").write_text(template))(d, b)
            user_messages(d)
            return c
        case(f"chat-template-{cid}", ["chat", "--messages", "{d}/m.json", "--model", "{file}"], expect, build)

    def tools_file(d, b):
        user_messages(d)
        (d / "t.json").write_text('{"name": "f"}')
        return d / "t.json"
    case("chat-tools-not-list", ["chat", "--messages", "{d}/m.json", "--tools", "{file}"], "tools", tools_file)
    export = ["export", "qwen3-0.6b", *SMALL]
    case("export-out-is-file", export + ["--out", "{old}"], "not an empty folder")
    case("export-out-not-empty", export + ["--out", "{d}"], "not an empty folder")
    case("export-out-no-parent", export + ["--out", "{d}/a/b/c"], "does not exist")
    for value, expect in [("nan", "'nan'"), ("0", "at least"), ("-1", "-1"), ("big", "'big'"), ("inf", "'inf'")]:
        case(f"export-max-shard-{value}", export + ["--max-shard-gb", value, "--out", "{d}/new"], expect)
    case("export-set-nan", ["export", "qwen3-0.6b", "--set", "rms_norm_eps=NaN", "--out", "{d}/new"], "finite")
    case("export-unknown", ["export", "qwen9", "--out", "{d}/new"], "qwen9")
    case("export-30b", ["export", "qwen3-30b-a3b", "--out", "{d}/new"], "budget")
    for cid, argv, expect in [
        ("quantize-30b", ["quantize", "qwen3-30b-a3b", "--type", "Q8_0", "--out", "{d}/x.gguf"], "budget"),
        ("quantize-unknown-type", ["quantize", "toy-dense", "--type", "Q9", "--out", "{d}/x.gguf"], "'Q9'"),
        ("quantize-out-folder", ["quantize", "toy-dense", "--type", "Q8_0", "--out", "{d}"], ".gguf"),
        ("quantize-out-not-gguf", ["quantize", "toy-dense", "--type", "Q8_0", "--out", "{old}"], ".gguf"),
        ("export-gguf-out-not-gguf", ["export", "toy-dense", "--format", "gguf", "--out", "{old}"], ".gguf"),
        ("trace-ollama-dotdot", ["trace", "ollama:../../etc", "--tokens", "1", "--out", "{old}"], "../../etc"),
        ("trace-hf-dotdot", ["trace", "hf:../../x", "--tokens", "1", "--out", "{old}"], "../../x"),
        ("trace-stream-preset", ["trace", "qwen3-0.6b", "--stream", "--tokens", "1", "--out", "{old}"], "--stream"),
    ]:
        case(cid, argv, expect)
    for cid, content in [("gguf-garbage", b"GGUF\x03\x00\x00\x00garbage"),
                         ("gguf-huge-counts", b"GGUF\x03\x00\x00\x00" + b"\xff" * 7 + b"\x7f" + b"\xff" * 7 + b"\x7f")]:
        def build(d, b, content=content):
            (d / "m.gguf").write_bytes(content)
            return d / "m.gguf"
        case(f"trace-{cid}", ["trace", "{file}", "--tokens", "1", "--out", "{old}"], "not a readable GGUF", build)
        case(f"info-{cid}", ["info", "{file}"], "not a readable GGUF", build)
    npy_cases = [("zero-head-text", ["--zero-head", "x"], "'x'"), ("zero-head-layer", ["--zero-head", "9.9"], "9"),
                 ("drop-expert-dense", ["--drop-expert", "0.1"], "dense"),
                 ("patch-text-file", ["--patch", "embed.out=/etc/passwd"], "/etc/passwd"),
                 ("patch-no-equals", ["--patch", "nonsense"], "'nonsense'"),
                 ("patch-folder", ["--patch", "embed.out={d}"], "--patch"),
                 ("patch-object", ["--patch", "embed.out={file}"], "not a .npy array"),
                 ("patch-nan", ["--patch", "embed.out={d}/nan.npy"], "NaN")]
    for cid, extra, expect in npy_cases:
        def build(d, b):
            np.save(d / "obj.npy", np.array([{}], dtype=object), allow_pickle=True)
            np.save(d / "nan.npy", np.full((2, 4), np.nan, dtype=np.float32))
            return d / "obj.npy"
        case(f"trace-{cid}", ["trace", "toy-dense", "--tokens", "0,1", "--out", "{old}", *extra], expect, build)
    case("show-npy-folder", ["show", "{good}", "logits", "--npy", "{d}"], ".npy")
    case("demo-out-dir-file", ["demo", "--out-dir", "{old}"], "not a folder")
    case("demo-round-negative", ["demo", "--out-dir", "{d}/demo", "--round", "-1"], "-1")
    case("demo-round-text", ["demo", "--out-dir", "{d}/demo", "--round", "x"], "'x'")
    for value, expect in [("0", "--tokens"), ("x", "'x'"), ("²", "²"), ("-4", "-4")]:
        case(f"info-tokens-{value}", ["info", "toy-dense", "--tokens", value], expect)
    case("info-max-memory", ["info", "toy-dense", "--max-memory", "much"], "'much'")
    case("info-billion-layers", ["info", "toy-dense", "--set", "num_hidden_layers=1000000000"], "weight tensors")
    case("info-billion-experts", ["info", "qwen3-30b-a3b", "--set", "num_experts=1000000000"], "weight tensors")
    case("info-unknown", ["info", "qwen9"], "qwen9")
    for argv, expect in [
        (["app", "--address", "0.0.0.0"], "password"), (["app", "--address", "192.168.1.9"], "password"),
        (["app", "--address", "::"], "password"), (["app", "--address", "evil host"], "evil host"),
        (["app", "--port", "0"], "--port"), (["app", "--port", "70000"], "70000"),
        (["app", "--traces-dir", "{d}/none"], "not a folder"), (["app", "--max-upload-mb", "0"], "--max-upload-mb"),
        (["app", "--workers", "0"], "--workers"), (["app", "--max-memory", "x"], "'x'"),
        (["notebooks", "--address", "0.0.0.0"], "password"), (["notebooks", "--address", "nowhere"], "nowhere"),
        (["nosuch"], "nosuch"), ([], "required"),
    ]:
        case(f"{'-'.join(argv)[:40]}", argv, expect)
    return cases


CASES = _cases()


def test_there_are_at_least_120_cases():
    assert len(CASES) >= 120


@pytest.mark.parametrize("argv, expect, build", CASES)
def test_hostile_input_is_refused_in_one_line(argv, expect, build, base, tmp_path, capsys, monkeypatch):
    if "cuda" in argv:
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA: --device cuda is not an error here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRACER_APP_PASSWORD", raising=False)
    monkeypatch.setattr(tracer.safety.limits, "TEMPLATE_SECONDS", 0.5)
    monkeypatch.setattr(tracer.safety.budget, "available_memory", lambda: 16 * 1024**3)  # the same budget on any machine
    monkeypatch.setattr(os, "execve", _no_exec)
    monkeypatch.setattr(os, "execv", _no_exec)
    old = tmp_path / "old.npz"
    old.write_bytes(OLD)
    hostile = build(tmp_path, base) if build else None
    private_tmp = tmp_path / "tmp"  # every temporary file or folder of the command lands here
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    values = {"old": str(old), "d": str(tmp_path), "good": str(base / "good.npz"), "file": str(hostile)}
    code = main([a.format(**values) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (code, out[-300:], err)
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("tracer: error: "), err
    assert "Traceback" not in err + out and "\x1b" not in err
    assert expect in lines[0], (expect, lines[0])
    assert old.read_bytes() == OLD
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not list(private_tmp.iterdir())


def _no_exec(*args, **kwargs):
    raise AssertionError(f"a hostile case reached exec: {args[1][:4]}")


# --- the verdicts and behaviours around the errors ------------------------------------------------------------------
def test_debug_shows_the_traceback(capsys):
    with pytest.raises(Exception, match="finite number"):
        main(["--debug", "trace", "toy-dense", "--tokens", "0", "--temperature", "nan", "--out", "x.npz"])


def test_compare_gives_traces_full_of_nan_a_verdict(base, tmp_path, capsys):
    nan = mutate(lambda a, m: [a.__setitem__(k, np.full_like(v, np.nan)) for k, v in a.items()
                               if v.dtype.kind == "f" and "mask" not in k])(tmp_path, base)
    code = main(["compare", str(nan), str(nan)])
    out, _ = capsys.readouterr()
    assert code == 1 and "NONFINITE" in out and " 0 NONFINITE" not in out
    assert main(["compare", str(base / "good.npz"), str(base / "good.npz")]) == 0


def test_show_escapes_terminal_control_characters(base, tmp_path, capsys):
    labels = ["\x1b[2J\x1b]0;pwned\x07", "b", "c", "d"]
    def edit(arrays: dict, meta: dict) -> None:  # token text comes from the tokens' bytes, else the labels
        meta["token_labels"] = labels
        meta["token_bytes"] = [label.encode().hex() for label in labels]

    path = mutate(edit)(tmp_path, base)
    assert main(["show", str(path), "embed.out"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J" in out


def test_a_bomb_is_refused_without_allocating(base, tmp_path):
    import resource

    from tracer import TracerError
    from tracer.traces.tracefile import load_trace

    path = bomb(tmp_path, base)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(TracerError, match="zip bomb"):
        load_trace(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: under 100 MB
    with pytest.raises(TracerError, match="budget"):
        load_trace(base / "good.npz", max_bytes=1000)


def test_too_many_members_are_refused_before_listing(base, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tracer.safety.safefiles, "MAX_MEMBERS", 10)
    assert main(["show", str(base / "good.npz")]) == 2
    assert "arrays, more than a trace may" in capsys.readouterr().err


def test_index_wins_over_the_single_file_for_both_backends(base, tmp_path, capsys):
    """A folder with an index and a different model.safetensors beside it: both engines read the index's shard
    (their traces agree), and the ignored file is named."""
    pytest.importorskip("torch")
    c = ckpt(_index(_all_to("shard.safetensors")))(tmp_path, base)
    assert main(["export", "qwen3-0.6b", *SMALL, "--seed", "9", "--out", str(tmp_path / "other")]) == 0
    (c / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    assert main(["info", str(c)]) == 0
    assert "ignoring model.safetensors" in capsys.readouterr().out
    for backend in ("numpy", "torch"):
        assert main(["trace", str(c), "--tokens", "1,2,3", "--backend", backend,
                     "--out", str(tmp_path / f"{backend}.npz")]) == 0
        assert "ignoring model.safetensors" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "numpy.npz"), str(tmp_path / "torch.npz")]) == 0
    assert main(["trace", str(tmp_path / "other"), "--tokens", "1,2,3", "--out", str(tmp_path / "other.npz")]) == 0
    assert main(["compare", str(tmp_path / "numpy.npz"), str(tmp_path / "other.npz")]) == 1


def test_sigterm_removes_the_temporary_file(tmp_path):
    """A trace interrupted by SIGTERM while it runs or writes leaves no temporary file and the old output intact."""
    import signal
    import subprocess
    import sys
    import time

    old = tmp_path / "old.npz"
    old.write_bytes(OLD)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "tracer.cli", "trace", "qwen3-0.6b", "--set", "num_hidden_layers=2",
                             "--tokens", ",".join(["5"] * 64), "--max-new-tokens", "4", "--out", str(old)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err
    if proc.returncode != 0:  # interrupted (else it finished first on a fast machine and wrote the trace);
        # on a loaded machine the signal may even arrive while Python still imports, before the handler exists,
        # or after the finished trace was renamed into place: the output is the old file or the whole new trace
        assert proc.returncode in (130, -signal.SIGTERM)
        if old.read_bytes() != OLD:
            from tracer.traces.tracefile import load_trace

            assert load_trace(old)["logits"].shape == (64, 151936)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
