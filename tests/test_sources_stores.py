"""The real Qwen3 vocabulary in GGUF metadata and tokenizer.json, the Hugging Face hub cache and Ollama's
store, each built here from an exported checkpoint and read back (the hub cache by huggingface_hub itself)."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from tracer import TracerError  # noqa: E402
from tracer.cli import main  # noqa: E402
from tracer.commands.run import chat_prompt, load_model, render_messages, run_trace, stop_tokens  # noqa: E402
from tracer.sources.quantize import write_gguf  # noqa: E402
from tracer.text.chat import official_template, render_chat  # noqa: E402
from tracer.text.tokenizer import FIRST_SPECIAL_ID, QwenTokenizer, load_ranks, tokenizer_json  # noqa: E402
from tracer.traces.tracefile import load_trace  # noqa: E402

TINY = ["num_hidden_layers=2", "hidden_size=64", "head_dim=16", "intermediate_size=96"]  # Qwen3's real vocabulary
TEXTS = [
    "Hello, world! It's 2026.", "明天交報告", "Qwen3 的 tokenizer 會把「你好」切成幾個 token?", "naïve café — déjà vu",
    "e\u0301 (a combining accent: NFC makes it é)", "🙂🚀 emoji and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "def f(x):\n    return x ** 2\n\n\n",
    "<|im_start|>user\nhi<|im_end|>\n<think>\n\n</think>", "   leading spaces\tand\ttabs\r\n", "١٢٣ 123 ١٢٣٤",
    "Ελληνικά, русский, עברית, हिन्दी, 한국어, 日本語のテキスト", "a" * 300, "x" + "  " * 40 + "y",
]
SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def texts():
    extra = [p.read_text(encoding="utf-8")[:4000] for p in sorted(SEEDS.glob("*.md"))[:3]] if SEEDS.is_dir() else []
    return TEXTS + extra


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A checkpoint with Qwen3's real vocabulary, its F32 GGUF, and the model the tests compare with."""
    root = tmp_path_factory.mktemp("stores")
    folder = root / "ckpt"
    sets = [x for s in TINY for x in ("--set", s)]
    assert main(["export", "qwen3-0.6b", *sets, "--seed", "3", "--out", str(folder)]) == 0
    path = root / "tiny.gguf"
    assert main(["export", str(folder), "--format", "gguf", "--out", str(path)]) == 0
    # the same weights without tokenizer metadata: opens in a moment (reading 300,000 metadata strings takes
    # gguf's reader seconds), and falls back to Qwen3's own tokenizer
    bare = root / "bare.gguf"
    reference = load_model(str(folder))
    write_gguf(reference.cfg, reference.weights, bare, "F32", tokenizer=False)
    return {"root": root, "ckpt": folder, "gguf": path, "bare": bare, "model": load_model(str(path)),
            "reference": reference}


def test_real_merge_list_is_one_per_multibyte_token_and_tokenizers_agrees():
    """tokenizer.json carries Qwen's 151,387 merges; HF tokenizers, given them, tokenizes as tiktoken does."""
    from tokenizers import Tokenizer

    data = tokenizer_json()
    merges = data["model"]["merges"]
    assert len(merges) == 151_387 == sum(1 for t in load_ranks() if len(t) > 1)
    vocab = data["model"]["vocab"]
    ranks = [vocab[a + b] for a, b in merges]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)  # merge i builds token ranks[i], in order
    assert all(vocab[a] < vocab[a + b] and vocab[b] < vocab[a + b] for a, b in merges)
    hf = Tokenizer.from_str(json.dumps(data))
    qwen = QwenTokenizer()
    for text in texts():
        assert hf.encode(text, add_special_tokens=False).ids == qwen.encode(text), text


def test_gguf_carries_the_real_vocabulary_and_its_bpe_gives_the_same_ids(store):
    reader = store["model"].weights.file.reader
    tokens = reader.get_field("tokenizer.ggml.tokens").contents()
    types = reader.get_field("tokenizer.ggml.token_type").contents()
    assert len(tokens) == 151_936 and len(reader.get_field("tokenizer.ggml.merges").data) == 151_387
    assert [types.count(k) for k in (1, 3, 4, 5)] == [151_643, 20, 6, 267]
    assert reader.get_field("tokenizer.ggml.pre").contents() == "qwen2"
    assert tokens[FIRST_SPECIAL_ID + 2] == "<|im_end|>" and tokens[-1] == "[PAD151935]"
    tokenizer = store["model"].tokenizer
    assert type(tokenizer).__name__ == "GGUFTokenizer"
    qwen = QwenTokenizer()
    for text in texts():
        ids = tokenizer.encode(text)
        assert ids == qwen.encode(text), text
        assert tokenizer.decode(ids) == qwen.decode(ids)
    assert tokenizer.stop_ids() == (151645, 151643)  # eos from the metadata (<|im_end|>), then <|endoftext|>


