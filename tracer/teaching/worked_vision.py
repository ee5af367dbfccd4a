"""Worked cells of Qwen3-VL's vision path (seed 002): the image processor (decode, bicubic resize, normalise,
patches), the tower (patch embedding, position table, 2-D rotary tables, LayerNorm, fused QKV, GELU, the 2×2
merge) and where its tokens enter the text model (splice, M-RoPE ids and tables, DeepStack).

Like ``tracer.teaching.worked`` each worker redoes one cell from the recorded inputs and the checkpoint rows it needs;
the ops the vision blocks share with the text model (RoPE, scores, softmax, context, adds) are the text workers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tracer.teaching.worked_core import Cell, Worker, fold, linear_line, num, plus_bias, short, sum_terms

PILLOW_BITS = 22  # Pillow's fixed-point precision for 8-bit images: 32 − 8 − 2 bits
AXES = "thw"  # M-RoPE's three position ids


def _vc(c: Cell) -> Any:
    """The trace's VisionConfig (``Params`` reads it from the meta)."""
    return c.params.vision


def _image_of(name: str) -> int:
    """``vision.images.{k}.…`` -> k."""
    return int(name.split(".")[2])


def _grids(c: Cell) -> np.ndarray:
    """Each image's patch grid (t, gh, gw): the ``vision.grid_thw`` record."""
    return np.asarray(c.get("vision.grid_thw"))


def _locate(grids: np.ndarray, n: int) -> tuple[int, int, int, int, int]:
    """Patch n of all images -> (image k, frame f, patch q within the frame, gh, gw)."""
    start = 0
    for k, (t, gh, gw) in enumerate(grids.tolist()):
        size = t * gh * gw
        if n < start + size:
            f, q = divmod(n - start, gh * gw)
            return k, f, q, gh, gw
        start += size
    raise IndexError(n)


