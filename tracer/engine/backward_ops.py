"""The backward of each forward op of ``tracer/engine/ops.py``, in the same order, plus the training losses.

A backward op takes what its forward op read (and, where cheaper, what it returned) and the gradient of the
loss with respect to its output, ``dy = ∂L/∂y``, and returns the gradient with respect to each input that can
carry one. Shapes use the letters of ``ops.py``. Each formula is the chain rule written out for one op; every
op is checked against torch autograd in float64 (``tests/test_backward_ops.py``).

Ops without a backward: ``one_hot``, ``rope_inv_freq`` / ``rope_tables``, ``causal_mask`` and the ids of ``top_k``
make constants (token ids, positions, the mask, the routing choice), and the sampling ops act after the loss.
``apply_rope_interleaved`` (seed 001's layout) is not used by the model.
"""

from __future__ import annotations

import numpy as np

from tracer.engine import ops

IGNORE_INDEX = -100
"""Label of a position that is not scored (Hugging Face / PyTorch ``ignore_index``)."""

# ---------------------------------------------------------------------------------------------------
# Tokens and embedding
# ---------------------------------------------------------------------------------------------------


def embedding_backward(ids: np.ndarray, dy: np.ndarray, vocab_size: int) -> np.ndarray:
    """[T] int, dY [T, D] -> dE [V, D]. dE[v] = Σ_{t: ids[t] = v} dY[t] (a repeated token adds up).

    >>> embedding_backward(np.array([1, 1, 0]), np.array([[1., 0.], [2., 0.], [0., 5.]]), 3)
    array([[0., 5.],
           [3., 0.],
           [0., 0.]])
    """
    out = np.zeros((vocab_size, dy.shape[-1]), dtype=dy.dtype)
    np.add.at(out, np.asarray(ids), dy)
    return out


# ---------------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------------


