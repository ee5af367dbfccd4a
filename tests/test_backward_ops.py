"""Each hand-written backward op against torch autograd in float64 (≤ 1e-9 relative), on random shapes."""

import numpy as np
import pytest

from tracer.engine import backward_ops as bw
from tracer.engine import ops

torch = pytest.importorskip("torch")
F = torch.nn.functional
SEEDS = [0, 1, 2]


def rnd(rng, *shape):
    return rng.standard_normal(shape)


def autograd(fn, inputs, dy):
    """Gradients of Σ fn(inputs) ⊙ dy with respect to each input, by torch autograd in float64."""
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in inputs]
    out = fn(*ts)
    out.backward(torch.tensor(dy, dtype=torch.float64))
    return [t.grad.numpy() for t in ts]


def close(got, want):
    scale = max(float(np.max(np.abs(want))), 1e-6)  # an all-zero gradient (top-1 renormalised) is compared absolutely
    assert float(np.max(np.abs(got - want))) / scale <= 1e-9


def shapes(seed):
    rng = np.random.default_rng(seed)
    hkv = int(rng.integers(1, 3))
    return rng, dict(T=int(rng.integers(1, 6)), D=int(rng.integers(2, 7)) * 2, Hkv=hkv, H=hkv * int(rng.integers(1, 3)),
                     Dh=int(rng.integers(1, 4)) * 2, V=int(rng.integers(3, 9)), E=int(rng.integers(2, 6)))


@pytest.mark.parametrize("seed", SEEDS)
def test_embedding(seed):
    rng, s = shapes(seed)
    ids = rng.integers(0, s["V"], s["T"])
    table, dy = rnd(rng, s["V"], s["D"]), rnd(rng, s["T"], s["D"])
    (want,) = autograd(lambda e: e[torch.tensor(ids)], [table], dy)
    close(bw.embedding_backward(ids, dy, s["V"]), want)


@pytest.mark.parametrize("seed", SEEDS)
def test_rms_norm(seed):
    rng, s = shapes(seed)
    x, w, dy = rnd(rng, s["H"], s["T"], s["D"]), rnd(rng, s["D"]), rnd(rng, s["H"], s["T"], s["D"])
    dx, dw = bw.rms_norm_backward(x, w, 1e-6, dy)
    want = autograd(lambda a, b: a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + 1e-6) * b, [x, w], dy)
    close(dx, want[0]), close(dw, want[1])
    np.testing.assert_allclose(ops.rms_norm(x, w, 1e-6), x / np.sqrt(np.mean(x * x, -1, keepdims=True) + 1e-6) * w)


@pytest.mark.parametrize("seed", SEEDS)
def test_l2_norm(seed):
    rng, s = shapes(seed)
    x, w, dy = rnd(rng, s["H"], s["T"], s["Dh"]), rnd(rng, s["Dh"]), rnd(rng, s["H"], s["T"], s["Dh"])
    dx, dw = bw.l2_norm_backward(x, w, 1e-6, dy)
    want = autograd(lambda a, b: a / a.norm(dim=-1, keepdim=True).clamp_min(1e-6) * b, [x, w], dy)
    close(dx, want[0]), close(dw, want[1])


@pytest.mark.parametrize("seed", SEEDS)
def test_linear_and_heads(seed):
    rng, s = shapes(seed)
    x, w = rnd(rng, s["T"], s["D"]), rnd(rng, s["H"] * s["Dh"], s["D"])
    dy = rnd(rng, s["H"], s["T"], s["Dh"])
    dflat = bw.split_heads_backward(dy)
    dx, dw = bw.linear_backward(x, w, dflat)
    want = autograd(lambda a, b: F.linear(a, b).reshape(s["T"], s["H"], s["Dh"]).transpose(0, 1), [x, w], dy)
    close(dx, want[0]), close(dw, want[1])
    dctx = rnd(rng, s["T"], s["H"] * s["Dh"])
    ctx = rnd(rng, s["H"], s["T"], s["Dh"])
    (want_ctx,) = autograd(lambda c: c.transpose(0, 1).reshape(s["T"], -1), [ctx], dctx)
    close(bw.merge_heads_backward(dctx, s["H"]), want_ctx)


@pytest.mark.parametrize("seed", SEEDS)
def test_apply_rope(seed):
    rng, s = shapes(seed)
    cos, sin = ops.rope_tables(np.arange(3, 3 + s["T"]), ops.rope_inv_freq(s["Dh"], 100.0), np.float64)
    x, dy = rnd(rng, s["H"], s["T"], s["Dh"]), rnd(rng, s["H"], s["T"], s["Dh"])
    c, sn = torch.tensor(cos), torch.tensor(sin)

    def rope(a):
        half = s["Dh"] // 2
        return a * c + torch.cat([-a[..., half:], a[..., :half]], -1) * sn

    (want,) = autograd(rope, [x], dy)
    close(bw.apply_rope_backward(dy, cos, sin), want)


@pytest.mark.parametrize("seed", SEEDS)
def test_attention_scores_mask_softmax_context(seed):
    rng, s = shapes(seed)
    h, hkv, t, dh = s["H"], s["Hkv"], s["T"], s["Dh"]
    q, k, v = rnd(rng, h, t, dh), rnd(rng, hkv, t, dh), rnd(rng, hkv, t, dh)
    mask = ops.causal_mask(t, t, float(np.finfo(np.float64).min), np.float64)
    scale = dh ** -0.5
    dsc = rnd(rng, h, t, t)
    dq, dk = bw.attention_scores_backward(q, k, scale, dsc)
    g = h // hkv
    want = autograd(lambda a, b: a @ b.repeat_interleave(g, 0).transpose(1, 2) * scale, [q, k], dsc)
    close(dq, want[0]), close(dk, want[1])
    scores = ops.attention_scores(q, k, scale)
    dp = rnd(rng, h, t, t)
    probs = ops.softmax(scores + mask)
    dmasked = bw.softmax_backward(probs, dp)
    dscores, _ = bw.add_backward(dmasked)
    (want_s,) = autograd(lambda a: torch.softmax(a + torch.tensor(mask), -1), [scores], dp)
    close(dscores, want_s)
    dc = rnd(rng, h, t, dh)
    da, dv = bw.attention_context_backward(probs, v, dc)
    want = autograd(lambda a, b: a @ b.repeat_interleave(g, 0), [probs, v], dc)
    close(da, want[0]), close(dv, want[1])