def _block_rc(q: int, gw: int, m: int) -> tuple[int, int]:
    """Patch q of a frame -> its (row, col): patches come in m×m blocks, blocks and their patches in raster
    order."""
    block, within = divmod(q, m * m)
    br, bc = divmod(block, gw // m)
    return br * m + within // m, bc * m + within % m


# ---------------------------------------------------------------------------------------------------
# The image processor
# ---------------------------------------------------------------------------------------------------


def _op_image_decode(c: Cell) -> tuple[list[str], float]:
    """A decoded pixel: the input of the vision path, where it comes from."""
    y, x, ch = c.index
    value = float(c.trace[c.name][y, x, ch])
    return [c.tr("worked.image_pixel", cell=c.label(), k=_image_of(c.name), y=y, x=x, ch="RGB"[ch],
                 v=num(value))], value


def _bicubic(x: float) -> float:
    """Pillow's bicubic kernel, a = −0.5."""
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _taps(in_size: int, out_size: int, i: int) -> tuple[int, list[int]]:
    """Output pixel i of one pass -> the first input pixel it reads and its whole-number weights (Pillow's
    ``precompute_coeffs`` and ``normalize_coeffs_8bpc``, written out in the same order)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    center = (i + 0.5) * scale
    ss = 1.0 / filterscale
    first = max(int(center - support + 0.5), 0)
    count = min(int(center + support + 0.5), in_size) - first
    weights = [_bicubic((x + first - center + 0.5) * ss) for x in range(count)]
    total = 0.0
    for w in weights:
        total += w
    k = [w / total if total != 0.0 else w for w in weights]
    return first, [int(-0.5 + v * (1 << PILLOW_BITS)) if v < 0 else int(0.5 + v * (1 << PILLOW_BITS)) for v in k]


def _pass(values: np.ndarray, weights: list[int]) -> tuple[int, int]:
    """One pass at one pixel: the fixed-point sum (with its rounding half) and the 8-bit result."""
    total = (1 << (PILLOW_BITS - 1)) + sum(int(v) * k for v, k in zip(values, weights))
    return total, min(max(total >> PILLOW_BITS, 0), 255)


def _pass_line(label: str, values: np.ndarray, weights: list[int]) -> tuple[str, int]:
    """One pass written out: ``label = ⌊(Σ v·K + 2²¹) / 2²²⌋ = …``, and its 8-bit result."""
    total, out = _pass(values, weights)
    terms = fold([f"{int(v)}·{num(k, True)}" for v, k in zip(values, weights)])
    return f"{label} = ⌊({terms} + 2²¹) / 2²²⌋ = ⌊{total} / {1 << PILLOW_BITS}⌋ = {out}", out


def _op_resize(c: Cell) -> tuple[list[str], float]:
    """Pillow's bicubic resize of 8-bit RGB: a horizontal pass into a whole-number image, then a vertical one."""
    y, x, ch = c.index
    rgb = c.rec(0)[:, :, ch]
    h, w = rgb.shape
    h2, w2 = c.trace[c.name].shape[:2]
    if (h, w) == (h2, w2):
        value = float(rgb[y, x])
        return [c.tr("worked.resize_copy", cell=c.label(), h=h, w=w, v=num(value))], value
    lines = [c.tr("worked.bicubic", h=h, w=w, h2=h2, w2=w2)]
    top, vertical = _taps(h, h2, y) if h != h2 else (y, [1 << PILLOW_BITS])
    left, horizontal = _taps(w, w2, x) if w != w2 else (x, [1 << PILLOW_BITS])
    rows = []
    for yy in range(top, top + len(vertical)):
        if w != w2:
            line, out = _pass_line(f"h[{yy}]", rgb[yy, left:left + len(horizontal)], horizontal)
            lines.append(line + f"   (x = {left}…{left + len(horizontal) - 1})")
        else:
            out = int(rgb[yy, x])
        rows.append(out)
    if h != h2:
        line, value = _pass_line(c.label(), np.array(rows), vertical)
        lines.append(line + f"   (y = {top}…{top + len(vertical) - 1})")
    else:
        value = rows[0]
        lines.append(f"{c.label()} = h[{y}] = {value}")
    return lines, float(value)


def _op_rescale_normalize(c: Cell) -> tuple[list[str], float]:
    """x' = (x/255 − mean_c) / std_c."""
    ch, y, x = c.index
    vc = _vc(c)
    pixel = float(c.rec(0)[y, x, ch])
    mean, std = float(vc.image_mean[ch]), float(vc.image_std[ch])
    value = (pixel / 255 - mean) / std
    return [c.tr("worked.normalize", y=y, x=x, ch=ch, p=num(pixel), mean=num(mean), std=num(std)),
            f"{c.label()} = ({num(pixel)}/255 − {num(mean)}) / {num(std)} = ({num(pixel / 255)} − {num(mean)}) / "
            f"{num(std)} = {num(value)}"], value


def _op_patchify(c: Cell) -> tuple[list[str], float]:
    """``vision.images.{k}.patches``: one pixel of the normalised image; ``vision.pixel_values``: the images'
    patch rows stacked."""
    n, j = c.index
    if c.name == "vision.pixel_values":
        offset = 0
        for k, source in enumerate(c.inputs):
            rows = c.trace[source].shape[0]
            if n < offset + rows:
                value = float(c.get(source)[n - offset, j])
                return [c.tr("worked.stacked", cell=c.label(), n=n - offset, k=k, v=num(value))], value
            offset += rows
        value = float(c.trace[c.name][n, j])  # a backend that did not record each image's patches
        return [c.tr("worked.processor", cell=c.label(), v=num(value))], value
    vc = _vc(c)
    image = c.rec(0)
    p, m = vc.patch_size, vc.spatial_merge_size
    ch, frame, py, px = np.unravel_index(j, (image.shape[0], vc.temporal_patch_size, p, p))
    r, col = _block_rc(n, image.shape[2] // p, m)
    y, x = r * p + int(py), col * p + int(px)
    value = float(image[ch, y, x])
    return [c.tr("worked.patch_pixel", n=n, k=_image_of(c.name), r=r, col=col, j=j, ch=int(ch), t=int(frame),
                 py=int(py), px=int(px)),
            f"{c.label()} = normalized[{int(ch)}, {y}, {x}] = {num(value)}"], value


def _op_grid_thw(c: Cell) -> tuple[list[str], float]:
    """(t, gh, gw) = (1, H'/P, W'/P) from the resized size in the meta."""
    k, axis = c.index
    height, width = c.trace.meta["vision"]["resized"][k]
    p = _vc(c).patch_size
    grid = (1, height // p, width // p)
    value = float(grid[axis])
    return [c.tr("worked.grid", k=k, h=height, w=width, p=p, gh=grid[1], gw=grid[2]),
            f"{c.label()} = {num(value)}"], value


# ---------------------------------------------------------------------------------------------------
# The tower
# ---------------------------------------------------------------------------------------------------


def _op_patch_embed(c: Cell) -> tuple[list[str], float]:
    """E[n,o] = Σ_k X[n,k]·W[o,k] + b[o]: the Conv3d kernel of output channel o, flattened (c, t, y, x)."""
    return _linear_plus_bias(c, "pixel_values")


def _linear_plus_bias(c: Cell, x_name: str) -> tuple[list[str], float]:
    """y[n,o] = Σ_d x[n,d]·W[d,o] + b[o], the input row named ``x_name``."""
    n, o = c.index
    lines, value = linear_line(c, c.rec(0)[n], c.input(1), o, c.param(1, o), f"{x_name}[{n},d]")
    line, value = plus_bias(c, value, 2, o)
    return lines + [line], value


def _op_pos_interp(c: Cell) -> tuple[list[str], float]:
    """p[n,d] = Σ of 4 rows of the learned table, bilinear (align_corners) at the patch's place on the table."""
    n, d = c.index
    vc = _vc(c)
    side = round(vc.num_position_embeddings ** 0.5)
    k, _, q, gh, gw = _locate(_grids(c), n)
    r, col = _block_rc(q, gw, vc.spatial_merge_size)
    y = (side - 1.0 if r == gh - 1 else r * ((side - 1) / (gh - 1))) if gh > 1 else 0.0
    x = (side - 1.0 if col == gw - 1 else col * ((side - 1) / (gw - 1))) if gw > 1 else 0.0
    y0, x0 = math.floor(y), math.floor(x)
    y1, x1 = min(y0 + 1, side - 1), min(x0 + 1, side - 1)
    dy, dx = y - y0, x - x0
    taps = [(y0 * side + x0, (1 - dy) * (1 - dx)), (y0 * side + x1, (1 - dy) * dx),
            (y1 * side + x0, dy * (1 - dx)), (y1 * side + x1, dy * dx)]
    table = c.input(0)
    rows = [float(c.weight(table, i)[d]) for i, _ in taps]
    value = float(sum(w * v for (_, w), v in zip(taps, rows)))
    return [c.tr("worked.pos_grid", n=n, k=k, r=r, col=col, gh=gh, gw=gw, s=side, y=num(y), x=num(x)),
            c.tr("worked.pos_taps", taps=", ".join(f"T[{i}]·{num(w)}" for i, w in taps)),
            f"{c.label()} = " + " + ".join(f"{num(w)}·{num(v, True)}" for (_, w), v in zip(taps, rows))
            + f" = {num(value)}"], value


def _op_vision_rope_ids(c: Cell) -> tuple[list[str], float]:
    """(row, col) of a patch in its image's grid."""
    n, axis = c.index
    k, _, q, _, gw = _locate(_grids(c), n)
    r, col = _block_rc(q, gw, _vc(c).spatial_merge_size)
    value = float((r, col)[axis])
    return [c.tr("worked.patch_rc", cell=c.label(), n=n, q=q, k=k, r=r, col=col, v=num(value))], value


def _op_vision_rope(c: Cell) -> tuple[list[str], float]:
    """cos / sin of φ[n] = [row·ω, col·ω] laid out twice (rotate_half), ω_j = θ^(−4j/Dh)."""
    n, d = c.index
    vc = _vc(c)
    dh = c.trace[c.name].shape[-1]
    half = dh // 2
    pair = d % half
    axis, j = divmod(pair, half // 2)
    position = int(c.rec(0)[n, axis])
    omega = vc.rope_theta ** (-4 * j / dh)
    angle = position * omega
    fn = "cos" if c.name.endswith("cos") else "sin"
    value = math.cos(angle) if fn == "cos" else math.sin(angle)
    which = c.tr("worked.row" if axis == 0 else "worked.col")
    return [c.tr("worked.vrope_angle", d=d, pair=pair, axis=which, j=j, dh=dh, w=num(omega), p=position,
                 a=num(angle)),
            f"{c.label()} = {fn}({num(angle)}) = {num(value)}"], value


def _op_cu_seqlens(c: Cell) -> tuple[list[str], float]:
    """cu[k] = the patches of the first k frames."""
    (k,) = c.index
    lengths = [gh * gw for t, gh, gw in _grids(c).tolist() for _ in range(t)]
    value = float(sum(lengths[:k]))
    terms = fold([str(v) for v in lengths[:k]]) if k else "0"
    return [c.tr("worked.cu_seqlens", cell=c.label(), k=k), f"= {terms} = {num(value)}"], value


def _op_window_ids(c: Cell) -> tuple[list[str], float]:
    """The window of a patch: its merged token's place on the merged grid, in ws × ws windows, frame by frame."""
    (n,) = c.index
    vc = _vc(c)
    m = vc.spatial_merge_size
    ws = vc.window_size // m // vc.patch_size
    grids = _grids(c)
    k, f, q, gh, gw = _locate(grids, n)
    offset = 0
    for t, h, w in grids[:k].tolist():
        offset += t * -(-(h // m) // ws) * -(-(w // m) // ws)
    lh, lw = gh // m, gw // m
    nh, nw = -(-lh // ws), -(-lw // ws)
    unit = q // (m * m)
    ur, uc = divmod(unit, lw)
    value = float(offset + f * nh * nw + (ur // ws) * nw + uc // ws)
    return [c.tr("worked.window", n=n, k=k, u=unit, r=ur, col=uc, lh=lh, lw=lw, ws=ws, nw=nw),
            f"{c.label()} = {offset} + {f}·{nh}·{nw} + ({ur} // {ws})·{nw} + {uc} // {ws} = {num(value)}"], value


def _op_segment_mask(c: Cell) -> tuple[list[str], float]:
    """0 where two patches share a frame (``vision.cu_seqlens``) or a window (``vision.window_ids``), else −∞."""
    n, m = c.index
    source = c.input(0)
    if source == "vision.window_ids":
        windows = np.asarray(c.get(source))
        a, b = int(windows[n]), int(windows[m])
        what = c.tr("worked.a_window")
    else:
        cu = np.asarray(c.get(source))
        a, b = (int(np.searchsorted(cu, i, side="right")) - 1 for i in (n, m))
        what = c.tr("worked.a_frame")
    if a == b:
        return [c.tr("worked.segment_same", cell=c.label(), n=n, m=m, what=what, a=a)], 0.0
    value = float(np.finfo(np.dtype(c.info["dtype"])).min)
    return [c.tr("worked.segment_other", cell=c.label(), n=n, m=m, what=what, a=a, b=b, v=num(value))], value


def _op_layer_norm(c: Cell) -> tuple[list[str], float]:
    """y = (x − mean) / √(var + ε) · w + b over the row."""
    from tracer.vision.forward import LN_EPS

    *lead, j = c.index
    x = c.rec(0)[tuple(lead)]
    w, b = c.param(1, 0), c.param(2, 0)
    mean = float(np.mean(x))
    var = float(np.mean((x - mean) ** 2))
    r = 1.0 / math.sqrt(var + LN_EPS)
    value = float((x[j] - mean) * r * w[j] + b[j])
    return [c.tr("worked.ln_mean", n=len(x)) + f" = ({sum_terms(x)}) / {len(x)} = {num(mean)}",
            c.tr("worked.ln_var") + f" = ({fold([f'({num(v)} − {num(mean, True)})²' for v in x])}) / {len(x)}"
            f" = {num(var)}",
            f"r = 1/√({num(var)} + {LN_EPS:g}) = {num(r)}",
            f"{c.label()} = (x[{j}] − mean)·r·w[{j}] + b[{j}] = ({num(x[j])} − {num(mean, True)})·{num(r)}·"
            f"{num(w[j], True)} + {num(b[j], True)} = {num(value)}"], value


def _op_linear_bias(c: Cell) -> tuple[list[str], float]:
    """y[n,o] = Σ_d x[n,d]·W[d,o] + b[o] (fused QKV, the MLPs, the mergers)."""
    return _linear_plus_bias(c, short(c.input(0)))


def _op_split_qkv(c: Cell) -> tuple[list[str], float]:
    """One head's entry of Q, K or V: a column of the fused projection."""
    h, n, j = c.index
    qkv = c.rec(0)
    part = ("q_proj", "k_proj", "v_proj").index(c.short)
    width = qkv.shape[1] // 3
    dh = c.trace[c.name].shape[-1]
    col = part * width + h * dh + j
    value = float(qkv[n, col])
    return [c.tr("worked.split_qkv", part=part, d=width, h=h, dh=dh, j=j, col=col, which="QKV"[part]),
            f"{c.label()} = qkv[{n}, {col}] = {num(value)}"], value


def _op_gelu_tanh(c: Cell) -> tuple[list[str], float]:
    """½x(1 + tanh(√(2/π)(x + 0.044715x³)))."""
    x = float(c.rec(0)[c.index])
    inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    value = 0.5 * x * (1 + math.tanh(inner))
    return [f"u = √(2/π)·(x + 0.044715·x³) = 0.7979·({num(x)} + 0.044715·{num(x, True)}³) = {num(inner)}",
            f"{c.label()} = ½·x·(1 + tanh u) = 0.5·{num(x, True)}·(1 + {num(math.tanh(inner), True)}) = "
            f"{num(value)}"], value


def _op_gelu_erf(c: Cell) -> tuple[list[str], float]:
    """½x(1 + erf(x/√2))."""
    x = float(c.rec(0)[c.index])
    e = math.erf(x / math.sqrt(2))
    value = 0.5 * x * (1 + e)
    return [f"erf(x/√2) = erf({num(x / math.sqrt(2))}) = {num(e)}",
            f"{c.label()} = ½·x·(1 + erf(x/√2)) = 0.5·{num(x, True)}·(1 + {num(e, True)}) = {num(value)}"], value


def _op_merge_patches(c: Cell) -> tuple[list[str], float]:
    """Z[k] = the m² consecutive patch rows of block k side by side."""
    k, j = c.index
    x = c.rec(0)
    width = x.shape[1]
    per = c.trace[c.name].shape[1] // width
    part, d = divmod(j, width)
    row = per * k + part
    value = float(x[row, d])
    return [c.tr("worked.merge", k=k, first=per * k, last=per * k + per - 1, j=j, part=part, dv=width, d=d),
            f"{c.label()} = {short(c.input(0))}[{row}, {d}] = {num(value)}"], value


# ---------------------------------------------------------------------------------------------------
# Into the text model
# ---------------------------------------------------------------------------------------------------


def _image_rows(c: Cell) -> np.ndarray:
    """[T] bool: the positions of this forward pass holding ``<|image_pad|>``."""
    return np.asarray(c.get(f"{c.prefix}tokens")) == _vc(c).image_token_id


def _op_splice(c: Cell) -> tuple[list[str], float]:
    """An image position takes the merger's next row; a text position keeps its embedding."""
    t, d = c.index
    image = _image_rows(c)
    if image[t]:
        m = int(np.sum(image[:t]))
        value = float(c.rec(1)[m, d])
        return [c.tr("worked.splice_image", cell=c.label(), t=t, m=m, d=d, v=num(value))], value
    value = float(c.rec(0)[t, d])
    return [c.tr("worked.splice_text", cell=c.label(), t=t, d=d, v=num(value))], value


def _op_mrope_ids(c: Cell) -> tuple[list[str], float]:
    """Text tokens: (p, p, p) with the running position p; an image's tokens (s + frame, s + row, s + col) on its
    merged grid; afterwards p continues after the image's larger merged side. A decode step: index + rope delta."""
    axis, t = c.index
    vc = _vc(c)
    m = vc.spatial_merge_size
    if c.prefix:
        prompt = np.asarray(c.get("rope.position_ids"))
        length = prompt.shape[1]
        index = length + int(c.prefix.split(".")[1]) - 1 + t
        delta = int(prompt.max()) + 1 - length
        value = float(index + delta)
        return [c.tr("worked.mrope_decode", i=index, delta=num(delta), top=int(prompt.max()), n=length),
                f"{c.label()} = {index} + {num(delta, True)} = {num(value)}"], value
    image = _image_rows(c)
    grids = _grids(c).tolist() if "vision.grid_thw" in c.trace else []
    cur, i, k = 0, 0, 0
    while True:
        j = i
        while j < len(image) and image[j] == image[i]:
            j += 1
        if t < j:
            break
        if image[i]:
            cur += max(grids[k][1], grids[k][2]) // m
            k += 1
        else:
            cur += j - i
        i = j
    if not image[t]:
        value = float(cur + t - i)
        return [c.tr("worked.mrope_text", t=t, i=i, s=cur),
                f"{c.label()} = {cur} + ({t} − {i}) = {num(value)}"], value
    frames, gh, gw = grids[k]
    lh, lw = gh // m, gw // m
    f, rest = divmod(t - i, lh * lw)
    r, col = divmod(rest, lw)
    value = float(cur + (f, r, col)[axis])
    return [c.tr("worked.mrope_image", t=t, q=t - i, k=k, lh=lh, lw=lw, s=cur, f=f, r=r, col=col),
            f"{c.label()} = s + {AXES[axis]} = {cur} + {(f, r, col)[axis]} = {num(value)}"], value


def _op_mrope_table(c: Cell) -> tuple[list[str], float]:
    """a·cos / a·sin of φ = pos[axis(i), t]·ω_i, pair i turned by the t, h or w id (interleaved)."""
    t, d = c.index
    section = _vc(c).mrope_section
    positions, omega, factor = c.rec(0), c.rec(1), float(c.rec(2))
    pair = d % len(omega)
    axis = 1 if pair % 3 == 1 and pair < 3 * section[1] else 2 if pair % 3 == 2 and pair < 3 * section[2] else 0
    position = int(positions[axis, t])
    angle = float(np.float32(position) * np.float32(omega[pair]))  # float32, as the model (and transformers) do
    fn = "cos" if c.info["op"] == "mrope_cos" else "sin"
    value = factor * (math.cos(angle) if fn == "cos" else math.sin(angle))
    scaled = "" if factor == 1 else f"{num(factor)} · "
    return [c.tr("worked.mrope_angle", d=d, i=pair, axis=AXES[axis], sec=list(section), p=position,
                 w=num(float(omega[pair])), a=num(angle)),
            f"{c.label()} = {scaled}{fn}({num(angle)}) = {num(value)}"], value


def _op_deepstack_add(c: Cell) -> tuple[list[str], float]:
    """The block output plus the DeepStack feature row at an image position; unchanged at a text one."""
    t, d = c.index
    image = _image_rows(c)
    before = float(c.rec(0)[t, d])
    if not image[t]:
        return [c.tr("worked.deepstack_text", cell=c.label(), t=t, d=d, v=num(before))], before
    m = int(np.sum(image[:t]))
    feature = float(c.rec(1)[m, d])
    value = before + feature
    return [c.tr("worked.deepstack_image", t=t, m=m, feature=c.input(1)),
            f"{c.label()} = resid_post[{t},{d}] + out[{m},{d}] = {num(before)} + {num(feature, True)} = {num(value)}"
            ], value


VISION_WORKERS: dict[str, Worker] = {
    "image_decode": _op_image_decode, "resize_bicubic": _op_resize, "rescale_normalize": _op_rescale_normalize,
    "patchify": _op_patchify, "grid_thw": _op_grid_thw, "patch_embed": _op_patch_embed, "pos_interp": _op_pos_interp,
    "vision_rope_ids": _op_vision_rope_ids, "vision_rope": _op_vision_rope, "cu_seqlens": _op_cu_seqlens,
    "window_ids": _op_window_ids, "segment_mask": _op_segment_mask, "layer_norm": _op_layer_norm,
    "linear_bias": _op_linear_bias, "split_qkv": _op_split_qkv, "gelu_tanh": _op_gelu_tanh, "gelu_erf": _op_gelu_erf,
    "merge_patches": _op_merge_patches, "splice": _op_splice, "mrope_ids": _op_mrope_ids,
    "mrope_cos": _op_mrope_table, "mrope_sin": _op_mrope_table, "deepstack_add": _op_deepstack_add,
}
