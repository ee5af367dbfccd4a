"""The operations of a Qwen3 forward pass: small pure NumPy functions, no batch dimension.

Row-vector convention as in the worked examples: a token is a row. Weights keep the checkpoint layout
``[out, in]``, so a projection is written ``x @ W.T``. Shapes use the letters of the trace schema:
T query tokens, S key positions, D hidden size, H / Hkv query / key-value heads, Dh head dim,
I MLP width, E experts, k experts per token, V vocabulary.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------------------
# Tokens and embedding
# ---------------------------------------------------------------------------------------------------


def one_hot(ids: np.ndarray, vocab_size: int, dtype: np.dtype = np.float32) -> np.ndarray:
    """[T] int -> [T, V]. Row t is 1 at column ids[t]: X_onehot[t, v] = [v == ids[t]].

    >>> one_hot(np.array([0, 2]), 3)
    array([[1., 0., 0.],
           [0., 0., 1.]], dtype=float32)
    """
    return (np.asarray(ids)[:, None] == np.arange(vocab_size)[None, :]).astype(dtype)


def embedding(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """[T] int, [V, D] -> [T, D]. X[t] = E[ids[t]], the same as one_hot(ids) @ E.

    >>> embedding(np.array([1, 0]), np.array([[1., 1.], [2., 0.]]))
    array([[2., 0.],
           [1., 1.]])
    """
    return np.asarray(table[np.asarray(ids)])


# ---------------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------------


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """[..., D], [D] -> [..., D]. y = x / sqrt(mean(x²) + eps) ⊙ w, over the last axis.

    Computed in float32 at least, like Hugging Face (upcast, normalise, cast back, then scale).

    >>> rms_norm(np.array([[3., 4.]]), np.ones(2), eps=0.0).round(4)
    array([[0.8485, 1.1314]])
    """
    xf = x.astype(np.promote_types(x.dtype, np.float32), copy=False)
    mean_square = np.add.reduce(xf * xf, axis=-1, keepdims=True) / x.shape[-1]  # = np.mean, minus its overhead
    normed = xf / np.sqrt(mean_square + eps)
    return normed.astype(x.dtype, copy=False) * weight


def l2_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """[..., D], [D] -> [..., D]. y = x / max(‖x‖₂, eps) ⊙ w: each row scaled to unit length.

    The QK-Norm of seed 004 §3-5-4 (a teaching stand-in for Qwen3's per-head RMSNorm).

    >>> l2_norm(np.array([[2., 2.], [2., 0.]]), np.ones(2), eps=1e-6).round(3)
    array([[0.707, 0.707],
           [1.   , 0.   ]])
    """
    norm = np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
    return x / np.maximum(norm, eps) * weight


# ---------------------------------------------------------------------------------------------------
# Projections and heads
# ---------------------------------------------------------------------------------------------------


def linear(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """[T, in], [out, in] -> [T, out]. y = x @ Wᵀ (the checkpoint stores W as [out, in]).

    >>> linear(np.array([[1., 2.]]), np.array([[1., 0.], [1., 1.], [0., 2.]]))
    array([[1., 3., 4.]])
    """
    return x @ weight.T


def split_heads(x: np.ndarray, num_heads: int) -> np.ndarray:
    """[T, n·Dh] -> [n, T, Dh]. Column block h of each row becomes head h.

    >>> split_heads(np.arange(4).reshape(1, 4), 2)
    array([[[0, 1]],
    <BLANKLINE>
           [[2, 3]]])
    """
    t, width = x.shape
    return x.reshape(t, num_heads, width // num_heads).transpose(1, 0, 2)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """[n, T, Dh] -> [T, n·Dh]. Inverse of split_heads: heads side by side in each row.

    >>> merge_heads(np.arange(4).reshape(2, 1, 2))
    array([[0, 1, 2, 3]])
    """
    n, t, dh = x.shape
    return x.transpose(1, 0, 2).reshape(t, n * dh)


# ---------------------------------------------------------------------------------------------------
# Rotary position embedding (Hugging Face rotate_half layout)
# ---------------------------------------------------------------------------------------------------


def rope_inv_freq(head_dim: int, theta: float) -> np.ndarray:
    """-> [Dh/2] float64. ω_j = θ^(−2j/Dh): the angle (radians) pair j turns per position.

    >>> rope_inv_freq(4, 10000.0)
    array([1.  , 0.01])
    """
    return 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def rope_tables(positions: np.ndarray, inv_freq: np.ndarray, dtype: np.dtype = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """[T] int, [Dh/2] -> cos [T, Dh], sin [T, Dh]. Angle φ[t, j] = pos[t]·ω_j, laid out as cat(φ, φ).

    Angles are computed in float64 and rounded once to ``dtype``.

    >>> cos, sin = rope_tables(np.array([0, 1]), np.array([-np.pi / 2]))
    >>> cos.round(3) + 0, sin.round(3) + 0
    (array([[1., 1.],
           [0., 0.]], dtype=float32), array([[ 0.,  0.],
           [-1., -1.]], dtype=float32))
    """
    angles = np.asarray(positions, dtype=np.float64)[:, None] * np.asarray(inv_freq, dtype=np.float64)[None, :]
    full = np.concatenate([angles, angles], axis=-1)
    return np.cos(full).astype(dtype), np.sin(full).astype(dtype)


def rotate_half(x: np.ndarray) -> np.ndarray:
    """[..., Dh] -> [..., Dh]. (x₁, x₂) ↦ (−x₂, x₁) where x₁, x₂ are the two halves of the last axis.

    >>> rotate_half(np.array([1., 2., 3., 4.]))
    array([-3., -4.,  1.,  2.])
    """
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """[n, T, Dh], [T, Dh], [T, Dh] -> [n, T, Dh]. x' = x ⊙ cos + rotate_half(x) ⊙ sin.

    Pair (x[j], x[j + Dh/2]) turns by the angle φ[t, j]. Seed 004 turns its one pair by −90° per position:

    >>> cos, sin = rope_tables(np.arange(4), np.array([-np.pi / 2]), np.float64)
    >>> apply_rope(np.array([[[1., 0.], [1., 0.], [1., 0.], [1., 0.]]]), cos, sin).round(3) + 0
    array([[[ 1.,  0.],
            [ 0., -1.],
            [-1.,  0.],
            [ 0.,  1.]]])
    """
    return x * cos + rotate_half(x) * sin


def apply_rope_interleaved(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """[..., Dh], [T, Dh/2], [T, Dh/2] -> [..., Dh]. The LLaMA / seed 001 layout: pair j is (x[2j], x[2j+1]).

    x'[2j] = x[2j]·cos − x[2j+1]·sin, x'[2j+1] = x[2j]·sin + x[2j+1]·cos. It equals ``apply_rope`` after moving
    the even dimensions to the first half and the odd ones to the second (a fixed permutation).

    >>> apply_rope_interleaved(np.array([[1., 0.]]), np.array([[0.]]), np.array([[1.]]))
    array([[0., 1.]])
    """
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


# RoPE scaling (context extension): each returns the frequencies and the attention factor a that
# multiplies cos and sin (so every attention logit is multiplied by a²). Formulas of transformers'
# ``ROPE_INIT_FUNCTIONS``.


def rope_inv_freq_linear(head_dim: int, theta: float, factor: float) -> tuple[np.ndarray, float]:
    """-> [Dh/2] float64, a. Position interpolation: ω_j = θ^(−2j/Dh) / factor (positions divided by factor), a = 1.

    >>> rope_inv_freq_linear(4, 10000.0, 2.0)
    (array([0.5  , 0.005]), 1.0)
    """
    return rope_inv_freq(head_dim, theta) / factor, 1.0


def rope_inv_freq_dynamic(head_dim: int, theta: float, factor: float, seq_len: int,
                          max_position_embeddings: int) -> tuple[np.ndarray, float]:
    """-> [Dh/2] float64, a. Dynamic NTK: with L = max(seq_len, max_pos), the base grows to
    θ' = θ·(factor·L/max_pos − (factor − 1))^(Dh/(Dh−2)) and ω_j = θ'^(−2j/Dh); a = 1. Unchanged up to max_pos.

    >>> rope_inv_freq_dynamic(4, 10000.0, 2.0, 8, 16)[0]
    array([1.  , 0.01])
    >>> rope_inv_freq_dynamic(4, 10000.0, 2.0, 32, 16)[0]  # L = 2·max_pos: θ' = θ·3²
    array([1.        , 0.00333333])
    """
    length = max(seq_len, max_position_embeddings)
    base = theta * (factor * length / max_position_embeddings - (factor - 1)) ** (head_dim / (head_dim - 2))
    return rope_inv_freq(head_dim, base), 1.0


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature: 0.1·mscale·ln(scale) + 1 for scale > 1, else 1.

    >>> round(yarn_mscale(4.0), 10)
    1.1386294361
    """
    return 0.1 * mscale * float(np.log(scale)) + 1.0 if scale > 1 else 1.0


def yarn_correction_range(head_dim: int, theta: float, original_max_position_embeddings: int, beta_fast: float,
                          beta_slow: float, truncate: bool = True) -> tuple[float, float]:
    """-> (low, high) pair indices of YaRN's ramp. c(r) = Dh·ln(L₀/(2π r)) / (2 ln θ) is the pair that turns r
    times in the original window L₀; low = c(beta_fast), high = c(beta_slow) (floor / ceil when truncating),
    clamped to [0, Dh − 1].

    >>> yarn_correction_range(128, 1e6, 32768, 32, 1)
    (23, 40)
    """
    def dim(rotations: float) -> float:
        return head_dim * float(np.log(original_max_position_embeddings / (rotations * 2 * np.pi))) / (
            2 * float(np.log(theta)))

    low, high = dim(beta_fast), dim(beta_slow)
    if truncate:
        low, high = int(np.floor(low)), int(np.ceil(high))
    return max(low, 0), min(high, head_dim - 1)


def yarn_ramp(low: float, high: float, num_pairs: int) -> np.ndarray:
    """-> [Dh/2]. r_j = clip((j − low)/(high − low), 0, 1): 0 keeps pair j's frequency, 1 interpolates it
    (high is nudged by 0.001 when it equals low).

    >>> yarn_ramp(1, 3, 5)
    array([0. , 0. , 0.5, 1. , 1. ])
    """
    if low == high:
        high += 0.001
    return np.clip((np.arange(num_pairs, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def rope_inv_freq_yarn(head_dim: int, theta: float, factor: float, original_max_position_embeddings: int,
                       beta_fast: float = 32.0, beta_slow: float = 1.0, attention_factor: float | None = None,
                       mscale: float | None = None, mscale_all_dim: float | None = None,
                       truncate: bool = True) -> tuple[np.ndarray, float]:
    """-> [Dh/2] float64, a. YaRN: ω_j = ω_j^interp·r_j + ω_j^extrap·(1 − r_j) with ω^extrap = θ^(−2j/Dh),
    ω^interp = ω^extrap / factor and r the ramp of ``yarn_ramp`` between ``yarn_correction_range``.
    a = attention_factor if given; else mscale(factor, mscale)/mscale(factor, mscale_all_dim) when both are
    set; else 0.1·ln(factor) + 1.

    >>> w, a = rope_inv_freq_yarn(8, 10000.0, 4.0, 16)
    >>> w, round(a, 6)
    (array([1.0e+00, 2.5e-02, 2.5e-03, 2.5e-04]), 1.138629)
    """
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = yarn_mscale(factor)
    extrapolated = rope_inv_freq(head_dim, theta)
    interpolated = extrapolated / factor
    low, high = yarn_correction_range(head_dim, theta, original_max_position_embeddings, beta_fast, beta_slow,
                                      truncate)
    ramp = yarn_ramp(low, high, head_dim // 2)
    return interpolated * ramp + extrapolated * (1 - ramp), float(attention_factor)


# ---------------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------------


def attention_scores(q: np.ndarray, k: np.ndarray, scale: float) -> np.ndarray:
    """[H, T, Dh], [Hkv, S, Dh] -> [H, T, S]. S_h = Q_h K_{g(h)}ᵀ · scale, g(h) = h // (H / Hkv) (GQA).

    >>> q = np.array([[[1., 0.]], [[0., 1.]]])          # two query heads
    >>> k = np.array([[[1., 0.], [0., 2.]]])            # one shared key/value head
    >>> attention_scores(q, k, scale=1.0)
    array([[[1., 0.]],
    <BLANKLINE>
           [[0., 2.]]])
    """
    h, t, dh = q.shape
    hkv, s, _ = k.shape
    grouped = q.reshape(hkv, h // hkv, t, dh) @ k[:, None].transpose(0, 1, 3, 2)
    return grouped.reshape(h, t, s) * np.asarray(scale, dtype=q.dtype)


def causal_mask(num_queries: int, num_keys: int, mask_value: float, dtype: np.dtype = np.float32) -> np.ndarray:
    """-> [T, S]. M[t, s] = 0 where key s is at or before query t, else mask_value (−∞ stand-in).

    The T queries are the last T positions of the S keys (a decode step has T = 1 and sees every key).

    >>> causal_mask(3, 3, -100.0)
    array([[   0., -100., -100.],
           [   0.,    0., -100.],
           [   0.,    0.,    0.]], dtype=float32)
    """
    query_pos = np.arange(num_keys - num_queries, num_keys)[:, None]
    key_pos = np.arange(num_keys)[None, :]
    return np.where(key_pos <= query_pos, 0.0, mask_value).astype(dtype)


def sliding_window_mask(num_queries: int, num_keys: int, window: int, mask_value: float,
                        dtype: np.dtype = np.float32) -> np.ndarray:
    """-> [T, S]. M[t, s] = 0 where key s is at or before query t and fewer than W positions back
    (t − W < s ≤ t: W keys including itself), else mask_value. Queries are the last T positions of the S keys.

    >>> sliding_window_mask(4, 4, 2, -100.0)
    array([[   0., -100., -100., -100.],
           [   0.,    0., -100., -100.],
           [-100.,    0.,    0., -100.],
           [-100., -100.,    0.,    0.]], dtype=float32)
    """
    query_pos = np.arange(num_keys - num_queries, num_keys)[:, None]
    key_pos = np.arange(num_keys)[None, :]
    visible = (key_pos <= query_pos) & (key_pos > query_pos - window)
    return np.where(visible, 0.0, mask_value).astype(dtype)


def softmax(x: np.ndarray) -> np.ndarray:
    """[..., N] -> [..., N]. p_j = exp(x_j − max x) / Σ_i exp(x_i − max x), along the last axis.

    >>> softmax(np.array([0.0, np.log(3.0)]))
    array([0.25, 0.75])
    """
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def attention_context(probs: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[H, T, S], [Hkv, S, Dh] -> [H, T, Dh]. C_h = A_h V_{g(h)}: each query's weighted mix of values.

    >>> attention_context(np.array([[[0.25, 0.75]]]), np.array([[[4., 0.], [0., 4.]]]))
    array([[[1., 3.]]])
    """
    h, t, s = probs.shape
    hkv, _, dh = v.shape
    return (probs.reshape(hkv, h // hkv, t, s) @ v[:, None]).reshape(h, t, dh)


# ---------------------------------------------------------------------------------------------------
# MLP and experts
# ---------------------------------------------------------------------------------------------------


def silu(x: np.ndarray) -> np.ndarray:
    """[...] -> [...]. silu(t) = t · σ(t) = t / (1 + e^(−t)) (also called swish).

    >>> silu(np.array([0.0, 1.964])).round(3)
    array([0.   , 1.722])
    """
    return x / (1.0 + np.exp(-x))


def swiglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """[T, I], [T, I] -> [T, I]. F = silu(G) ⊙ U.

    >>> swiglu(np.array([[1.964]]), np.array([[1.964]])).round(3)
    array([[3.383]])
    """
    return silu(gate) * up


def relu(x: np.ndarray) -> np.ndarray:
    """[...] -> [...]. relu(t) = max(t, 0).

    >>> relu(np.array([-1.0, 2.0]))
    array([0., 2.])
    """
    return np.maximum(x, 0)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """[T, E] -> ids [T, k] int, values [T, k]. The k largest per row, best first (ties: lower id first).

    >>> top_k(np.array([[0.1, 0.7, 0.2]]), 2)
    (array([[1, 2]]), array([[0.7, 0.2]]))
    """
    ids = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    return ids, np.take_along_axis(scores, ids, axis=-1)


def renormalize(weights: np.ndarray) -> np.ndarray:
    """[T, k] -> [T, k]. w_j / Σ w: the chosen experts' probabilities rescaled to sum to 1 per row.

    >>> renormalize(np.array([[0.3, 0.1]]))
    array([[0.75, 0.25]])
    """
    return weights / np.sum(weights, axis=-1, keepdims=True)


def scatter_gates(ids: np.ndarray, weights: np.ndarray, num_experts: int) -> np.ndarray:
    """[T, k] int, [T, k] -> [T, E]. G[t, ids[t, j]] = weights[t, j]; zero for experts not chosen.

    >>> scatter_gates(np.array([[1, 2]]), np.array([[0.75, 0.25]]), 3)
    array([[0.  , 0.75, 0.25]])
    """
    gates = np.zeros((ids.shape[0], num_experts), dtype=weights.dtype)
    np.put_along_axis(gates, ids, weights, axis=-1)
    return gates


def scatter_rows(rows: np.ndarray, values: np.ndarray, gate: np.ndarray, num_rows: int) -> np.ndarray:
    """[n], [n, D], [n] -> [T, D]. Z[rows[j]] = gate[j] · values[j]; zero for rows the expert skipped.

    >>> scatter_rows(np.array([1]), np.array([[2., 4.]]), np.array([0.5]), 2)
    array([[0., 0.],
           [1., 2.]])
    """
    out = np.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    out[rows] = gate[:, None] * values
    return out


# ---------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------


def suppress(logits: np.ndarray, ids: list[int], value: float) -> np.ndarray:
    """[V] -> [V]. logits with the entries ``ids`` replaced by ``value`` (a −∞ stand-in).

    >>> suppress(np.array([3.0, 1.0, 2.0]), [0], -100.0)
    array([-100.,    1.,    2.])
    """
    out = logits.copy()
    out[list(ids)] = value
    return out


def greedy_probs(logits: np.ndarray) -> np.ndarray:
    """[V] -> [V]. One-hot at argmax: greedy decoding puts all probability on the best token.

    >>> greedy_probs(np.array([1.0, 3.0, 2.0]))
    array([0., 1., 0.])
    """
    probs = np.zeros_like(logits)
    probs[int(np.argmax(logits))] = 1
    return probs


def sampling_probs(logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None) -> np.ndarray:
    """[V] -> [V]. softmax(logits / T), keeping the top_k best and then the smallest set whose mass ≥ top_p.

    Tokens outside the kept set get probability 0; the kept ones are renormalised.

    >>> sampling_probs(np.array([0.0, np.log(3.0), -50.0]), 1.0, None, None).round(3)
    array([0.25, 0.75, 0.  ])
    >>> sampling_probs(np.array([0.0, np.log(3.0), -50.0]), 1.0, None, 0.7)
    array([0., 1., 0.])
    >>> sampling_probs(np.array([1.0, 3.0, 2.0]), 1e-40, None, None)  # T → 0 is greedy
    array([0., 1., 0.])
    """
    x = logits.astype(np.promote_types(logits.dtype, np.float32))
    with np.errstate(over="ignore"):  # shifted first (every value ≤ 0): a tiny T can only push a value to −∞
        probs = softmax((x - x.max()) / temperature)
    keep = np.ones(probs.shape, dtype=bool)
    order = np.argsort(-probs, kind="stable")
    if top_k is not None and top_k < probs.size:
        keep[order[top_k:]] = False
    if top_p is not None:
        sorted_probs = np.where(keep[order], probs[order], 0.0)
        mass_before = np.cumsum(sorted_probs) - sorted_probs
        keep[order[mass_before >= top_p * sorted_probs.sum()]] = False
    kept = np.where(keep, probs, 0.0)
    return (kept / kept.sum()).astype(logits.dtype)


# ---------------------------------------------------------------------------------------------------
# Interpretability: logit lens, direct logit attribution, interventions
# ---------------------------------------------------------------------------------------------------


def top_probs(logits: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """[T, V] -> ids [T, n] int, probs [T, n]. The n largest logits, best first (ties: lower id first), and
    their probabilities p = softmax(logits) = exp(ℓ − max ℓ) / Σ_v exp(ℓ_v − max ℓ).

    ``partition`` finds the n best without sorting all of V; only the n chosen probabilities are divided out.

    >>> top_probs(np.array([[0.0, np.log(3.0), -50.0]]), 2)
    (array([[1, 0]]), array([[0.75, 0.25]]))
    >>> top_probs(np.array([[1.0, 2.0, 2.0, 2.0]]), 2)[0]
    array([[1, 2]])
    """
    n = min(n, logits.shape[-1])
    x = logits.astype(np.promote_types(logits.dtype, np.float32))
    top = x.max(axis=-1, keepdims=True)
    total = np.exp(x - top).sum(axis=-1, keepdims=True)
    nth = -np.partition(-x, n - 1, axis=-1)[:, n - 1]
    ids = np.empty((len(x), n), dtype=np.int64)
    for t, row in enumerate(x):
        candidates = np.flatnonzero(row >= nth[t])  # the n best, and every token tied with the n-th
        ids[t] = candidates[np.lexsort((candidates, -row[candidates]))[:n]]
    probs = np.exp(np.take_along_axis(x, ids, axis=-1) - top) / total
    return ids, probs.astype(logits.dtype)


def zero_heads(context: np.ndarray, heads: list[int]) -> np.ndarray:
    """[H, T, Dh] -> [H, T, Dh]. The context of the listed heads set to 0 (what o_proj then mixes).

    >>> zero_heads(np.ones((2, 1, 2)), [1])[:, 0]
    array([[1., 1.],
           [0., 0.]])
    """
    out = context.copy()
    out[list(heads)] = 0
    return out


def drop_experts(probs: np.ndarray, experts: list[int]) -> np.ndarray:
    """[T, E] -> [T, E]. Router probabilities with the listed experts at −∞, so top-k never picks them.

    >>> drop_experts(np.array([[0.5, 0.3, 0.2]]), [0])
    array([[-inf,  0.3,  0.2]])
    """
    out = probs.copy()
    out[:, list(experts)] = -np.inf
    return out


def frozen_rms_scale(x: np.ndarray, eps: float) -> np.ndarray:
    """[T, D] -> [T]. 1 / sqrt(mean(x²) + ε): the final norm's scale, held fixed to make the head linear.

    >>> frozen_rms_scale(np.array([[3., 4.]]), 0.0).round(4)
    array([0.2828])
    """
    xf = x.astype(np.promote_types(x.dtype, np.float32))
    return (1.0 / np.sqrt(np.mean(xf * xf, axis=-1) + eps)).astype(x.dtype)


def head_attribution(context: np.ndarray, wo: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """[H, T, Dh], [D, H·Dh], [T, D] -> [H, T]. a[h, t] = (C_h[t] W_O,hᵀ) · u[t]: head h's write, read along u.

    Summed over heads this is o_proj[t] · u[t].

    >>> head_attribution(np.ones((2, 1, 1)), np.array([[1., 2.]]), np.array([[3.]]))
    array([[3.],
           [6.]])
    """
    h, t, dh = context.shape
    read = (direction @ wo).reshape(t, h, dh)  # u[t] pulled back through each head's slice of W_O
    return np.einsum("htk,thk->ht", context, read)
