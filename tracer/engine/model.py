"""The Qwen3 forward pass, in the order of seed 004 §3 (dense) and §4 (MoE), and the sampling step.

This is the only place that names trace points: every intermediate tensor passes through ``rec`` once,
with the records or checkpoint weights it was computed from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from tracer import TracerError
from tracer.engine import ops
from tracer.engine.interventions import Interventions
from tracer.engine.longctx import layer_window, rope_frequencies
from tracer.engine.recorder import Recorder
from tracer.sources.config import Qwen3Config
from tracer.sources.weights import lm_head_name
from tracer.vision import ops as vops
from tracer.vision.mrope import mrope_tables

if TYPE_CHECKING:
    from tracer.vision.placement import Visual

Params = Callable[[str], np.ndarray]  # checkpoint tensor by Hugging Face name, registered with the recorder


@dataclass
class LayerCache:
    """One layer's post-RoPE keys and values, [Hkv, S, Dh] each, in two buffers with room to grow.

    A step writes its keys and values after the held ones, in place; a full buffer is replaced by one twice
    the size. So a decode step copies only its own row, not the whole cache (which made long generations
    quadratic). A position once written is never written again, so a view of held positions never changes:
    the recorder keeps the ``k_cache`` / ``v_cache`` records as such views (``appended``).
    ``names``: the records the held keys and values were last recorded as (their inputs' names).
    """

    buffers: tuple[np.ndarray, np.ndarray] | None = None
    start: int = 0  # the held positions are buffers[:, start:end]
    end: int = 0
    names: tuple[str, str] | None = None

    def append(self, k: np.ndarray, v: np.ndarray, window: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Hold keys and values [Hkv, T, Dh] after the cached ones and return everything a query of this step
        sees (views). A sliding layer keeps only the last W − 1 cached positions (transformers'
        DynamicSlidingWindowLayer): with the next token, that is W keys.

        >>> cache, k = LayerCache(), np.array([[[0.], [1.]]])  # one KV head, two positions, Dh = 1
        >>> cache.append(k, k, window=None)[0].ravel()
        array([0., 1.])
        >>> cache.append(k + 2, k + 2, window=3)[0].ravel()  # the 2 = W − 1 cached keys, then 2 new ones
        array([0., 1., 2., 3.])
        >>> cache.append(k[:, :1] + 7, k[:, :1] + 7, window=3)[0].ravel()  # 0 and 1 are no longer seen
        array([2., 3., 7.])
        """
        t = k.shape[1]
        start = self.start if window is None or self.end == 0 else max(self.start, self.end - window + 1)
        if self.buffers is None or self.end + t > self.buffers[0].shape[1]:
            held = self.end - start
            grown = tuple(np.empty((k.shape[0], max(2 * (held + t), 16), k.shape[2]), dtype=k.dtype) for _ in "kv")
            if self.buffers is not None:
                for new, old in zip(grown, self.buffers):
                    new[:, :held] = old[:, start:self.end]
            self.buffers, start, self.end = (grown[0], grown[1]), 0, held
        self.buffers[0][:, self.end:self.end + t] = k
        self.buffers[1][:, self.end:self.end + t] = v
        self.start, self.end = start, self.end + t
        return self.buffers[0][:, start:self.end], self.buffers[1][:, start:self.end]

    def replace(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Hold these keys and values [Hkv, S, Dh] instead (an intervention patched the cache), in new buffers:
        the old ones keep the numbers the earlier records show."""
        self.buffers, self.start, self.end = None, 0, 0
        self.append(keys, values, None)


@dataclass
class KVCache:
    """Every layer's cache, and how many positions it holds (the next token's position)."""

    layers: list[LayerCache]
    length: int = 0

    @classmethod
    def empty(cls, num_layers: int) -> KVCache:
        return cls([LayerCache() for _ in range(num_layers)])


Rope = tuple[np.ndarray, np.ndarray]  # cos, sin tables [T, Dh] of the positions being computed
LENS_TOP = 20  # tokens kept per position by the logit lens
LENS_BATCH_BYTES = 256 << 20  # the lens reads the LM head once per this many bytes of lens logits


@dataclass
class Taps:
    """One block's writes into the residual stream, kept for direct logit attribution."""

    context: np.ndarray | None = None  # [H, T, Dh], before o_proj
    mlp: np.ndarray | None = None  # [T, D], the MLP / MoE output
    experts: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)  # (e, rows, gate · output)