def test_gguf_chat_template_and_text_tools(store):
    model = store["model"]
    assert model.chat_template == official_template()
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好"}]
    text = render_messages(model, conversation, None, True, False)
    assert text == render_chat(conversation, enable_thinking=False)
    assert model.tokenizer.encode(text) == QwenTokenizer().encode(text)


def test_f32_gguf_with_real_vocab_traces_like_the_checkpoint(store):
    gguf_model, reference = store["model"], store["reference"]
    ids = gguf_model.tokenizer.encode(chat_prompt(gguf_model, "明天交報告"))
    assert ids == reference.tokenizer.encode(chat_prompt(reference, "明天交報告"))
    a, b = run_trace(reference, ids)["logits"], run_trace(gguf_model, ids)["logits"]
    assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(a)


# --- Hugging Face hub cache --------------------------------------------------------------------------------

def hub_cache_entry(cache: Path, repo: str, folder: Path, commit: str = "ab" * 20) -> Path:
    """A hub cache entry as huggingface_hub writes one: blobs by sha256, snapshot symlinks, refs/main."""
    entry = cache / ("models--" + repo.replace("/", "--"))
    snapshot = entry / "snapshots" / commit
    (entry / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in sorted(folder.iterdir()):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        (entry / "blobs" / digest).write_bytes(file.read_bytes())
        os.symlink(f"../../blobs/{digest}", snapshot / file.name)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(commit)  # no trailing newline, as the hub writes it
    return snapshot


def test_hf_cache_ids_resolve_offline(store, tmp_path, monkeypatch, capsys):
    from huggingface_hub import scan_cache_dir, snapshot_download

    cache = tmp_path / "hf" / "hub"
    snapshot = hub_cache_entry(cache, "Qwen/Tiny-Qwen3", store["ckpt"])
    gguf_folder = tmp_path / "ggufonly"
    gguf_folder.mkdir()
    (gguf_folder / "tiny-F32.gguf").write_bytes(store["bare"].read_bytes())
    hub_cache_entry(cache, "Qwen/Tiny-Qwen3-GGUF", gguf_folder, commit="cd" * 20)
    # huggingface_hub itself reads the tree back
    report = scan_cache_dir(cache)
    assert {r.repo_id for r in report.repos} == {"Qwen/Tiny-Qwen3", "Qwen/Tiny-Qwen3-GGUF"} and not report.warnings
    assert Path(snapshot_download("Qwen/Tiny-Qwen3", cache_dir=cache, local_files_only=True)) == snapshot

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    model = load_model("hf:Qwen/Tiny-Qwen3")
    assert model.directory == snapshot and model.name == "hf:Qwen/Tiny-Qwen3"
    np.testing.assert_array_equal(run_trace(model, [1, 2, 3])["logits"],
                                  run_trace(store["reference"], [1, 2, 3])["logits"])
    assert load_model("hf:Qwen/Tiny-Qwen3@" + "ab" * 20).directory == snapshot
    assert load_model("hf:Qwen/Tiny-Qwen3-GGUF").extras["gguf"]["path"].endswith("tiny-F32.gguf")

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    code, _, err = run(capsys, "info", "hf:Qwen/Tiny-Qwen3")
    assert code == 2 and err.count("\n") == 1
    assert str(tmp_path / "elsewhere" / "models--Qwen--Tiny-Qwen3") in err and "hf download Qwen/Tiny-Qwen3" in err
    with pytest.raises(TracerError, match="not a Hugging Face repo id"):
        load_model("hf:not-a-repo")


# --- Ollama's store ---------------------------------------------------------------------------------------

GO_TEMPLATE = "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
PARAMS = {"repeat_penalty": 1, "stop": ["<|im_start|>", "<|im_end|>"], "temperature": 0.6, "top_k": 20, "top_p": 0.95}


def ollama_store(root: Path, gguf_path: Path, name=("registry.ollama.ai", "library", "tiny", "latest")) -> Path:
    """An Ollama store as ``ollama create`` writes one: blobs named by sha256, a manifest listing layers."""
    (root / "blobs").mkdir(parents=True, exist_ok=True)

    def blob(data: bytes, media: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (root / "blobs" / f"sha256-{digest}").write_bytes(data)
        return {"mediaType": f"application/vnd.ollama.image.{media}", "digest": f"sha256:{digest}", "size": len(data)}

    params = json.dumps(PARAMS, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e") + "\n"
    layers = [blob(gguf_path.read_bytes(), "model"), blob(GO_TEMPLATE.encode(), "template"),
              blob("You are a careful tutor.".encode(), "system"), blob(params.encode(), "params"),
              blob("Apache License 2.0 (test copy)".encode(), "license")]
    config = json.dumps({"model_format": "gguf", "model_family": "qwen3", "file_type": "F32"}).encode()
    cfg = blob(config, "config")
    cfg["mediaType"] = "application/vnd.docker.container.image.v1+json"
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": cfg, "layers": layers}
    path = root / "manifests" / Path(*name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, separators=(",", ":")) + "\n")
    return path


def test_ollama_models_load_with_their_defaults(store, tmp_path, monkeypatch, capsys):
    root = tmp_path / "ollama"
    ollama_store(root, store["bare"])
    ollama_store(root, store["bare"], ("registry.ollama.ai", "library", "tiny", "0.1"))
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    model = load_model("ollama:tiny")
    assert model.defaults == {"temperature": 0.6, "top_k": 20, "top_p": 0.95, "stop": ("<|im_start|>", "<|im_end|>"),
                              "system": "You are a careful tutor."}
    assert stop_tokens(model) == (151645, 151643, 151644)  # <|im_start|> added by the params' stop list
    code, out, _ = run(capsys, "info", "ollama:tiny:0.1")
    assert code == 0 and "Apache License 2.0 (test copy)" in out and GO_TEMPLATE in out and "top_k" in out
    # params are the defaults; flags override them; the system layer is --chat's default system prompt
    out_a, out_b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run(capsys, "trace", "ollama:tiny", "--prompt", "hi", "--chat", "--out", out_a)[0] == 0
    a = load_trace(out_a)
    assert a.meta["sampling"] | {"suppress": [], "seed": 0} == {"temperature": 0.6, "top_k": 20, "top_p": 0.95,
                                                                "suppress": [], "seed": 0}
    assert "<|im_start|>system\nYou are a careful tutor.<|im_end|>" in a.meta["prompt"]
    assert run(capsys, "trace", "ollama:tiny", "--prompt", "hi", "--chat", "--temperature", "0", "--system", "S",
               "--out", out_b)[0] == 0
    b = load_trace(out_b)
    assert b.meta["sampling"]["temperature"] == 0.0 and "<|im_start|>system\nS<|im_end|>" in b.meta["prompt"]
    np.testing.assert_array_equal(a["embed.out"][-3:], load_trace(out_b)["embed.out"][-3:])
    # tracer chat --model: the system layer is the conversation's system turn unless it has its own
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "hi"}]))
    code, out, _ = run(capsys, "chat", "--messages", messages, "--model", "ollama:tiny")
    assert code == 0 and out.startswith("<|im_start|>system\nYou are a careful tutor.<|im_end|>\n")
    messages.write_text(json.dumps([{"role": "system", "content": "Own."}, {"role": "user", "content": "hi"}]))
    code, out, _ = run(capsys, "chat", "--messages", messages, "--model", "ollama:tiny")
    assert code == 0 and out.startswith("<|im_start|>system\nOwn.<|im_end|>\n") and "careful" not in out


def test_ollama_store_damage_is_refused(store, tmp_path, monkeypatch, capsys):
    root = tmp_path / "ollama"
    manifest = ollama_store(root, store["bare"])
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    code, _, err = run(capsys, "info", "ollama:qwen3:0.6b")
    assert code == 2 and "ollama pull qwen3:0.6b" in err and "registry.ollama.ai/library/qwen3/0.6b" in err
    layers = json.loads(manifest.read_text())["layers"]
    system_blob = root / "blobs" / layers[2]["digest"].replace(":", "-")
    system_blob.write_text("You are a careless tutor.")
    code, _, err = run(capsys, "info", "ollama:tiny")
    assert code == 2 and err.count("\n") == 1 and "does not match its digest" in err
    system_blob.unlink()
    code, _, err = run(capsys, "info", "ollama:tiny")
    assert code == 2 and err.count("\n") == 1 and "is missing" in err and layers[2]["digest"] in err
