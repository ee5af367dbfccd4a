"""From a model name and a prompt to a saved trace: what the CLI, the app and the notebooks call."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tracer import Message, TracerError
from tracer.engine.interventions import Editor, Interventions
from tracer.engine.longctx import context_limit
from tracer.engine.model import Sampling, generate
from tracer.engine.recorder import Recorder
from tracer.safety.limits import check_suppress
from tracer.sources import looks_like_source
from tracer.sources.config import Qwen3Config
from tracer.sources.presets import PRESETS, get_preset
from tracer.sources.weights import ArrayWeights, RandomWeights
from tracer.text.chat import check_messages, checkpoint_template, render_chat, render_jinja
from tracer.text.tokenizer import VOCAB_SIZE as QWEN_VOCAB
from tracer.text.tokenizer import HFTokenizer, QwenTokenizer, Tokenizer, ToyTokenizer
from tracer.text.tokenizer import token_bytes as tokenizer_bytes
from tracer.traces.tracefile import Trace, record_meta

DTYPES = {"float32": np.float32, "float64": np.float64}
BACKENDS = ("numpy", "torch")


@dataclass
class Model:
    """A config with its weights, where they came from, and how to turn text into ids."""

    name: str
    cfg: Qwen3Config
    weights: Mapping[str, np.ndarray]
    source: str
    seed: int | None
    toy_vocab: tuple[str, ...] | None = None
    suppress_tokens: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()
    directory: Path | None = None
    vision: Any = None  # tracer.vision.config.VisionConfig of a Qwen3-VL model, else None
    template: str | None = None
    """A chat template carried by the source itself (a GGUF file's ``tokenizer.chat_template``)."""
    tokenizer_factory: Callable[[], Tokenizer | None] | None = field(default=None, repr=False)
    """Builds the source's own tokenizer (GGUF metadata); None from it means the source has none."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """Defaults the source suggests (an Ollama model's params and system prompt); flags override them."""
    extras: dict[str, Any] = field(default_factory=dict)
    """What ``tracer info`` shows about the source (GGUF metadata, Ollama license and template)."""
    _tokenizer: Tokenizer | None = field(default=None, repr=False)

    @property
    def tokenizer(self) -> Tokenizer:
        """The toy vocabulary, the checkpoint's tokenizer.json, or Qwen3's BPE (made on first use)."""
        if self._tokenizer is None and self.tokenizer_factory is not None:
            self._tokenizer = self.tokenizer_factory()
        if self._tokenizer is None:
            if self.toy_vocab:
                self._tokenizer = ToyTokenizer(self.toy_vocab)
            elif self.directory is not None and (self.directory / "tokenizer.json").is_file():
                self._tokenizer = HFTokenizer(self.directory / "tokenizer.json")
            elif self.cfg.vocab_size >= QWEN_VOCAB:
                self._tokenizer = QwenTokenizer()
            else:
                raise TracerError.of("errors.no_tokenizer", model=self.name, vocab=self.cfg.vocab_size, qwen=QWEN_VOCAB)
        return self._tokenizer

    @property
    def chat_template(self) -> str | None:
        """The checkpoint's own template, or None for Qwen3's (rendered by ``render_chat``)."""
        if self.template is not None:
            return self.template
        return checkpoint_template(self.directory) if self.directory is not None else None


def load_model(name: str, overrides: list[str] | None = None, seed: int = 0, dtype: str = "float32",
               stream: bool = False) -> Model:
    """A preset by name, or weights on disk (a checkpoint directory, a ``.gguf`` file, ``hf:ORG/NAME[@REV]``,
    ``ollama:NAME[:TAG]``: see ``tracer.sources``), with ``--set`` overrides, in float32 or float64.

    ``stream``: keep no converted weight in memory (each layer is read from the memory-mapped file again).
    """
    if dtype not in DTYPES:
        raise TracerError.of("errors.must_be_one_of", name="--dtype", choices=", ".join(DTYPES), value=dtype)
    if seed < 0:
        raise TracerError.of("errors.non_negative_whole", name="--seed", value=seed)
    from tracer.vision.models import is_vision_model, load_vision_model

    if is_vision_model(name):
        return load_vision_model(name, overrides or [], seed, DTYPES[dtype])
    if name not in PRESETS and looks_like_source(name):
        from tracer.sources.load import open_source

        return open_source(name, overrides or [], DTYPES[dtype], stream)
    preset = get_preset(name)
    cfg = preset.config.with_overrides(overrides or [])
    if preset.weights is None:
        source = str(Message("sources.source_random", seed=seed))
        return Model(name, cfg, RandomWeights(cfg, seed, DTYPES[dtype]), source, seed, None, preset.suppress_tokens,
                     preset.notes)
    try:
        weights = ArrayWeights(cfg, preset.weights(), DTYPES[dtype])
    except (KeyError, ValueError) as exc:
        changed = ", ".join(o.partition("=")[0] for o in overrides or [])
        raise TracerError.of("errors.seed004_shapes", model=name, changed=changed, detail=exc) from None
    return Model(name, cfg, weights, str(Message("sources.source_seed004")), None, preset.vocab,
                 preset.suppress_tokens, preset.notes)


def parse_token_list(text: str, model: Model | None = None) -> list[int]:
    """``"0,1,2,3"`` -> [0, 1, 2, 3]; with a model, special tokens may be named (``<|im_end|>``)."""
    ids = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.lstrip("-").isascii() and part.lstrip("-").isdigit():
            ids.append(int(part))
        elif model is not None and part.startswith("<") and isinstance(model.tokenizer, QwenTokenizer):
            ids.append(model.tokenizer.special_id(part))
        else:
            raise TracerError.of("errors.token_list_syntax", text=text)
    if not ids:
        raise TracerError.of("errors.token_list_empty")
    return ids


def chat_prompt(model: Model, prompt: str, system: str | None = None, enable_thinking: bool = True) -> str:
    """Wrap a prompt as one user turn (after an optional system turn) through the model's chat template."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return render_messages(model, messages, None, True, enable_thinking)


def render_messages(model: Model | None, messages: Any, tools: Any, add_generation_prompt: bool,
                    enable_thinking: bool) -> str:
    check_messages(messages, tools)
    template = model.chat_template if model is not None else None
    if template is not None:
        return render_jinja(template, messages, tools, add_generation_prompt, enable_thinking)
    return render_chat(messages, tools, add_generation_prompt, enable_thinking)


def encode_prompt(model: Model, prompt: str) -> list[int]:
    if not prompt.strip():
        raise TracerError.of("errors.prompt_empty")
    return model.tokenizer.encode(prompt)


def check_tokens(cfg: Qwen3Config, ids: list[int], max_new_tokens: int) -> None:
    """Reject ids outside the vocabulary and sequences longer than the model's context."""
    if not ids:
        raise TracerError.of("errors.no_input_tokens")
    bad = [t for t in ids if not 0 <= t < cfg.vocab_size]
    if bad:
        raise TracerError.of("errors.token_outside", id=bad[0], last=cfg.vocab_size - 1)
    total = len(ids) + max_new_tokens - 1
    if total > context_limit(cfg):
        raise TracerError.of("errors.too_long", tokens=len(ids), steps=max_new_tokens - 1, limit=context_limit(cfg))


def token_labels(model: Model, ids: list[int]) -> list[str]:
    """Readable labels for token ids (their text), or the ids themselves when there is no tokenizer."""
    try:
        return model.tokenizer.token_strings(ids)
    except TracerError:
        return [str(t) for t in ids]


def token_bytes(model: Model, ids: list[int]) -> list[str]:
    """Each token's bytes in hex (exact for byte-level BPE, where a token may be part of a character)."""
    try:
        return tokenizer_bytes(model.tokenizer, ids)
    except TracerError:
        return ["" for _ in ids]


def stop_tokens(model: Model) -> tuple[int, ...]:
    """The tokenizer's stop tokens, plus the source's own stop strings (Ollama params) that are one token."""
    try:
        ids = list(model.tokenizer.stop_ids())
        for text in model.defaults.get("stop", ()):
            encoded = model.tokenizer.encode(text)
            if len(encoded) == 1:
                ids.append(encoded[0])
        return tuple(t for t in dict.fromkeys(ids) if t < model.cfg.vocab_size)
    except TracerError:
        return ()


def _explained_labels(model: Model, rec: Recorder) -> dict[str, str]:
    """Text of every token id the logit lens and the attribution name, so viewers need no tokenizer."""
    found = [v for n, v in rec.records.items() if n.endswith((".top_ids", "attrib.target_ids"))]
    ids = np.unique(np.concatenate([np.ravel(v) for v in found])).tolist() if found else []
    try:
        labels = model.tokenizer.token_strings(ids)
    except TracerError:  # no tokenizer, or an id it does not know (Qwen3 pads its vocabulary): one by one
        labels = [token_labels(model, [i])[0] for i in ids]
    return dict(zip(map(str, ids), labels))


def run_trace(model: Model, ids: list[int], *, sampling: Sampling | None = None, max_new_tokens: int = 1,
              round_decimals: int | None = None, capture: list[str] | None = None, prompt: str | None = None,
              backend: str = "numpy", torch_dtype: str = "float32", device: str | None = None,
              listener: Callable[[str], None] | None = None, max_memory: dict[Any, Any] | None = None,
              images: list[Any] | None = None, interventions: Interventions | None = None) -> Trace:
    """Trace a prompt's forward pass and its generated tokens, in memory (``save_trace`` writes it).

    ``backend="torch"`` runs the real transformers model on the same weights (``torch_dtype``, ``device``:
    cpu, cuda, cuda:N, or auto — every GPU, then CPU memory, then disk, capped by ``max_memory``).
    ``interventions``: heads to zero, experts to drop, records to patch (listed in the meta).
    ``images`` (files, bytes or arrays) go to a Qwen3-VL model, one per ``<|image_pad|>`` of ``ids``.
    """
    if backend not in BACKENDS:
        raise TracerError.of("errors.must_be_one_of", name="--backend", choices=", ".join(BACKENDS), value=backend)
    if max_new_tokens < 1:
        raise TracerError.of("errors.at_least_one", name="--max-new-tokens", value=max_new_tokens)
    if round_decimals is not None and not 0 <= round_decimals <= 12:
        raise TracerError.of("errors.round_range", value=round_decimals)
    check_tokens(model.cfg, ids, max_new_tokens)
    sampling = sampling or Sampling(suppress=model.suppress_tokens)
    bad = [t for t in sampling.suppress if not 0 <= t < model.cfg.vocab_size]
    if bad:
        raise TracerError.of("errors.suppress_outside", id=bad[0], last=model.cfg.vocab_size - 1)
    check_suppress(model.cfg.vocab_size, sampling.suppress)
    if interventions is not None:
        interventions.check(model.cfg)
        if interventions and model.vision is not None:
            raise TracerError.of("interp.vision", model=model.name)
    editor = Editor(interventions) if interventions else None
    rec = Recorder(capture=capture, round_decimals=round_decimals, listener=listener, edit=editor)
    stops = stop_tokens(model)
    versions: dict[str, str] = {}
    vision_meta = None
    if images and model.vision is None:
        raise TracerError.of("vision.err_text_only", model=model.name)
    if model.vision is not None:
        from tracer.vision.run import generate_vision

        placed = None
        gen, dtype, versions, vision_meta = generate_vision(
            model, ids, list(images or []), rec, sampling, max_new_tokens, stops, backend, torch_dtype, device,
            round_decimals)
    elif backend == "torch":
        from tracer.backends import torch_backend as tb

        if round_decimals is not None:
            raise TracerError.of("errors.round_torch")
        if torch_dtype not in tb.TORCH_DTYPES:
            raise TracerError.of("errors.torch_dtype", dtypes=", ".join(tb.TORCH_DTYPES), dtype=torch_dtype)
        reason = tb.unsupported(model.cfg)
        if reason:
            raise TracerError.of("errors.torch_cannot", model=model.name, reason=reason)
        device = tb.check_device(device)
        # one file-selection rule for both backends: where the index wins over model.safetensors, torch gets the
        # tensors this engine selected rather than from_pretrained's own choice
        directory = model.directory if not getattr(model.weights, "warnings", None) else None
        # disk offload (``--device auto``) needs a folder; it is removed when the run ends
        offload = tempfile.TemporaryDirectory(prefix="qwen3-tracer-offload-") if device == "auto" else None
        try:
            hf_model = tb.build_model(model.cfg, model.weights, directory, torch_dtype, device,
                                      offload_dir=offload.name if offload else None, max_memory=max_memory)
            gen = tb.generate_torch(model.cfg, hf_model, ids, rec, sampling, max_new_tokens, stops, device,
                                    interventions)
            placed = tb.placement(hf_model) if device == "auto" else None
        finally:
            if offload is not None:
                offload.cleanup()
        dtype = torch_dtype
        versions = tb.library_versions()
    else:
        placed = None
        gen = generate(model.cfg, model.weights, ids, rec, sampling, max_new_tokens, stops, interventions)
        dtype = str(model.weights[next(iter(model.weights))].dtype)
    if editor is not None:
        editor.check_applied()
    meta = {
        "model": model.name, "source": model.source, "seed": model.seed, "backend": backend, "device": device, "placement": placed,
        "dtype": dtype, "round": round_decimals, "backend_versions": versions,
        "config": model.cfg.as_dict(), "model_type": model.cfg.model_type, "prompt": prompt,
        "token_ids": gen.prompt, "token_labels": token_labels(model, gen.prompt),
        "token_bytes": token_bytes(model, gen.prompt),
        "generated_ids": gen.new_tokens, "generated_labels": token_labels(model, gen.new_tokens),
        "stop_reason": gen.stop_reason, "stop_tokens": list(stops),
        "sampling": {"temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
                     "suppress": list(sampling.suppress), "seed": sampling.seed},
        "vocab": list(model.toy_vocab) if model.toy_vocab else None,
        "capture": capture, "notes": list(model.notes), "records": record_meta(rec),
        "interventions": interventions.describe() if interventions else None,
        "vocab_labels": _explained_labels(model, rec),
    }
    if vision_meta is not None:
        meta["vision"] = vision_meta
    return Trace.in_memory(rec.records, meta)