def mask_value(cfg: Qwen3Config, dtype: np.dtype) -> float:
    """The additive stand-in for −∞: the config's teaching value, else the most negative finite float."""
    return cfg.mask_value if cfg.mask_value is not None else float(np.finfo(dtype).min)


def rope_inv_freq(cfg: Qwen3Config) -> np.ndarray:
    """Radians per position of each dimension pair: θ^(−2j/Dh), or the config's explicit degrees."""
    if cfg.rope_degrees_per_position is not None:
        return np.deg2rad(np.array(cfg.rope_degrees_per_position, dtype=np.float64))
    return ops.rope_inv_freq(cfg.head_dim, cfg.rope_theta)


def forward(cfg: Qwen3Config, weights: Mapping[str, np.ndarray], tokens: np.ndarray, rec: Recorder,
            cache: KVCache | None = None, visual: Visual | None = None,
            interventions: Interventions | None = None) -> np.ndarray:
    """Token ids [T] -> logits [T, V], recording every step. With a cache, the tokens continue it.

    ``visual`` (Qwen3-VL, seed 002): image tokens spliced into the embeddings, M-RoPE position ids, and
    DeepStack features added after the first layers at the image rows.

    The residual stream is the running sum below: each block reads it and returns what it adds.
    ``interventions``: experts the routers may not choose (heads and patches are applied by the recorder).
    """
    w = rec.params(weights)
    table = w("model.embed_tokens.weight")
    dtype = table.dtype
    start = cache.length if cache is not None else 0

    # §3-3 / §3-4: token ids, one-hot rows, embedding lookup.
    ids = rec("tokens", np.asarray(tokens, dtype=np.int64))
    if cfg.vocab_size <= 4096:
        rec("embed.onehot", ops.one_hot(ids, cfg.vocab_size, dtype), ids)
    stream = embedded = rec("embed.out", ops.embedding(ids, table), ids, table)
    if visual is not None and visual.embeds is not None:  # seed 002: image tokens replace the <|image_pad|> rows
        stream = rec("embed.spliced", vops.splice_rows(stream, visual.mask, visual.embeds), stream, visual.embeds)
    del table  # the LM head asks for its matrix again: a streamed checkpoint holds no V×D table meanwhile

    # §3-5-5: rotary tables for these positions (shared by every layer). RoPE scaling sets the frequencies ω
    # (dynamic NTK from the current length) and a factor a on cos and sin, so every score is multiplied by a².
    inv_freq, factor = rope_frequencies(cfg, start + len(ids))
    omega = rec("rope.inv_freq", inv_freq.astype(dtype))
    scale = rec("rope.attention_factor", np.array(factor, dtype=dtype))
    if visual is None:
        cos_table, sin_table = ops.rope_tables(np.arange(start, start + len(ids)), inv_freq, np.float64)
        rope = (rec("rope.cos", (cos_table * factor).astype(dtype), ids, omega, scale),
                rec("rope.sin", (sin_table * factor).astype(dtype), ids, omega, scale))
    else:  # seed 002 M-RoPE: (t, h, w) ids per token, frequencies interleaved over the three axes
        position_ids = rec("rope.position_ids", visual.positions(start, len(ids)), ids)
        cos_table, sin_table = mrope_tables(position_ids, inv_freq, visual.mrope_section, np.float64)
        rope = (rec("rope.cos", (cos_table * factor).astype(dtype), position_ids, omega, scale, op="mrope_cos"),
                rec("rope.sin", (sin_table * factor).astype(dtype), position_ids, omega, scale, op="mrope_sin"))

    # lens and attribution explain text models (Qwen3-VL's DeepStack writes into the stream outside any block)
    attributing = visual is None and wants_attribution(cfg, rec, interventions)
    taps: list[Taps] = []
    lens_streams: list[tuple[int, np.ndarray]] = []  # each block's output, for the logit lens
    for i in range(cfg.num_hidden_layers):
        n = f"layers.{i}"
        layer_cache = cache.layers[i] if cache is not None else None
        tap = Taps() if attributing else None
        attn_out = attention(cfg, w, rec, i, stream, rope, layer_cache, tap)
        stream_mid = rec(f"{n}.resid_mid", stream + attn_out, stream, attn_out)
        dropped = interventions.experts_dropped(i) if interventions is not None else []
        mlp_out = (moe(cfg, w, rec, i, stream_mid, dropped, tap) if cfg.is_sparse_layer(i)
                   else mlp(cfg, w, rec, i, stream_mid))
        stream = rec(f"{n}.resid_post", stream_mid + mlp_out, stream_mid, mlp_out)
        if visual is not None and i < len(visual.deepstack):  # seed 002 DeepStack: added at the image rows only
            feature = visual.deepstack[i]
            stream = rec(f"{n}.deepstack", vops.add_rows(stream, visual.mask, feature), stream, feature)
        if tap is not None:
            tap.mlp = mlp_out
            taps.append(tap)
        if visual is None and i < cfg.num_hidden_layers - 1 and wants_lens(rec, i):
            lens_streams.append((i, stream))
    if cache is not None:
        cache.length = start + len(ids)

    # §3-6: final norm (absent in the toys) and LM head on every position.
    last_stream = stream
    if cfg.final_norm:
        norm_w = w("model.norm.weight")
        stream = rec("final_norm", ops.rms_norm(stream, norm_w, cfg.rms_norm_eps), stream, norm_w)
    head = w(lm_head_name(cfg))
    logits = rec("logits", ops.linear(stream, head), stream, head)

    # Why this token: what each block's stream would predict; each block's direct share of the top logit.
    if visual is None:
        lens(cfg, w, rec, lens_streams, logits)
    if attributing:
        attribute(cfg, w, rec, embedded, last_stream, logits, taps)
    return logits