@pytest.mark.parametrize("seed", SEEDS)
def test_swiglu_silu_relu(seed):
    rng, s = shapes(seed)
    gate, up, dy = rnd(rng, s["T"], s["D"]), rnd(rng, s["T"], s["D"]), rnd(rng, s["T"], s["D"])
    dg, du = bw.swiglu_backward(gate, up, dy)
    want = autograd(lambda a, b: F.silu(a) * b, [gate, up], dy)
    close(dg, want[0]), close(du, want[1])
    (want_r,) = autograd(F.relu, [gate], dy)
    close(bw.relu_backward(gate, dy), want_r)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("norm", [True, False])
def test_router_topk_scatter(seed, norm):
    rng, s = shapes(seed)
    t, e, d = s["T"], s["E"], s["D"]
    k = max(1, e // 2)
    logits = rnd(rng, t, e)
    probs = ops.softmax(logits)
    ids, vals = ops.top_k(probs, k)
    dgates = rnd(rng, t, e)
    dw = bw.scatter_gates_backward(ids, dgates)
    if norm:
        dw = bw.renormalize_backward(vals, dw)
    dlogits = bw.softmax_backward(probs, bw.top_k_backward(ids, dw, e))
    tid = torch.tensor(ids)

    def route(lg):
        p = torch.softmax(lg, -1)
        w = p.gather(1, tid)
        if norm:
            w = w / w.sum(-1, keepdim=True)
        return torch.zeros(t, e, dtype=torch.float64).scatter(1, tid, w)

    (want,) = autograd(route, [logits], dgates)
    close(dlogits, want)
    # one expert: rows gathered, scaled by its gate, scattered back
    rows = np.flatnonzero((ids == 0).any(axis=1))
    if rows.size:
        x, y, gate, dz = rnd(rng, t, d), rnd(rng, rows.size, d), rnd(rng, rows.size), rnd(rng, t, d)
        dy, dgate = bw.scatter_rows_backward(rows, y, gate, dz)
        tr = torch.tensor(rows)
        want = autograd(lambda a, b: torch.zeros(t, d, dtype=torch.float64).index_add(0, tr, b[:, None] * a), [y, gate], dz)
        close(dy, want[0]), close(dgate, want[1])
        dxe = rnd(rng, rows.size, d)
        (want_x,) = autograd(lambda a: a[tr], [x], dxe)
        close(bw.gather_rows_backward(rows, dxe, t), want_x)


@pytest.mark.parametrize("seed", SEEDS)
def test_cross_entropy_and_logprob(seed):
    rng, s = shapes(seed)
    t, v = s["T"] + 2, s["V"]
    logits = rnd(rng, t, v) * 3
    labels = rng.integers(0, v, t)
    labels[rng.random(t) < 0.3] = -100
    labels[0] = 1
    tl = torch.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(tl, torch.tensor(labels), ignore_index=-100)
    loss.backward()
    ce = bw.token_cross_entropy(logits, labels)
    close(np.array(ce.sum() / (labels != -100).sum()), np.array(loss.item()))
    close(bw.cross_entropy_backward(logits, labels, 1.0), tl.grad.numpy())
    dlp = rnd(rng, t)
    keep = torch.tensor(labels != -100)
    (want,) = autograd(lambda a: torch.where(keep, torch.log_softmax(a, -1).gather(
        1, torch.tensor(np.where(labels == -100, 0, labels))[:, None])[:, 0], 0.0), [logits], dlp)
    close(bw.token_logprob_backward(logits, labels, dlp), want)


@pytest.mark.parametrize("seed", SEEDS)
def test_load_balancing(seed):
    rng, s = shapes(seed)
    e, k = s["E"], max(1, s["E"] // 2)
    logits = [rnd(rng, s["T"], e) for _ in range(2)]
    probs = [ops.softmax(x) for x in logits]
    ids = [ops.top_k(p, k)[0] for p in probs]
    aux, f, p = bw.load_balancing_loss(probs, ids, e)
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    hf = load_balancing_loss_func(tuple(torch.tensor(x) for x in logits), e, k)  # accumulates in float32
    assert abs(aux - hf.item()) <= 1e-6 * abs(hf.item())
    assert abs(f.sum() - k) < 1e-12 and abs(p.sum() - 1) < 1e-12
    tl = [torch.tensor(x, requires_grad=True) for x in logits]  # the same formula in float64, for the gradient
    tp = [torch.softmax(x, -1) for x in tl]
    counts = sum(torch.bincount(torch.topk(x, k, -1).indices.reshape(-1), minlength=e) for x in tp)
    rows = 2 * s["T"]
    want = e * torch.sum(counts.double() / rows * sum(x.sum(0) for x in tp) / rows)
    close(np.array(aux), np.array(want.item()))
    want.backward()
    row = bw.load_balancing_backward(f, 2 * s["T"], 1.0)
    for x, pr, t in zip(logits, probs, tl):
        close(bw.softmax_backward(pr, np.broadcast_to(row, pr.shape)), t.grad.numpy())