def rms_norm_backward(x: np.ndarray, weight: np.ndarray, eps: float, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[..., D], [D], dY [..., D] -> dX [..., D], dw [D].

    r = 1/sqrt(mean(x²) + eps), x̂ = x·r, g = dY ⊙ w:  dX = r·(g − x̂·mean(g ⊙ x̂)),  dw = Σ_rows dY ⊙ x̂.

    >>> dx, dw = rms_norm_backward(np.array([[3., 4.]]), np.ones(2), 0.0, np.array([[1., 0.]]))
    >>> dx.round(4), dw.round(4)
    (array([[ 0.181 , -0.1358]]), array([0.8485, 0.    ]))
    """
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    xhat = x * r
    g = dy * weight
    dx = r * (g - xhat * np.mean(g * xhat, axis=-1, keepdims=True))
    dw = np.sum((dy * xhat).reshape(-1, x.shape[-1]), axis=0)
    return dx, dw


def l2_norm_backward(x: np.ndarray, weight: np.ndarray, eps: float, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[..., D], [D], dY [..., D] -> dX [..., D], dw [D].

    n = max(‖x‖, eps), u = x/n, g = dY ⊙ w:  dX = (g − u·(g·u))/n where ‖x‖ > eps (else g/n),  dw = Σ_rows dY ⊙ u.

    >>> dx, dw = l2_norm_backward(np.array([[3., 4.]]), np.ones(2), 1e-6, np.array([[1., 0.]]))
    >>> dx.round(4), dw.round(4)
    (array([[ 0.128, -0.096]]), array([0.6, 0. ]))
    """
    norm = np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
    n = np.maximum(norm, eps)
    u = x / n
    g = dy * weight
    dx = np.where(norm > eps, (g - u * np.sum(g * u, axis=-1, keepdims=True)) / n, g / n)
    dw = np.sum((dy * u).reshape(-1, x.shape[-1]), axis=0)
    return dx, dw


# ---------------------------------------------------------------------------------------------------
# Projections and heads
# ---------------------------------------------------------------------------------------------------


def linear_backward(x: np.ndarray, weight: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[T, in], [out, in], dY [T, out] -> dX [T, in], dW [out, in]. dX = dY·W,  dW = dYᵀ·X.

    >>> dx, dw = linear_backward(np.array([[1., 2.]]), np.array([[1., 0.], [1., 1.]]), np.array([[1., 1.]]))
    >>> dx, dw
    (array([[2., 1.]]), array([[1., 2.],
           [1., 2.]]))
    """
    return dy @ weight, dy.T @ x


def split_heads_backward(dy: np.ndarray) -> np.ndarray:
    """dY [n, T, Dh] -> dX [T, n·Dh]. A reshape moves gradients back where the values came from: merge_heads.

    >>> split_heads_backward(np.arange(4).reshape(2, 1, 2))
    array([[0, 1, 2, 3]])
    """
    return ops.merge_heads(dy)


def merge_heads_backward(dy: np.ndarray, num_heads: int) -> np.ndarray:
    """dY [T, n·Dh] -> dX [n, T, Dh]: split_heads of the gradient.

    >>> merge_heads_backward(np.arange(4).reshape(1, 4), 2).shape
    (2, 1, 2)
    """
    return ops.split_heads(dy, num_heads)


# ---------------------------------------------------------------------------------------------------
# Rotary position embedding
# ---------------------------------------------------------------------------------------------------


def rotate_half_backward(dy: np.ndarray) -> np.ndarray:
    """dY [..., Dh] -> dX [..., Dh]. rotate_half is the matrix R with R·(x₁, x₂) = (−x₂, x₁); Rᵀ(z₁, z₂) = (z₂, −z₁).

    >>> rotate_half_backward(np.array([-3., -4., 1., 2.]))
    array([1., 2., 3., 4.])
    """
    half = dy.shape[-1] // 2
    return np.concatenate([dy[..., half:], -dy[..., :half]], axis=-1)


def apply_rope_backward(dy: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """dY [n, T, Dh], [T, Dh], [T, Dh] -> dX [n, T, Dh]. dX = dY ⊙ cos + Rᵀ(dY ⊙ sin): the rotation turned back.

    >>> cos, sin = ops.rope_tables(np.array([1]), np.array([np.pi / 2]), np.float64)
    >>> apply_rope_backward(np.array([[[0., 1.]]]), cos, sin).round(3) + 0
    array([[[1., 0.]]])
    """
    return dy * cos + rotate_half_backward(dy * sin)


# ---------------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------------


def attention_scores_backward(q: np.ndarray, k: np.ndarray, scale: float, ds: np.ndarray
                              ) -> tuple[np.ndarray, np.ndarray]:
    """[H, T, Dh], [Hkv, S, Dh], dS [H, T, S] -> dQ [H, T, Dh], dK [Hkv, S, Dh].

    dQ_h = dS_h K_{g(h)} · scale,  dK_g = Σ_{h in group g} dS_hᵀ Q_h · scale (a shared key sums its heads).

    >>> dq, dk = attention_scores_backward(np.array([[[1., 0.]], [[0., 1.]]]), np.array([[[1., 0.], [0., 2.]]]),
    ...                                    1.0, np.array([[[1., 0.]], [[0., 1.]]]))
    >>> dq[:, 0], dk[0]
    (array([[1., 0.],
           [0., 2.]]), array([[1., 0.],
           [0., 1.]]))
    """
    h, t, dh = q.shape
    hkv, s, _ = k.shape
    sc = np.asarray(scale, dtype=q.dtype)
    ds_g = ds.reshape(hkv, h // hkv, t, s)
    dq = (ds_g @ k[:, None]).reshape(h, t, dh) * sc
    dk = np.sum(ds_g.transpose(0, 1, 3, 2) @ q.reshape(hkv, h // hkv, t, dh), axis=1) * sc
    return dq, dk


def add_backward(dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dY -> dA, dB for Y = A + B (the causal-mask add, the residual adds): both get dY unchanged.

    The mask is a constant, so its gradient is not used.

    >>> add_backward(np.array([1., 2.]))
    (array([1., 2.]), array([1., 2.]))
    """
    return dy, dy


def softmax_backward(p: np.ndarray, dp: np.ndarray) -> np.ndarray:
    """P [..., N], dP [..., N] -> dX [..., N]. dX = P ⊙ (dP − Σ_j dP_j P_j), along the last axis.

    A masked score has P = 0, so it gets no gradient.

    >>> softmax_backward(np.array([0.25, 0.75]), np.array([1., 0.]))
    array([ 0.1875, -0.1875])
    """
    return p * (dp - np.sum(dp * p, axis=-1, keepdims=True))


def attention_context_backward(probs: np.ndarray, v: np.ndarray, dc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[H, T, S], [Hkv, S, Dh], dC [H, T, Dh] -> dA [H, T, S], dV [Hkv, S, Dh].

    dA_h = dC_h V_{g(h)}ᵀ,  dV_g = Σ_{h in group g} A_hᵀ dC_h.

    >>> da, dv = attention_context_backward(np.array([[[0.25, 0.75]]]), np.array([[[4., 0.], [0., 4.]]]),
    ...                                     np.array([[[1., 0.]]]))
    >>> da, dv
    (array([[[4., 0.]]]), array([[[0.25, 0.  ],
            [0.75, 0.  ]]]))
    """
    h, t, s = probs.shape
    hkv, _, dh = v.shape
    dc_g = dc.reshape(hkv, h // hkv, t, dh)
    da = (dc_g @ v[:, None].transpose(0, 1, 3, 2)).reshape(h, t, s)
    dv = np.sum(probs.reshape(hkv, h // hkv, t, s).transpose(0, 1, 3, 2) @ dc_g, axis=1)
    return da, dv


# ---------------------------------------------------------------------------------------------------
# MLP and experts
# ---------------------------------------------------------------------------------------------------


def silu_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """[...], dY [...] -> dX [...]. silu'(t) = σ(t)·(1 + t·(1 − σ(t))).

    >>> silu_backward(np.array([0.0]), np.array([1.0]))
    array([0.5])
    """
    sig = 1.0 / (1.0 + np.exp(-x))
    return dy * sig * (1.0 + x * (1.0 - sig))


def swiglu_backward(gate: np.ndarray, up: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[T, I], [T, I], dF [T, I] -> dG [T, I], dU [T, I]. dG = dF ⊙ U ⊙ silu'(G),  dU = dF ⊙ silu(G).

    >>> swiglu_backward(np.array([[0.0]]), np.array([[2.0]]), np.array([[1.0]]))
    (array([[1.]]), array([[0.]]))
    """
    return silu_backward(gate, dy * up), dy * ops.silu(gate)


def relu_backward(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """[...], dY [...] -> dX [...]. dX = dY where x > 0, else 0.

    >>> relu_backward(np.array([-1.0, 2.0]), np.array([5.0, 5.0]))
    array([0., 5.])
    """
    return np.where(x > 0, dy, 0).astype(dy.dtype)


def top_k_backward(ids: np.ndarray, dvalues: np.ndarray, num_experts: int) -> np.ndarray:
    """ids [T, k], dvalues [T, k] -> dscores [T, E]. The picked entries get their gradient; the ids are constants.

    >>> top_k_backward(np.array([[1, 2]]), np.array([[0.5, -1.]]), 3)
    array([[ 0. ,  0.5, -1. ]])
    """
    return ops.scatter_gates(ids, dvalues, num_experts)


def renormalize_backward(weights: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """[T, k], dY [T, k] -> dW [T, k] for y = w / Σw:  dW = (dY − Σ_j dY_j y_j) / Σw.

    >>> renormalize_backward(np.array([[0.3, 0.1]]), np.array([[1., 0.]])).round(4)
    array([[ 0.625, -1.875]])
    """
    total = np.sum(weights, axis=-1, keepdims=True)
    y = weights / total
    return (dy - np.sum(dy * y, axis=-1, keepdims=True)) / total


def scatter_gates_backward(ids: np.ndarray, dgates: np.ndarray) -> np.ndarray:
    """ids [T, k], dG [T, E] -> dw [T, k]. dw[t, j] = dG[t, ids[t, j]] (a gather).

    >>> scatter_gates_backward(np.array([[1, 2]]), np.array([[9., 3., 4.]]))
    array([[3., 4.]])
    """
    return np.take_along_axis(dgates, ids, axis=-1)


def gather_rows_backward(rows: np.ndarray, dy: np.ndarray, num_rows: int) -> np.ndarray:
    """[n], dY [n, D] -> dX [T, D] for Y = X[rows]: each gradient row goes back to the row it was read from.

    >>> gather_rows_backward(np.array([1]), np.array([[2., 4.]]), 2)
    array([[0., 0.],
           [2., 4.]])
    """
    out = np.zeros((num_rows, dy.shape[1]), dtype=dy.dtype)
    np.add.at(out, rows, dy)
    return out


def scatter_rows_backward(rows: np.ndarray, values: np.ndarray, gate: np.ndarray, dz: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """[n], [n, D], [n], dZ [T, D] -> dvalues [n, D], dgate [n]. dvalues = gate ⊙ dZ[rows],  dgate = Σ_d dZ[rows] ⊙ values.

    >>> scatter_rows_backward(np.array([1]), np.array([[2., 4.]]), np.array([0.5]), np.array([[9., 9.], [1., 1.]]))
    (array([[0.5, 0.5]]), array([6.]))
    """
    picked = dz[rows]
    return gate[:, None] * picked, np.sum(picked * values, axis=-1)


# ---------------------------------------------------------------------------------------------------
# Training losses (forward and backward side by side)
# ---------------------------------------------------------------------------------------------------


def log_softmax(x: np.ndarray) -> np.ndarray:
    """[..., V] -> [..., V]. log p_j = x_j − max x − log Σ_i exp(x_i − max x) (stable).

    >>> log_softmax(np.array([0.0, np.log(3.0)])).round(4)
    array([-1.3863, -0.2877])
    """
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def shift_labels(ids: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """[T] int, [T] bool -> labels [T]. labels[t] = ids[t+1] if position t+1 is counted, else −100; the last is −100.

    The logits at t predict token t+1 (Hugging Face shifts inside the loss; the seed builds Y = ids[1:]).

    >>> shift_labels(np.array([5, 6, 7]), np.array([False, True, True]))
    array([   6,    7, -100])
    """
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    labels[:-1] = np.where(counted[1:], ids[1:], IGNORE_INDEX)
    return labels


def token_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[T, V], [T] -> [T]. ℓ_t = −log softmax(logits_t)[labels_t]; 0 where labels_t = −100.

    >>> token_cross_entropy(np.array([[0.0, np.log(3.0)], [1.0, 2.0]]), np.array([1, -100])).round(4)
    array([0.2877, 0.    ])
    """
    logp = log_softmax(logits.astype(np.promote_types(logits.dtype, np.float32)))
    keep = labels != IGNORE_INDEX
    picked = np.take_along_axis(logp, np.where(keep, labels, 0)[:, None], axis=-1)[:, 0]
    return np.where(keep, -picked, 0.0).astype(logp.dtype)


def cross_entropy_backward(logits: np.ndarray, labels: np.ndarray, dloss: float) -> np.ndarray:
    """[T, V], [T], dL -> dlogits [T, V] for L = mean of ℓ_t over the N counted rows:
    dlogits_t = dL · (softmax(logits_t) − onehot(labels_t)) / N on counted rows, 0 elsewhere.

    >>> cross_entropy_backward(np.array([[0.0, np.log(3.0)], [1.0, 2.0]]), np.array([1, -100]), 1.0)
    array([[ 0.25, -0.25],
           [ 0.  ,  0.  ]])
    """
    keep = labels != IGNORE_INDEX
    n = int(keep.sum())
    grad = ops.softmax(logits.astype(np.promote_types(logits.dtype, np.float32)))
    grad[np.flatnonzero(keep), labels[keep]] -= 1.0
    return (np.where(keep[:, None], grad, 0.0) * (dloss / n)).astype(grad.dtype)


def token_logprob_backward(logits: np.ndarray, labels: np.ndarray, dlogp: np.ndarray) -> np.ndarray:
    """[T, V], [T], dlogp [T] -> dlogits [T, V] for logp_t = log softmax(logits_t)[labels_t]:
    dlogits_t = dlogp_t · (onehot(labels_t) − softmax(logits_t)); rows labelled −100 get 0.

    >>> token_logprob_backward(np.array([[0.0, np.log(3.0)]]), np.array([1]), np.array([1.0]))
    array([[-0.25,  0.25]])
    """
    keep = labels != IGNORE_INDEX
    grad = -ops.softmax(logits.astype(np.promote_types(logits.dtype, np.float32)))
    grad[np.flatnonzero(keep), labels[keep]] += 1.0
    return np.where(keep[:, None], grad * dlogp[:, None], 0.0).astype(grad.dtype)


def load_balancing_loss(probs: list[np.ndarray], ids: list[np.ndarray], num_experts: int
                        ) -> tuple[float, np.ndarray, np.ndarray]:
    """Router probabilities [T, E] and top-k ids [T, k] of every sparse layer -> aux, f [E], P [E].

    Rows of all layers are pooled (R = T · layers): f_i = (# top-k slots given to i) / R (Σf = k),
    P_i = Σ p_i / R (ΣP = 1), aux = E · Σ_i f_i P_i. Perfect balance gives k.

    >>> aux, f, p = load_balancing_loss([np.array([[0.5, 0.5], [0.5, 0.5]])], [np.array([[0], [1]])], 2)
    >>> aux, f, p
    (1.0, array([0.5, 0.5]), array([0.5, 0.5]))
    """
    rows = sum(len(p) for p in probs)
    counts = np.zeros(num_experts)
    for chosen in ids:
        counts += np.bincount(chosen.reshape(-1), minlength=num_experts)
    f = counts / rows
    p_mean = np.sum([np.sum(p, axis=0, dtype=np.float64) for p in probs], axis=0) / rows
    return float(num_experts * np.sum(f * p_mean)), f, p_mean


def load_balancing_backward(f: np.ndarray, rows: int, daux: float) -> np.ndarray:
    """f [E], R, dAux -> dprobs row [E], the same for every pooled row: ∂aux/∂p_{r,i} = E · f_i / R.

    (f counts top-k choices, which are constants; only P carries gradient.)

    >>> load_balancing_backward(np.array([0.5, 0.5]), 2, 1.0)
    array([0.5, 0.5])
    """
    return daux * len(f) * f / rows