def keeps(rec: Recorder, *names: str) -> bool:
    """Whether the recorder keeps any of these records (so they are worth computing)."""
    return any(rec.wants(rec.prefix + name) for name in names)


def wants_lens(rec: Recorder, i: int) -> bool:
    """Whether any logit lens record of block i is kept (``lens.{i}.logits`` only when asked for by name)."""
    return rec.asks(f"lens.{i}.logits") or keeps(rec, f"lens.{i}.top_ids", f"lens.{i}.top_probs")


def lens(cfg: Qwen3Config, w: Params, rec: Recorder, streams: list[tuple[int, np.ndarray]],
         logits: np.ndarray) -> None:
    """Logit lens: the residual stream after block i read through the final norm and the LM head as if it were
    the last block, and its 20 likeliest next tokens. The last block's lens is the model's own ``logits``.

    Computed after the last block for all blocks together: the LM head ([V, D], the largest matrix of the model)
    is then read once per group of blocks instead of once per block."""
    head = w(lm_head_name(cfg))
    norm_w = w("model.norm.weight") if cfg.final_norm else None
    rows = len(logits)
    per_group = max(1, LENS_BATCH_BYTES // max(1, rows * head.shape[0] * head.itemsize))
    for g in range(0, len(streams), per_group):
        group = streams[g:g + per_group]
        x = np.concatenate([stream for _, stream in group])
        normed = ops.rms_norm(x, norm_w, cfg.rms_norm_eps) if norm_w is not None else x
        together = ops.linear(normed, head)
        for k, (i, stream) in enumerate(group):
            source = (stream, head) if norm_w is None else (stream, norm_w, head)
            _lens_records(rec, i, together[k * rows:(k + 1) * rows], source)
    last = cfg.num_hidden_layers - 1
    if wants_lens(rec, last):
        _lens_records(rec, last, logits, (logits,))


def _lens_records(rec: Recorder, i: int, logits: np.ndarray, source: tuple[np.ndarray, ...]) -> None:
    n = f"lens.{i}"
    if rec.asks(f"{n}.logits"):
        logits = rec(f"{n}.logits", logits.copy(), *source)
        source = (logits,)
    top_ids, top_p = ops.top_probs(logits, LENS_TOP)
    rec(f"{n}.top_ids", top_ids, *source)
    rec(f"{n}.top_probs", top_p, *source)


def wants_attribution(cfg: Qwen3Config, rec: Recorder, interventions: Interventions | None) -> bool:
    """Direct logit attribution is computed when kept and the stream is still the sum of its writes."""
    names = ["attrib.target_ids", "attrib.scale", "attrib.embed"] + [
        f"attrib.{i}.{part}" for i in range(cfg.num_hidden_layers) for part in ("heads", "mlp", "experts")]
    return (interventions is None or interventions.attributable) and keeps(rec, *names)


def attribute(cfg: Qwen3Config, w: Params, rec: Recorder, embedded: np.ndarray, stream: np.ndarray,
              logits: np.ndarray, taps: list[Taps], derived: bool = False) -> None:
    """Direct logit attribution: what the embedding, every head and every MLP / expert wrote into the residual
    stream, read along the direction of each position's top token through the final norm with its RMS scale
    frozen (so the map is linear). The terms sum to that token's logit."""
    target = rec("attrib.target_ids", np.argmax(logits, axis=-1).astype(np.int64), logits, derived=derived)
    head = w(lm_head_name(cfg))
    direction = head[target]
    if cfg.final_norm:
        norm_w = w("model.norm.weight")
        scale = rec("attrib.scale", ops.frozen_rms_scale(stream, cfg.rms_norm_eps), stream, derived=derived)
        direction = direction * norm_w * scale[:, None]
    rec("attrib.embed", np.sum(embedded * direction, axis=-1), embedded, target, derived=derived)
    for i, tap in enumerate(taps):
        wo = w(f"model.layers.{i}.self_attn.o_proj.weight")
        assert tap.context is not None and tap.mlp is not None
        rec(f"attrib.{i}.heads", ops.head_attribution(tap.context, wo, direction), tap.context, wo, target,
            derived=derived)
        if not cfg.is_sparse_layer(i):
            rec(f"attrib.{i}.mlp", np.sum(tap.mlp * direction, axis=-1), tap.mlp, target, derived=derived)
            continue
        per_expert = np.zeros((cfg.num_experts, len(target)), dtype=tap.mlp.dtype)
        for e, rows, written in tap.experts:
            per_expert[e, rows] = np.sum(written * direction[rows], axis=-1)
        rec(f"attrib.{i}.experts", per_expert, tap.mlp, target, derived=derived)


def attention(cfg: Qwen3Config, w: Params, rec: Recorder, i: int, x: np.ndarray, rope: Rope,
              layer_cache: LayerCache | None, taps: Taps | None = None) -> np.ndarray:
    """Residual stream [T, D] -> what attention adds to it [T, D]: pre-norm, Q/K/V, QK-Norm, RoPE, scores,
    mask, softmax, context, o_proj. With a cache, keys and values of earlier positions are read from it."""
    p, n = f"model.layers.{i}", f"layers.{i}"
    eps = cfg.rms_norm_eps
    cos, sin = rope

    # §3-5-2 RMSNorm (pre-norm).
    norm_w = w(f"{p}.input_layernorm.weight")
    h = rec(f"{n}.attn_norm", ops.rms_norm(x, norm_w, eps), x, norm_w)

    # §3-5-3 projections, split into heads.
    wq, wk, wv = (w(f"{p}.self_attn.{m}.weight") for m in ("q_proj", "k_proj", "v_proj"))
    q = rec(f"{n}.attn.q_proj", ops.split_heads(ops.linear(h, wq), cfg.num_attention_heads), h, wq)
    k = rec(f"{n}.attn.k_proj", ops.split_heads(ops.linear(h, wk), cfg.num_key_value_heads), h, wk)
    v = rec(f"{n}.attn.v_proj", ops.split_heads(ops.linear(h, wv), cfg.num_key_value_heads), h, wv)

    # §3-5-4 QK-Norm (per head, over Dh; V is not normed).
    qk_norm, op = (ops.l2_norm, "l2_norm") if cfg.qk_norm == "l2" else (ops.rms_norm, None)
    qn_w, kn_w = w(f"{p}.self_attn.q_norm.weight"), w(f"{p}.self_attn.k_norm.weight")
    q_normed = rec(f"{n}.attn.q_norm", qk_norm(q, qn_w, eps), q, qn_w, op=op)
    k_normed = rec(f"{n}.attn.k_norm", qk_norm(k, kn_w, eps), k, kn_w, op=op)

    # §3-5-5 RoPE.
    q_rot = rec(f"{n}.attn.q_rope", ops.apply_rope(q_normed, cos, sin), q_normed, cos, sin)
    k_rot = rec(f"{n}.attn.k_rope", ops.apply_rope(k_normed, cos, sin), k_normed, cos, sin)

    # KV cache: a decode step attends to the cached positions plus its own (a sliding layer: the last W).
    window = layer_window(cfg, i)
    keys, values = k_rot, v
    if layer_cache is not None:
        past = layer_cache.names
        held_k, held_v = layer_cache.append(k_rot, v, window)
        if past is not None:
            keys = rec(f"{n}.attn.k_cache", held_k, past[0], k_rot, appended=True)
            values = rec(f"{n}.attn.v_cache", held_v, past[1], v, appended=True)
            if keys is not held_k or values is not held_v:  # patched: later steps continue the patched cache
                layer_cache.replace(keys, values)
            layer_cache.names = (f"{rec.prefix}{n}.attn.k_cache", f"{rec.prefix}{n}.attn.v_cache")
        else:
            layer_cache.names = (f"{rec.prefix}{n}.attn.k_rope", f"{rec.prefix}{n}.attn.v_proj")

    # §3-5-6 scores, causal mask, softmax.
    scores = rec(f"{n}.attn.scores", ops.attention_scores(q_rot, keys, cfg.head_dim ** -0.5), q_rot, keys)
    if window is None:
        mask = rec(f"{n}.attn.mask", ops.causal_mask(q_rot.shape[1], keys.shape[1], mask_value(cfg, x.dtype), x.dtype))
    else:
        mask = rec(f"{n}.attn.mask", ops.sliding_window_mask(q_rot.shape[1], keys.shape[1], window,
                                                             mask_value(cfg, x.dtype), x.dtype), op="sliding_window_mask")
    masked = rec(f"{n}.attn.masked_scores", scores + mask, scores, mask)
    probs = rec(f"{n}.attn.probs", ops.softmax(masked), masked)

    # §3-5-7 context and output projection (the forward adds it to the residual stream).
    context = rec(f"{n}.attn.context", ops.attention_context(probs, values), probs, values)
    if taps is not None:
        taps.context = context
    wo = w(f"{p}.self_attn.o_proj.weight")
    return rec(f"{n}.attn.o_proj", ops.linear(ops.merge_heads(context), wo), context, wo)


def mlp(cfg: Qwen3Config, w: Params, rec: Recorder, i: int, x_mid: np.ndarray) -> np.ndarray:
    """Residual stream [T, D] -> what the dense SwiGLU MLP adds to it [T, D] (§3-5-8): pre-norm, gate, up, act,
    down."""
    p, n = f"model.layers.{i}", f"layers.{i}"
    h = _mlp_norm(cfg, w, rec, i, x_mid)
    wg, wu, wd = (w(f"{p}.mlp.{m}.weight") for m in ("gate_proj", "up_proj", "down_proj"))
    gate = rec(f"{n}.mlp.gate_proj", ops.linear(h, wg), h, wg)
    up = rec(f"{n}.mlp.up_proj", ops.linear(h, wu), h, wu)
    act = rec(f"{n}.mlp.act", ops.swiglu(gate, up), gate, up)
    return rec(f"{n}.mlp.down_proj", ops.linear(act, wd), act, wd)


def _mlp_norm(cfg: Qwen3Config, w: Params, rec: Recorder, i: int, x_mid: np.ndarray) -> np.ndarray:
    """The RMSNorm before the MLP or the MoE (HF ``post_attention_layernorm``)."""
    norm_w = w(f"model.layers.{i}.post_attention_layernorm.weight")
    return rec(f"layers.{i}.mlp_norm", ops.rms_norm(x_mid, norm_w, cfg.rms_norm_eps), x_mid, norm_w)


def moe(cfg: Qwen3Config, w: Params, rec: Recorder, i: int, x_mid: np.ndarray, dropped: list[int] | None = None,
        taps: Taps | None = None) -> np.ndarray:
    """Residual stream [T, D] -> what the Mixture-of-Experts adds to it [T, D] (§4-5-9..14): pre-norm, router,
    top-k gating, each chosen expert on its rows, gate-weighted sum. ``dropped``: experts top-k may not pick."""
    p, n = f"model.layers.{i}.mlp", f"layers.{i}.moe"
    h = _mlp_norm(cfg, w, rec, i, x_mid)

    # §4-5-10 router logits (+ bias), softmax over all experts, top-k, renormalise.
    wr = w(f"{p}.gate.weight")
    if cfg.router_bias:
        bias = w(f"{p}.gate.bias")
        router_logits = rec(f"{n}.router_logits", ops.linear(h, wr) + bias, h, wr, bias)
    else:
        router_logits = rec(f"{n}.router_logits", ops.linear(h, wr), h, wr)
    router_probs = rec(f"{n}.router_probs", ops.softmax(router_logits), router_logits)
    choosable = ops.drop_experts(router_probs, dropped) if dropped else router_probs
    chosen, chosen_probs = ops.top_k(choosable, cfg.num_experts_per_tok)
    topk_ids = rec(f"{n}.topk_ids", chosen, router_probs)
    if cfg.norm_topk_prob:  # softmax over the chosen logits = chosen probabilities renormalised (§4-5-10)
        chosen_logits = np.take_along_axis(router_logits, topk_ids, axis=-1)
        topk_weights = rec(f"{n}.topk_weights", ops.softmax(chosen_logits), router_logits, topk_ids)
    else:
        topk_weights = rec(f"{n}.topk_weights", chosen_probs, router_probs, topk_ids, op="top_k_weights_raw")
    gates = rec(f"{n}.gates", ops.scatter_gates(topk_ids, topk_weights, cfg.num_experts), topk_ids, topk_weights)

    # §4-5-11..13 each expert on the rows routed to it; §4-5-14 weighted by its gate and summed.
    total = np.zeros_like(h)
    weighted_outputs = []
    for e in range(cfg.num_experts):
        routed = np.flatnonzero((topk_ids == e).any(axis=1))
        if routed.size == 0:
            continue
        ne, pe = f"{n}.experts.{e}", f"{p}.experts.{e}"
        rows = rec(f"{ne}.token_ids", routed, topk_ids)
        x_e = h[rows]
        wu, wd = w(f"{pe}.up_proj.weight"), w(f"{pe}.down_proj.weight")
        if cfg.expert_act == "swiglu":
            wg = w(f"{pe}.gate_proj.weight")
            gate = rec(f"{ne}.gate_proj", ops.linear(x_e, wg), h, rows, wg)
            up = rec(f"{ne}.up_proj", ops.linear(x_e, wu), h, rows, wu)
            act = rec(f"{ne}.act", ops.swiglu(gate, up), gate, up)
        else:
            up = rec(f"{ne}.up_proj", ops.linear(x_e, wu), h, rows, wu)
            act = rec(f"{ne}.act", ops.relu(up), up, op="relu")
        y = rec(f"{ne}.down_proj", ops.linear(act, wd), act, wd)
        weighted = rec(f"{ne}.weighted", ops.scatter_rows(rows, y, gates[rows, e], len(h)), gates, rows, y)
        weighted_outputs.append(weighted)
        if taps is not None:
            taps.experts.append((e, rows, weighted[rows]))
        total = total + weighted
    return rec(f"{n}.out", total, *weighted_outputs)


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: greedy when temperature is 0."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    suppress: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        """The one place sampling settings are checked (the CLI, the app and notebooks all build a Sampling)."""
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise TracerError.of("errors.temperature", value=self.temperature)
        if self.top_k is not None and self.top_k < 1:
            raise TracerError.of("errors.at_least_one", name="top_k", value=self.top_k)
        if self.top_p is not None and not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise TracerError.of("errors.top_p", value=self.top_p)
        if self.seed < 0:
            raise TracerError.of("errors.sampling_seed", value=self.seed)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def sample_next(cfg: Qwen3Config, logits: np.ndarray, step: int, sampling: Sampling, rng: np.random.Generator,
                rec: Recorder) -> int:
    """Logits [T, V] of the latest forward -> the next token id, recording ``sample.{step}.*`` (§3-7, §4-7)."""
    n = f"sample.{step}"
    last = rec(f"{n}.logits", logits[-1], logits)
    masked = rec(f"{n}.masked_logits", ops.suppress(last, list(sampling.suppress), mask_value(cfg, last.dtype)), last)
    if sampling.greedy:
        probs = rec(f"{n}.probs", ops.greedy_probs(masked), masked)
        token = int(np.argmax(probs))
    else:
        probs = rec(f"{n}.probs", ops.sampling_probs(masked, sampling.temperature, sampling.top_k, sampling.top_p),
                    masked, op="sampling_probs")
        p64 = probs.astype(np.float64)
        token = int(rng.choice(len(p64), p=p64 / p64.sum()))
    rec(f"{n}.token_id", np.array(token, dtype=np.int64), probs)
    return token


@dataclass
class Generation:
    """Result of a traced generation: the prompt, the new tokens and why it stopped."""

    prompt: list[int]
    new_tokens: list[int] = field(default_factory=list)
    stop_reason: str = "max_new_tokens"


Step = Callable[[list[int], Recorder], np.ndarray]  # the tokens to feed, the recorder -> their logits [T, V]


def decode_loop(cfg: Qwen3Config, prompt: list[int], rec: Recorder, sampling: Sampling, max_new_tokens: int,
                stop_tokens: tuple[int, ...], step: Step) -> Generation:
    """Feed the prompt once, then each new token (recorded under ``decode.{s}.``), sampling after every step.

    ``step`` runs one forward pass of a backend, continuing its own KV cache.
    """
    rng = np.random.default_rng(sampling.seed)
    result = Generation(list(prompt))
    tokens = list(prompt)
    for s in range(max_new_tokens):
        logits = step(tokens, rec if s == 0 else rec.scoped(f"decode.{s}."))
        token = sample_next(cfg, logits, s, sampling, rng, rec)
        result.new_tokens.append(token)
        if token in stop_tokens:
            result.stop_reason = "stop_token"
            break
        tokens = [token]
    return result


def generate(cfg: Qwen3Config, weights: Mapping[str, np.ndarray], prompt: list[int], rec: Recorder,
             sampling: Sampling, max_new_tokens: int = 1, stop_tokens: tuple[int, ...] = (),
             interventions: Interventions | None = None) -> Generation:
    """Prefill the prompt once, then decode one token per step with the KV cache (``decode.{s}.*``)."""
    cache = KVCache.empty(cfg.num_hidden_layers)
    return decode_loop(cfg, prompt, rec, sampling, max_new_tokens, stop_tokens,
                       lambda tokens, step_rec: forward(cfg, weights, np.array(tokens), step_rec, cache,
                                                        interventions=interventions))
