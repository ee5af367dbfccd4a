"""The trace schema (v2): every record name, its shape, the op that makes it, and what it means.

This table is the one source of truth for what a trace record is (``docs/trace-schema.md`` is the prose
version). Backends emit these names; viewers read formulas and explanations from here via ``__meta__``.
Name patterns use ``{i}`` for a layer, ``{e}`` for an expert and ``{s}`` for a generation step; a decode
step's forward records are the same names under the prefix ``decode.{s}.``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tracer.i18n import catalog, normalize, t

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Op:
    """One operation: its formula as LaTeX (for the app) and as plain text (for the terminal)."""

    latex: str
    text: str


OPS: dict[str, Op] = {
    "input": Op(r"\text{ids} = \mathrm{tokenize}(\text{prompt})", "ids = tokenize(prompt)"),
    "one_hot": Op(r"X_{\text{onehot}}[t, v] = [v = \text{ids}_t]", "X_onehot[t, v] = 1 if v == ids[t] else 0"),
    "embedding": Op(r"X^{(0)} = X_{\text{onehot}} E", "X(0) = X_onehot · E  (row ids[t] of E)"),
    "rope_cos": Op(r"C_{t,d} = a\cos\varphi_{t,\,d \bmod D_h/2},\ \varphi_{t,j} = p_t\,\omega_j,\ \omega_j = \theta^{-2j/D_h}",
                   "C[t,d] = a · cos(φ[t, d mod Dh/2]),  φ[t,j] = pos[t] · ω_j,  ω_j = θ^(−2j/Dh)  "
                   "(ω = rope.inv_freq after any scaling, a = rope.attention_factor)"),
    "rope_sin": Op(r"S_{t,d} = a\sin\varphi_{t,\,d \bmod D_h/2},\ \varphi_{t,j} = p_t\,\omega_j,\ \omega_j = \theta^{-2j/D_h}",
                   "S[t,d] = a · sin(φ[t, d mod Dh/2]),  φ[t,j] = pos[t] · ω_j,  ω_j = θ^(−2j/Dh)  "
                   "(ω = rope.inv_freq after any scaling, a = rope.attention_factor)"),
    "rope_inv_freq": Op(r"\omega_j = \theta^{-2j/D_h}\ \text{(linear: } /s\text{; dynamic: } \theta';\ \text{YaRN: ramp between } \omega_j \text{ and } \omega_j/s)",
                        "ω_j = θ^(−2j/Dh)  (linear: ÷factor; dynamic: θ'; YaRN: ramp between ω_j and ω_j/factor)"),
    "rope_attention_factor": Op(r"a = 0.1 \ln s + 1\ \text{(YaRN)},\ 1\ \text{otherwise}",
                                "a = 0.1·ln(factor) + 1 (YaRN), 1 otherwise"),
    "sliding_window_mask": Op(r"M_{ts} = \begin{cases}0 & t - W < s \le t\\ -\infty & \text{otherwise}\end{cases}",
                              "M[t,s] = 0 if t − W < s ≤ t else −∞ (sliding window W)"),
    "rms_norm": Op(r"y = \frac{x}{\sqrt{\mathrm{mean}(x^2) + \epsilon}} \odot w",
                   "y = x / sqrt(mean(x²) + ε) ⊙ w"),
    "l2_norm": Op(r"y = \frac{x}{\lVert x \rVert_2} \odot w", "y = x / ‖x‖₂ ⊙ w"),
    "linear_heads": Op(r"Y = \mathrm{split\_heads}(X W^\top)", "Y = split_heads(X · Wᵀ)"),
    "apply_rope": Op(r"x' = x \odot \cos\varphi + \mathrm{rotate\_half}(x) \odot \sin\varphi",
                     "x' = x ⊙ cos φ + rotate_half(x) ⊙ sin φ"),
    "kv_append": Op(r"K_{\text{cache}} = [K_{\text{past}};\ K_{\text{new}}]", "K_cache = concat(K_past, K_new)"),
    "attention_scores": Op(r"S_h = \frac{Q_h K_{g(h)}^\top}{\sqrt{D_h}}", "S_h = Q_h · K_g(h)ᵀ / sqrt(Dh)"),
    "causal_mask": Op(r"M_{ts} = \begin{cases}0 & s \le t + (S - T)\\ -\infty & \text{otherwise}\end{cases}",
                      "M[t,s] = 0 if s ≤ t + (S − T) else −∞ (a large negative number); "
                      "query t sits at position S − T + t"),
    "add": Op(r"Y = A + B", "Y = A + B"),
    "softmax": Op(r"P_{tj} = \frac{e^{X_{tj}}}{\sum_{j'} e^{X_{tj'}}}", "P[t,j] = exp(X[t,j]) / Σ_j' exp(X[t,j'])  (row softmax)"),
    "attention_context": Op(r"C_h = A_h V_{g(h)}", "C_h = A_h · V_g(h)"),
    "linear": Op(r"Y = X W^\top", "Y = X · Wᵀ"),
    "linear_merge": Op(r"O = \mathrm{concat}_h(C_h)\, W_O^\top", "O = concat_h(C_h) · W_Oᵀ"),
    "swiglu": Op(r"F = \mathrm{silu}(G) \odot U,\ \mathrm{silu}(t) = t\,\sigma(t)", "F = silu(G) ⊙ U,  silu(t) = t·σ(t)"),
    "relu": Op(r"A = \max(H, 0)", "A = max(H, 0)"),
    "router": Op(r"L = X W_r^\top\ (+\, b)", "L = X · W_rᵀ (+ b)"),
    "top_k": Op(r"\text{ids}_t = \mathrm{argtop}_k(P_t)", "ids[t] = the k experts with the largest P[t]"),
    "top_k_weights": Op(r"w_{t} = \mathrm{softmax}(L_{t,\text{ids}_t}) = \frac{P_{t,\text{ids}_{tj}}}{\sum_{j'} P_{t,\text{ids}_{tj'}}}",
                        "w[t] = softmax(L[t, ids[t]]) = P[t, ids[t,j]] / Σ_j' P[t, ids[t,j']]"),
    "top_k_weights_raw": Op(r"w_{tj} = P_{t,\text{ids}_{tj}}", "w[t,j] = P[t, ids[t,j]]"),
    "scatter_gates": Op(r"G_{t,\text{ids}_{tj}} = w_{tj}", "G[t, ids[t,j]] = w[t,j], 0 elsewhere"),
    "route_rows": Op(r"\text{rows}_e = \{t : e \in \text{ids}_t\}", "rows_e = tokens that chose expert e"),
    "expert_linear": Op(r"H_e = X[\text{rows}_e] W^\top", "H_e = X[rows_e] · Wᵀ"),
    "expert_weighted": Op(r"Z_e = D_e Y_e,\ D_e = \mathrm{diag}(G_{:,e})", "Z_e = diag(G[:, e]) · Y_e"),
    "sum_experts": Op(r"X_{\text{moe-out}} = \sum_e Z_e", "X_moe_out = Σ_e Z_e"),
    "last_row": Op(r"\ell = \text{logits}[T-1]", "ℓ = logits[last position]"),
    "suppress": Op(r"\ell'_v = \begin{cases}-\infty & v \in \text{suppressed}\\ \ell_v\end{cases}",
                   "ℓ'[v] = −∞ for suppressed tokens, else ℓ[v]"),
    "greedy_probs": Op(r"p = \mathrm{onehot}(\arg\max \ell')", "p = onehot(argmax ℓ')"),
    "sampling_probs": Op(r"p = \mathrm{renorm}(\mathrm{top\text{-}p}(\mathrm{top\text{-}k}(\mathrm{softmax}(\ell'/T))))",
                         "p = softmax(ℓ'/T), keep top-k then top-p, renormalise"),
    "logit_lens": Op(r"\ell^{(i)} = \mathrm{RMSNorm}_{\text{final}}(X^{(i)})\, W_U^\top",
                     "ℓ(i) = RMSNorm_final(X(i)) · W_Uᵀ  (block i's stream through the final norm and LM head)"),
    "lens_top_ids": Op(r"\text{ids}_t = \mathrm{argtop}_{20}\,\ell^{(i)}_t", "ids[t] = the 20 largest ℓ(i)[t]"),
    "lens_top_probs": Op(r"p_{tj} = \mathrm{softmax}(\ell^{(i)}_t)_{\text{ids}_{tj}}", "p[t,j] = softmax(ℓ(i)[t])[ids[t,j]]"),
    "attrib_target": Op(r"c_t = \arg\max_v \text{logits}_{t,v}", "c[t] = argmax logits[t]  (the top prediction)"),
    "frozen_rms_scale": Op(r"s_t = 1 / \sqrt{\mathrm{mean}(x_t^2) + \epsilon}", "s[t] = 1 / sqrt(mean(x[t]²) + ε), held fixed"),
    "attrib_dot": Op(r"a_t = y_t \cdot u_t,\ u_t = s_t\, (w_{\text{norm}} \odot W_U[c_t])",
                     "a[t] = y[t] · u[t],  u[t] = s[t] · (w_norm ⊙ W_U[c[t]])"),
    "attrib_heads": Op(r"a_{ht} = (C_{h,t} W_{O,h}^\top) \cdot u_t", "a[h,t] = (C_h[t] · W_O,hᵀ) · u[t]"),
    "attrib_experts": Op(r"a_{et} = G_{te}\, \mathrm{FFN}_e(x_t) \cdot u_t", "a[e,t] = G[t,e] · FFN_e(x[t]) · u[t]  (0 if not routed)"),
    "quant_error": Op(r"\big[\max|W-R|,\ \overline{|W-R|},\ \lVert W-R\rVert_F / \lVert R\rVert_F,\ \text{bits/weight}\big]",
                      "[max|W−R|, mean|W−R|, ‖W−R‖_F / ‖R‖_F, bits per weight]"),
    "choose": Op(r"\text{next} = \arg\max p \text{ (greedy) or } \text{next} \sim p", "next = argmax p (greedy) or draw from p"),
    # Training (tracer train-step): loss, backward, optimizer, preference objectives.
    "label_shift": Op(r"y_t = \text{ids}_{t+1}\ \text{if counted, else } -100", "labels[t] = ids[t+1] if counted else −100"),
    "token_cross_entropy": Op(r"\ell_t = -\log \mathrm{softmax}(z_t)_{y_t}", "ℓ[t] = −log softmax(logits[t])[labels[t]]  (0 where −100)"),
    "mean_loss": Op(r"L = \frac{1}{N}\sum_{t: y_t \ne -100} \ell_t\ (+\, c\,\mathcal{L}_{\text{aux}})",
                    "L = Σ ℓ[t] / N over counted tokens (+ coef · aux for MoE)"),
    "aux_f": Op(r"f_i = \frac{\#\{\text{top-}k\text{ slots} = i\}}{R}", "f[i] = (# top-k slots given to expert i) / R rows"),
    "aux_p": Op(r"P_i = \frac{1}{R}\sum_r p_{r,i}", "P[i] = Σ_r p[r,i] / R"),
    "aux_loss": Op(r"\mathcal{L}_{\text{aux}} = E \sum_i f_i P_i", "aux = E · Σ_i f[i] · P[i]"),
    "backward": Op(r"\frac{\partial L}{\partial x} = \sum_{y \leftarrow x} \left(\frac{\partial y}{\partial x}\right)^{\!\top} \frac{\partial L}{\partial y}",
                   "∂L/∂x = Σ over records y computed from x of (∂y/∂x)ᵀ · ∂L/∂y"),
    "param_grad": Op(r"\frac{\partial L}{\partial W}", "∂L/∂W, summed over every use of W"),
    "param_update": Op(r"\Delta W = W_{\text{after}} - W_{\text{before}}", "ΔW = W after the optimizer steps − W before"),
    "token_logprob": Op(r"\log \pi(y_t) = \log \mathrm{softmax}(z_{t-1})_{y_t}", "log π(y_t) = log softmax(logits[t−1])[y_t]"),
    "sum_logprob": Op(r"\log \pi(y|x) = \sum_t \log \pi(y_t)", "log π(y|x) = Σ_t log π(y_t)"),
    "dpo_reward": Op(r"r = \beta(\log\pi(y|x) - \log\pi_{\text{ref}}(y|x))", "r = β · (log π(y|x) − log π_ref(y|x))"),
    "dpo_loss": Op(r"L = -\log\sigma(r_c - r_r)", "L = −log σ(r_chosen − r_rejected)"),
    "grpo_advantage": Op(r"A_i = \frac{r_i - \bar r}{\mathrm{std}(r) + 10^{-4}}", "A_i = (r_i − mean r) / (std r + 1e-4)"),
    "grpo_token_loss": Op(r"\ell_{i,t} = -\rho_{i,t} A_i,\ \rho = e^{\log\pi - \log\pi_{\text{old}}} = 1",
                          "ℓ[i,t] = −ρ·A_i with ρ = exp(log π − log π_old) = 1 on the first step"),
    "grpo_loss": Op(r"L = \frac{\sum_{i,t} \ell_{i,t}}{\sum_i |y_i|}", "L = Σ ℓ[i,t] / (all completion tokens)  (TRL loss_type dapo)"),
    # Qwen3-VL vision path (seed 002)
    "image_decode": Op(r"I = \mathrm{RGB}(\mathrm{decode}(\text{file}))", "I = RGB(decode(file))  (alpha on white)"),
    "resize_bicubic": Op(r"I' = \mathrm{bicubic}(I, H', W'),\ (H', W') = \mathrm{smart\_resize}(H, W)",
                         "I' = bicubic(I) to smart_resize(H, W): multiples of P·m, min ≤ H'W' ≤ max"),
    "rescale_normalize": Op(r"x' = (x / 255 - \mu_c) / \sigma_c", "x' = (x/255 − mean_c) / std_c"),
    "patchify": Op(r"X[n] = \mathrm{vec}_{c,t,y,x}(\text{patch } n),\ n \text{ in } m{\times}m \text{ block order}",
                   "X[n] = patch n flattened (c, t, y, x); patches in m×m block order"),
    "grid_thw": Op(r"(t, g_h, g_w) = (1, H'/P, W'/P)", "(t, gh, gw) = (1, H'/P, W'/P)"),
    "patch_embed": Op(r"E = X W_{\text{conv}}^\top + b", "E = X · W_convᵀ + b  (Conv3d, stride = kernel)"),
    "pos_interp": Op(r"p_n = \sum_{k=1}^{4} w_{nk}\, T[\text{idx}_{nk}]", "p[n] = Σ_k w[n,k] · T[idx[n,k]]  (bilinear, align_corners)"),
    "vision_rope_ids": Op(r"(r_n, c_n)", "(row, col) of patch n"),
    "vision_rope": Op(r"\varphi_n = [r_n\omega;\ c_n\omega],\ \omega_j = \theta^{-4j/D_h}",
                      "φ[n] = [row·ω, col·ω], ω_j = θ^(−4j/Dh); cos/sin of cat(φ, φ)"),
    "cu_seqlens": Op(r"\text{cu} = [0, \mathrm{cumsum}(t \cdot g_h g_w)]", "cu = [0, cumsum(t·gh·gw)]"),
    "window_ids": Op(r"w_n = \lfloor r_n / s \rfloor \cdot n_w + \lfloor c_n / s \rfloor", "window[n] = (row // ws) · windows_per_row + col // ws  (merged-token grid)"),
    "segment_mask": Op(r"M_{nm} = 0 \text{ if same image, else } -\infty", "M[n,m] = 0 if patches n, m are in the same image, else −∞"),
    "split_qkv": Op(r"Q, K, V = \mathrm{split}(X W_{qkv}^\top + b)", "Q, K, V = split(X · W_qkvᵀ + b)"),
    "linear_bias": Op(r"Y = X W^\top + b", "Y = X · Wᵀ + b"),
    "layer_norm": Op(r"y = \frac{x - \bar x}{\sqrt{\mathrm{var}(x) + \epsilon}} \odot w + b",
                     "y = (x − mean) / sqrt(var + ε) ⊙ w + b"),
    "gelu_tanh": Op(r"\tfrac12 x(1 + \tanh(\sqrt{2/\pi}(x + 0.044715x^3)))", "½x(1 + tanh(√(2/π)(x + 0.044715x³)))"),
    "gelu_erf": Op(r"\tfrac12 x(1 + \mathrm{erf}(x/\sqrt2))", "½x(1 + erf(x/√2))"),
    "merge_patches": Op(r"Z[k] = [X_{4k}; X_{4k+1}; X_{4k+2}; X_{4k+3}]", "Z[k] = concat of the m² patches of block k"),
    "splice": Op(r"X^{(0)}[\text{image rows}] = Z", "X(0)[image rows] = merger output, in order"),
    "mrope_ids": Op(r"(t, h, w) = (s, s + r, s + c) \text{ (image)},\ (p, p, p) \text{ (text)}",
                    "(t,h,w) = (s, s+row, s+col) for image tokens, (p,p,p) for text"),
    "mrope_cos": Op(r"\cos\varphi_{l,i},\ \varphi_{l,i} = p_{a(i),l}\,\omega_i,\ a(i) = h, w, t \text{ interleaved}",
                    "cos(pos[axis(i), l] · ω_i); axis(i) = h if i%3==1, w if i%3==2 (within sections), else t"),
    "mrope_sin": Op(r"\sin\varphi_{l,i},\ \varphi_{l,i} = p_{a(i),l}\,\omega_i", "sin(pos[axis(i), l] · ω_i)"),
    "deepstack_add": Op(r"X[\text{image rows}] \mathrel{+}= F_j", "X[image rows] += DeepStack feature j"),
}

LATEX_NAMES = frozenset({"ids", "onehot", "moe-out", "logits", "norm", "aux", "ref", "old", "conv", "idx", "cu",
                         "top-", "next", "patch"})
r"""The ``\text{…}`` groups of the LaTeX formulas that are names (record and variable names, the usual
subscripts of papers, the course's kept terms): the same in every language. Every other group with a letter
is words, translated by the ``latex`` catalog."""

_TEXT_GROUP = re.compile(r"\\text\{([^{}]*)\}")


def latex_key(words: str) -> str | None:
    r"""The ``latex`` catalog key of the words of one ``\text{…}`` group (its letters and digits, lowercase,
    joined by ``_``); None for a name of ``LATEX_NAMES`` or a group without a letter (``\text{-}``).

    >>> latex_key("(linear: "), latex_key(" if same image, else "), latex_key("ids"), latex_key("-")
    ('latex.linear', 'latex.if_same_image_else', None, None)
    """
    core = words.strip()
    if core in LATEX_NAMES or not re.search(r"[A-Za-z]", core):
        return None
    return "latex." + re.sub(r"[^a-z0-9]+", "_", core.lower()).strip("_")


def latex_words(op: str) -> list[str]:
    r"""The word groups of an op's LaTeX that a translation replaces, stripped, in order.

    >>> latex_words("kv_append"), latex_words("top_k")
    (['cache', 'past', 'new'], [])
    """
    return [g.strip() for g in _TEXT_GROUP.findall(OPS[op].latex) if latex_key(g) is not None]


def latex(op: str, lang: str = "en") -> str:
    r"""The LaTeX formula of ``op`` in ``lang``: the words of its ``\text{…}`` groups from the ``latex``
    catalog, names and mathematics as they are; in English exactly ``OPS[op].latex``. KeyError for an unknown op.

    >>> latex("causal_mask", "zh-Hant").endswith(r"-\infty & \text{其他情況}\end{cases}")
    True
    >>> latex("causal_mask") == OPS["causal_mask"].latex
    True
    """
    formula = OPS[op].latex
    code = normalize(lang)
    if code == "en":
        return formula

    def words(match: re.Match[str]) -> str:
        group = match.group(1)
        key = latex_key(group)
        if key is None or key not in catalog("en"):
            return match.group(0)  # a name; or new words without their catalog entry yet (the catalog test fails)
        core = group.strip()
        start = group.index(core)
        return r"\text{" + group[:start] + t(key, code) + group[start + len(core):] + "}"

    return _TEXT_GROUP.sub(words, formula)


@dataclass(frozen=True)
class Entry:
    """One record name pattern of the schema."""

    pattern: str
    shape: str
    op: str
    en: str
    zh: str


def _e(pattern: str, shape: str, op: str, en: str, zh: str) -> Entry:
    return Entry(pattern, shape, op, en, zh)


SCHEMA: list[Entry] = [
    _e("tokens", "[T] int", "input", "Input token ids, one per position.", "輸入的 token id,每個位置一個。"),
    _e("embed.onehot", "[T, V]", "one_hot", "One-hot rows: token t is a 1 in column ids[t] (only for V ≤ 4096).",
       "One-hot 矩陣:第 t 列只在 ids[t] 欄為 1(僅在 V ≤ 4096 時記錄)。"),
    _e("embed.out", "[T, D]", "embedding", "Embedding lookup: row ids[t] of the embedding table E.",
       "Embedding 查表:取 E 的第 ids[t] 列。"),
    _e("rope.inv_freq", "[Dh/2]", "rope_inv_freq", "Rotary frequencies ω (radians per position of each dimension pair) after any RoPE scaling.",
       "旋轉頻率 ω(每對維度每個位置轉過的弧度),已套用 RoPE 縮放。"),
    _e("rope.attention_factor", "[]", "rope_attention_factor", "Factor a multiplying cos and sin (YaRN; 1 otherwise): every score is multiplied by a².",
       "乘在 cos 與 sin 上的係數 a(YaRN;其他情況為 1):每個注意力分數因此乘上 a²。"),
    _e("rope.cos", "[T, Dh]", "rope_cos", "Cosine of each position's rotation angle per dimension pair (rotate_half layout).",
       "每個位置、每對維度旋轉角的 cos(rotate_half 排列)。"),
    _e("rope.sin", "[T, Dh]", "rope_sin", "Sine of each position's rotation angle per dimension pair (rotate_half layout).",
       "每個位置、每對維度旋轉角的 sin(rotate_half 排列)。"),
    _e("layers.{i}.attn_norm", "[T, D]", "rms_norm", "RMSNorm before attention (pre-norm): each row rescaled to RMS 1, times a learned weight.",
       "注意力前的 RMSNorm(pre-norm):每列縮放到 RMS 為 1,再乘上可學習權重。"),
    _e("layers.{i}.attn.q_proj", "[H, T, Dh]", "linear_heads", "Queries: what each position is looking for, split into heads.",
       "Query:每個位置「要找什麼」,切成多個 head。"),
    _e("layers.{i}.attn.k_proj", "[Hkv, T, Dh]", "linear_heads", "Keys: what each position offers to be found by, per key/value head.",
       "Key:每個位置「可被找到的特徵」,按 key/value head 切分。"),
    _e("layers.{i}.attn.v_proj", "[Hkv, T, Dh]", "linear_heads", "Values: the information each position hands over when attended to.",
       "Value:被注意時每個位置交出的資訊。"),
    _e("layers.{i}.attn.q_norm", "[H, T, Dh]", "rms_norm", "QK-Norm on queries: each head's vector normalised over Dh, keeping scores in a stable range.",
       "Query 的 QK-Norm:每個 head 的向量在 Dh 上正規化,讓注意力分數保持穩定。"),
    _e("layers.{i}.attn.k_norm", "[Hkv, T, Dh]", "rms_norm", "QK-Norm on keys: each head's vector normalised over Dh.",
       "Key 的 QK-Norm:每個 head 的向量在 Dh 上正規化。"),
    _e("layers.{i}.attn.q_rope", "[H, T, Dh]", "apply_rope", "Queries rotated by their position (RoPE), so q·k depends on relative position.",
       "依位置旋轉後的 Query(RoPE),使 q·k 只取決於相對位置。"),
    _e("layers.{i}.attn.k_rope", "[Hkv, T, Dh]", "apply_rope", "Keys rotated by their position (RoPE); these are what the KV cache stores.",
       "依位置旋轉後的 Key(RoPE);KV cache 存的就是它。"),
    _e("layers.{i}.attn.k_cache", "[Hkv, S, Dh]", "kv_append", "Key cache after appending this step's rotated keys.",
       "加入本步旋轉後 Key 的 KV cache(Key 部分)。"),
    _e("layers.{i}.attn.v_cache", "[Hkv, S, Dh]", "kv_append", "Value cache after appending this step's values.",
       "加入本步 Value 的 KV cache(Value 部分)。"),
    _e("layers.{i}.attn.scores", "[H, T, S]", "attention_scores", "Attention scores: scaled dot product of every query with every key (GQA: heads share keys).",
       "注意力分數:每個 query 與每個 key 的縮放內積(GQA:多個 head 共用 key)。"),
    _e("layers.{i}.attn.mask", "[T, S]", "causal_mask", "Causal mask: 0 where a query may look, a huge negative number on future positions.",
       "因果遮罩:可看的位置為 0,未來位置為極大的負數。"),
    _e("layers.{i}.attn.masked_scores", "[H, T, S]", "add", "Scores plus the mask: future positions pushed to −∞.",
       "分數加上遮罩:未來位置被推到 −∞。"),
    _e("layers.{i}.attn.probs", "[H, T, S]", "softmax", "Attention weights: row softmax of the masked scores; each row sums to 1.",
       "注意力權重:對遮罩後分數逐列做 softmax,每列和為 1。"),
    _e("layers.{i}.attn.context", "[H, T, Dh]", "attention_context", "Context: each query's weighted average of the values.",
       "Context:每個 query 對 Value 的加權平均。"),
    _e("layers.{i}.attn.o_proj", "[T, D]", "linear_merge", "Output projection: heads concatenated and mapped back to the hidden size.",
       "輸出投影:把各 head 接起來,投影回 hidden 維度。"),
    _e("layers.{i}.resid_mid", "[T, D]", "add", "Residual after attention: block input plus attention output.",
       "注意力後的殘差:block 輸入加上注意力輸出。"),
    _e("layers.{i}.mlp_norm", "[T, D]", "rms_norm", "RMSNorm before the MLP / MoE (post_attention_layernorm).",
       "MLP / MoE 前的 RMSNorm(post_attention_layernorm)。"),
    _e("layers.{i}.mlp.gate_proj", "[T, I]", "linear", "Gate projection of the SwiGLU MLP.", "SwiGLU MLP 的 gate 投影。"),
    _e("layers.{i}.mlp.up_proj", "[T, I]", "linear", "Up projection of the SwiGLU MLP.", "SwiGLU MLP 的 up 投影。"),
    _e("layers.{i}.mlp.act", "[T, I]", "swiglu", "SwiGLU: silu(gate) times up, element by element.",
       "SwiGLU:silu(gate) 與 up 逐元素相乘。"),
    _e("layers.{i}.mlp.down_proj", "[T, D]", "linear", "Down projection: the MLP's output, back to the hidden size.",
       "Down 投影:MLP 的輸出,投影回 hidden 維度。"),
    _e("layers.{i}.moe.router_logits", "[T, E]", "router", "Router logits: how strongly each token calls each expert.",
       "Router logits:每個 token 對每個專家的呼叫強度。"),
    _e("layers.{i}.moe.router_probs", "[T, E]", "softmax", "Router probabilities: softmax over all experts.",
       "Router 機率:對所有專家做 softmax。"),
    _e("layers.{i}.moe.topk_ids", "[T, k] int", "top_k", "The k experts each token is sent to, best first.",
       "每個 token 被送往的 k 個專家,由高到低。"),
    _e("layers.{i}.moe.topk_weights", "[T, k]", "top_k_weights", "Gate weights of the chosen experts (renormalised to sum 1 when norm_topk_prob).",
       "被選專家的 gate 權重(norm_topk_prob 時重新正規化,和為 1)。"),
    _e("layers.{i}.moe.gates", "[T, E]", "scatter_gates", "The same gate weights as a dense matrix: zero for experts a token did not choose.",
       "同樣的 gate 權重寫成完整矩陣:未被選的專家為 0。"),
    _e("layers.{i}.moe.experts.{e}.token_ids", "[n_e] int", "route_rows", "Positions routed to this expert.",
       "被路由到這個專家的位置。"),
    _e("layers.{i}.moe.experts.{e}.gate_proj", "[n_e, I]", "expert_linear", "This expert's gate projection on its rows.",
       "此專家對其 token 的 gate 投影。"),
    _e("layers.{i}.moe.experts.{e}.up_proj", "[n_e, I]", "expert_linear", "This expert's up (first) projection on its rows.",
       "此專家對其 token 的 up(第一層)投影。"),
    _e("layers.{i}.moe.experts.{e}.act", "[n_e, I]", "swiglu", "This expert's activation.", "此專家的啟用函數輸出。"),
    _e("layers.{i}.moe.experts.{e}.down_proj", "[n_e, D]", "expert_linear", "This expert's output on its rows.",
       "此專家對其 token 的輸出。"),
    _e("layers.{i}.moe.experts.{e}.weighted", "[T, D]", "expert_weighted", "Gate weight times expert output, scattered back to all positions.",
       "gate 權重乘上專家輸出,放回所有位置。"),
    _e("layers.{i}.moe.out", "[T, D]", "sum_experts", "MoE output: the sum of the weighted expert outputs.",
       "MoE 輸出:各專家加權輸出的總和。"),
    _e("layers.{i}.resid_post", "[T, D]", "add", "Block output: the residual after attention plus the MLP / MoE output.",
       "Block 輸出:注意力後殘差加上 MLP / MoE 輸出。"),
    # Qwen3-VL (seed 002): preprocessing, vision tower, merger, placement. {i} also numbers images and taps.
    _e("vision.images.{i}.rgb", "[H, W, 3] uint8", "image_decode", "Image i decoded to 8-bit RGB.", "第 i 張圖解碼成 8 位元 RGB。"),
    _e("vision.images.{i}.resized", "[H', W', 3] uint8", "resize_bicubic", "Image i resized (bicubic) to multiples of patch × merge within [min_pixels, max_pixels].",
       "第 i 張圖以 bicubic 縮放到 patch × merge 的倍數,面積在 [min_pixels, max_pixels] 之內。"),
    _e("vision.images.{i}.normalized", "[C, H', W']", "rescale_normalize", "Pixels rescaled to [0, 1] and normalised per channel.",
       "像素縮放到 [0, 1] 後逐通道標準化。"),
    _e("vision.images.{i}.patches", "[N_i, C·T·P·P]", "patchify", "Image i cut into P×P patches (the frame repeated T times), 2×2 blocks in order.",
       "第 i 張圖切成 P×P 的 patch(畫面重複 T 次),依 2×2 區塊排序。"),
    _e("vision.grid_thw", "[images, 3] int", "grid_thw", "Each image's patch grid (t, gh, gw).", "每張圖的 patch 網格 (t, gh, gw)。"),
    _e("vision.pixel_values", "[N, C·T·P·P]", "patchify", "All images' patches, stacked (the processor's pixel_values).",
       "所有圖片的 patch 疊在一起(processor 的 pixel_values)。"),
    _e("vision.patch_embed", "[N, Dv]", "patch_embed", "Patch embedding: a Conv3d whose stride is its kernel, i.e. one linear map per patch.",
       "Patch embedding:步幅等於卷積核的 Conv3d,即每個 patch 一次線性映射。"),
    _e("vision.pos_embed", "[N, Dv]", "pos_interp", "Learned position table, bilinearly resampled to each image's grid.",
       "學到的位置表,以雙線性插值縮放到每張圖的網格。"),
    _e("vision.embed", "[N, Dv]", "add", "Patch embedding plus position embedding: the first vision block's input.",
       "Patch embedding 加位置 embedding:第一個 vision block 的輸入。"),
    _e("vision.rope.position_ids", "[N, 2] int", "vision_rope_ids", "(row, col) of each patch, the 2-D rotary positions.",
       "每個 patch 的 (列, 欄),即 2D 旋轉位置。"),
    _e("vision.rope.cos", "[N, Dhv]", "vision_rope", "Cosines of the 2-D rotary angles (h angles, then w angles).",
       "2D 旋轉角的 cos(先 h 角,再 w 角)。"),
    _e("vision.rope.sin", "[N, Dhv]", "vision_rope", "Sines of the 2-D rotary angles.", "2D 旋轉角的 sin。"),
    _e("vision.window_ids", "[N] int", "window_ids", "Teaching variant (vision.window_size): the attention window of each patch, as Qwen2.5-VL's window attention lays them out.",
       "教學變體(vision.window_size):每個 patch 所屬的注意力視窗,與 Qwen2.5-VL 的 window attention 相同。"),
    _e("vision.cu_seqlens", "[frames + 1] int", "cu_seqlens", "Where each image frame starts and ends among the patches.",
       "每個影像畫面在 patch 序列中的起止位置。"),
    _e("vision.blocks.{i}.attn_norm", "[N, Dv]", "layer_norm", "LayerNorm before attention (HF norm1).", "注意力前的 LayerNorm(HF norm1)。"),
    _e("vision.blocks.{i}.attn.qkv", "[N, 3·Dv]", "linear_bias", "Fused Q, K, V projection with bias.", "合併的 Q、K、V 投影(含 bias)。"),
    _e("vision.blocks.{i}.attn.q_proj", "[Hv, N, Dhv]", "split_qkv", "Queries, split into heads.", "查詢,分成各個 head。"),
    _e("vision.blocks.{i}.attn.k_proj", "[Hv, N, Dhv]", "split_qkv", "Keys, split into heads.", "鍵,分成各個 head。"),
    _e("vision.blocks.{i}.attn.v_proj", "[Hv, N, Dhv]", "split_qkv", "Values, split into heads.", "值,分成各個 head。"),
    _e("vision.blocks.{i}.attn.q_rope", "[Hv, N, Dhv]", "apply_rope", "Queries rotated by their patch's (row, col).", "依 patch 的 (列, 欄) 旋轉後的查詢。"),
    _e("vision.blocks.{i}.attn.k_rope", "[Hv, N, Dhv]", "apply_rope", "Keys rotated by their patch's (row, col).", "依 patch 的 (列, 欄) 旋轉後的鍵。"),
    _e("vision.blocks.{i}.attn.scores", "[Hv, N, N]", "attention_scores", "Scaled dot products of every patch with every patch.",
       "每個 patch 與每個 patch 的縮放點積。"),
    _e("vision.blocks.{i}.attn.mask", "[N, N]", "segment_mask", "0 within one image, −∞ across images: attention stays inside each image (cu_seqlens).",
       "同一張圖內為 0,跨圖為 −∞:注意力只在各自的圖內(cu_seqlens)。"),
    _e("vision.blocks.{i}.attn.masked_scores", "[Hv, N, N]", "add", "Scores plus the image mask (no causal mask).", "分數加上圖片遮罩(沒有因果遮罩)。"),
    _e("vision.blocks.{i}.attn.probs", "[Hv, N, N]", "softmax", "Attention of each patch over the patches of its image.", "每個 patch 對同一張圖各 patch 的注意力。"),
    _e("vision.blocks.{i}.attn.context", "[Hv, N, Dhv]", "attention_context", "probs · V.", "probs · V。"),
    _e("vision.blocks.{i}.attn.o_proj", "[N, Dv]", "linear_merge", "Output projection with bias (HF attn.proj).", "輸出投影(含 bias,HF attn.proj)。"),
    _e("vision.blocks.{i}.resid_mid", "[N, Dv]", "add", "Residual after attention.", "注意力後的殘差。"),
    _e("vision.blocks.{i}.mlp_norm", "[N, Dv]", "layer_norm", "LayerNorm before the MLP (HF norm2).", "MLP 前的 LayerNorm(HF norm2)。"),
    _e("vision.blocks.{i}.mlp.fc1", "[N, Iv]", "linear_bias", "MLP first layer (HF linear_fc1).", "MLP 第一層(HF linear_fc1)。"),
    _e("vision.blocks.{i}.mlp.act", "[N, Iv]", "gelu_tanh", "GELU, tanh approximation.", "GELU(tanh 近似)。"),
    _e("vision.blocks.{i}.mlp.fc2", "[N, Dv]", "linear_bias", "MLP second layer (HF linear_fc2).", "MLP 第二層(HF linear_fc2)。"),
    _e("vision.blocks.{i}.resid_post", "[N, Dv]", "add", "Vision block output.", "Vision block 輸出。"),
    _e("vision.deepstack.{i}.merge", "[M, 4·Dv]", "merge_patches", "DeepStack tap i: the tapped block's output, each 2×2 block of patches side by side.",
       "DeepStack 分支 i:所取 block 的輸出,每 2×2 個 patch 並排成一列。"),
    _e("vision.deepstack.{i}.norm", "[M, 4·Dv]", "layer_norm", "LayerNorm over the merged row (after the merge).", "對合併後的一列做 LayerNorm(在合併之後)。"),
    _e("vision.deepstack.{i}.fc1", "[M, 4·Dv]", "linear_bias", "First layer of the DeepStack merger.", "DeepStack merger 第一層。"),
    _e("vision.deepstack.{i}.act", "[M, 4·Dv]", "gelu_erf", "GELU (exact, erf).", "GELU(精確的 erf 版)。"),
    _e("vision.deepstack.{i}.out", "[M, D]", "linear_bias", "DeepStack feature i, at the text width: added after text layer i.",
       "DeepStack 特徵 i(文字寬度):加在文字第 i 層之後。"),
    _e("vision.merger.norm", "[N, Dv]", "layer_norm", "Merger LayerNorm, per patch (before the merge).", "Merger 的 LayerNorm,逐 patch(在合併之前)。"),
    _e("vision.merger.merge", "[M, 4·Dv]", "merge_patches", "Each 2×2 block of patches concatenated into one row: one language-model token.",
       "每 2×2 個 patch 串成一列:一個語言模型 token。"),
    _e("vision.merger.fc1", "[M, 4·Dv]", "linear_bias", "Merger first layer.", "Merger 第一層。"),
    _e("vision.merger.act", "[M, 4·Dv]", "gelu_erf", "GELU (exact, erf).", "GELU(精確的 erf 版)。"),
    _e("vision.merger.out", "[M, D]", "linear_bias", "Image tokens at the text hidden size: they replace the <|image_pad|> embeddings.",
       "文字隱藏維度的圖片 token:取代 <|image_pad|> 的 embedding。"),
    _e("embed.spliced", "[T, D]", "splice", "Embeddings with the image tokens spliced in at the <|image_pad|> rows.",
       "在 <|image_pad|> 的列放入圖片 token 之後的 embedding。"),
    _e("rope.position_ids", "[3, T] int", "mrope_ids", "M-RoPE (t, h, w) position of each token; text after an image continues after its largest id.",
       "每個 token 的 M-RoPE (t, h, w) 位置;圖片後的文字接在圖片最大位置之後。"),
    _e("layers.{i}.deepstack", "[T, D]", "deepstack_add", "Block output plus DeepStack feature i at the image rows (first layers only).",
       "Block 輸出在圖片列加上 DeepStack 特徵 i(只在最前面幾層)。"),
    _e("final_norm", "[T, D]", "rms_norm", "Final RMSNorm before the LM head.", "LM head 前的最終 RMSNorm。"),
    _e("logits", "[T, V]", "linear", "LM head: a score for every vocabulary token at every position.",
       "LM head:每個位置對詞彙表中每個 token 的分數。"),
    _e("lens.{i}.logits", "[T, V]", "logit_lens",
       "Logit lens (only with --capture 'lens.*.logits'): the stream after block i through the final norm and LM head, as if the model stopped there.",
       "Logit lens(僅在 --capture 'lens.*.logits' 時記錄):第 i 個 block 之後的殘差流經過最終 RMSNorm 與 LM head,彷彿模型在此結束。"),
    _e("lens.{i}.top_ids", "[T, 20] int", "lens_top_ids",
       "Logit lens: the 20 likeliest next tokens at each position if the model stopped after block i (the last block's equal the output's).",
       "Logit lens:若模型在第 i 個 block 後結束,每個位置最可能的 20 個下一個 token(最後一個 block 與輸出相同)。"),
    _e("lens.{i}.top_probs", "[T, 20]", "lens_top_probs",
       "Logit lens: the probabilities of those 20 tokens (softmax over the whole vocabulary).",
       "Logit lens:這 20 個 token 的機率(對整個詞彙表做 softmax)。"),
    _e("attrib.target_ids", "[T] int", "attrib_target",
       "Direct logit attribution: the token explained at each position, the model's top prediction there.",
       "直接 logit 歸因:每個位置要解釋的 token,即模型在該處的首選預測。"),
    _e("attrib.scale", "[T]", "frozen_rms_scale",
       "The final RMSNorm's scale 1/rms of the last block's output, frozen so the map from stream to logit is linear.",
       "最終 RMSNorm 的縮放 1/rms(取自最後一個 block 的輸出),固定不變,使殘差流到 logit 成為線性映射。"),
    _e("attrib.embed", "[T]", "attrib_dot",
       "Direct logit attribution of the embedding: its share of the target token's logit (frozen RMS scale). "
       "Embedding + all heads + all MLPs / experts = the logit.",
       "Embedding 的直接 logit 歸因:它在目標 token logit 中的份額(RMS 縮放固定)。Embedding + 所有 head + 所有 MLP / 專家 = logit。"),
    _e("attrib.{i}.heads", "[H, T]", "attrib_heads",
       "Direct logit attribution of each head of block i: what it writes into the stream, read along the target token's direction through the final norm (frozen RMS scale).",
       "第 i 個 block 每個 head 的直接 logit 歸因:它寫入殘差流的向量,沿目標 token 的方向(經最終 RMSNorm,縮放固定)讀出。"),
    _e("attrib.{i}.mlp", "[T]", "attrib_dot",
       "Direct logit attribution of block i's MLP (frozen RMS scale).", "第 i 個 block 的 MLP 的直接 logit 歸因(RMS 縮放固定)。"),
    _e("attrib.{i}.experts", "[E, T]", "attrib_experts",
       "Direct logit attribution of each expert of block i, gate weight included; 0 where the expert was not routed (frozen RMS scale).",
       "第 i 個 block 每個專家的直接 logit 歸因(含 gate 權重);未被路由處為 0(RMS 縮放固定)。"),
    _e("sample.{s}.logits", "[V]", "last_row", "Logits of the last position, used to choose the next token.",
       "最後一個位置的 logits,用來選下一個 token。"),
    _e("sample.{s}.masked_logits", "[V]", "suppress", "Logits after suppressing tokens that may not be generated.",
       "遮掉不允許生成的 token 之後的 logits。"),
    _e("sample.{s}.probs", "[V]", "greedy_probs", "Probability of each next token after temperature / top-k / top-p (one-hot for greedy).",
       "經過 temperature / top-k / top-p 後各 token 的機率(greedy 為 one-hot)。"),
    _e("sample.{s}.token_id", "[] int", "choose", "The chosen next token.", "選出的下一個 token。"),
    _e("train.labels", "[T] int", "label_shift", "Targets: the next token at each position, −100 where the loss does not count it.",
       "目標:每個位置的下一個 token;不計入損失的位置為 −100。"),
    _e("train.token_loss", "[T]", "token_cross_entropy", "Cross-entropy of each position: −log of the probability given to its target (0 where masked).",
       "每個位置的交叉熵:對目標 token 機率取 −log(被遮掉的位置為 0)。"),
    _e("train.aux_f", "[E]", "aux_f", "Load balancing: share of top-k slots each expert received (sums to k).",
       "負載平衡:每個專家拿到的 top-k 名額比例(總和為 k)。"),
    _e("train.aux_p", "[E]", "aux_p", "Load balancing: mean router probability of each expert (sums to 1).",
       "負載平衡:每個專家的平均 router 機率(總和為 1)。"),
    _e("train.aux_loss", "[]", "aux_loss", "Load-balancing loss E·Σ f·P (k at perfect balance), added × router_aux_loss_coef.",
       "負載平衡損失 E·Σ f·P(完全平衡時為 k),乘上 router_aux_loss_coef 後加入。"),
    _e("train.loss", "[]", "mean_loss", "The loss of this step: mean cross-entropy over counted tokens (+ aux for MoE), or the DPO / GRPO loss.",
       "本步損失:計入 token 的平均交叉熵(MoE 另加 aux),或 DPO / GRPO 損失。"),
    _e("train.loss_after", "[]", "mean_loss", "The same loss after the optimizer steps (same batch).",
       "優化器更新之後,同一批資料的損失。"),
    _e("dpo.chosen.token_logp", "[T]", "token_logprob", "Log-probability of each chosen answer token under the policy (0 outside the answer).",
       "策略模型下每個偏好回答 token 的 log 機率(回答以外為 0)。"),
    _e("dpo.chosen.logp", "[]", "sum_logprob", "Summed log-probability of the chosen answer under the policy (no length normalisation).",
       "策略模型下整個偏好回答的 log 機率總和(不做長度正規化)。"),
    _e("dpo.chosen.ref_logp", "[]", "sum_logprob", "The same chosen-answer sum under the frozen reference (the starting weights).",
       "偏好回答在凍結參考模型(起始權重)下的同一總和。"),
    _e("dpo.chosen.reward", "[]", "dpo_reward", "Implicit reward of the chosen answer: β·(log π − log π_ref).", "偏好回答的隱式獎勵 β·(log π − log π_ref)。"),
    _e("dpo.rejected.token_logp", "[T]", "token_logprob", "Log-probability of each rejected answer token under the policy (0 outside the answer).",
       "策略模型下每個不偏好回答 token 的 log 機率(回答以外為 0)。"),
    _e("dpo.rejected.logp", "[]", "sum_logprob", "Summed log-probability of the rejected answer under the policy (no length normalisation).",
       "策略模型下整個不偏好回答的 log 機率總和(不做長度正規化)。"),
    _e("dpo.rejected.ref_logp", "[]", "sum_logprob", "The same rejected-answer sum under the frozen reference (the starting weights).",
       "不偏好回答在凍結參考模型(起始權重)下的同一總和。"),
    _e("dpo.rejected.reward", "[]", "dpo_reward", "Implicit reward of the rejected answer: β·(log π − log π_ref).", "不偏好回答的隱式獎勵 β·(log π − log π_ref)。"),
    _e("grpo.rewards", "[G]", "input", "The reward of each completion of the group.", "組內每個回答的獎勵。"),
    _e("grpo.advantages", "[G]", "grpo_advantage", "Group-normalised advantage of each completion.", "每個回答經組內標準化的優勢值。"),
    _e("grpo.{c}.token_logp", "[T]", "token_logprob", "Log-probability of each completion token under the policy.",
       "策略模型下每個回答 token 的 log 機率。"),
    _e("grpo.{c}.token_loss", "[T]", "grpo_token_loss", "Per-token loss −ρ·A of this completion (0 outside it).",
       "此回答每個 token 的損失 −ρ·A(回答以外為 0)。"),
    _e("quant.{w}.error", "[4]", "quant_error",
       "Quantization error of this checkpoint weight, dequantized, against the reference: max abs, mean abs, relative Frobenius, bits per weight.",
       "此權重反量化後相對參考權重的誤差:最大絕對誤差、平均絕對誤差、相對 Frobenius 誤差、每個權重的位元數。"),
]

_PLACEHOLDER = re.compile(r"\{(i|e|s|c|w)\}")  # {c}: a GRPO completion; {w}: a checkpoint weight's dotted name
_DECODE_PREFIX = re.compile(r"^decode\.(\d+)\.")


def _compile(pattern: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(pattern)
    regex = "".join(re.escape(p) if k % 2 == 0 else r"(.+)" if p == "w" else r"(\d+)" for k, p in enumerate(parts))
    return re.compile(f"^{regex}$")


_COMPILED = [(_compile(entry.pattern), entry) for entry in SCHEMA]
_DECODE_ONLY = {"layers.{i}.attn.k_cache", "layers.{i}.attn.v_cache"}


def entry_for(name: str) -> Entry:
    """The schema entry of a record name; KeyError for a name the schema does not define."""
    if name.startswith(("grad.param.", "update.param.")):
        return _param_entry(name)
    if name.startswith("grad."):
        return _grad_entry(entry_for(name.removeprefix("grad.")))
    decode = _DECODE_PREFIX.match(name)
    bare = name[decode.end():] if decode else name
    for regex, entry in _COMPILED:
        if regex.match(bare) and (decode or entry.pattern not in _DECODE_ONLY) and not (
                decode and entry.pattern.startswith("sample.")):
            return entry
    raise KeyError(f"{name!r} is not a trace schema name")


def _grad_entry(of: Entry) -> Entry:
    """``grad.<record>``: ∂L/∂record, the same shape as the record (training step)."""
    return Entry(f"grad.{of.pattern}", of.shape, "backward", f"Gradient of the loss with respect to this record. {of.en}",
                 f"損失對此紀錄的梯度。{of.zh}")


def _param_entry(name: str) -> Entry:
    """``grad.param.<checkpoint tensor>`` and ``update.param.<checkpoint tensor>`` (training step)."""
    if name.startswith("grad."):
        return Entry("grad.param.{p}", "[like the weight]", "param_grad",
                     "Gradient of the loss with respect to this checkpoint tensor (summed over all its uses).",
                     "損失對此權重張量的梯度(所有用到它的地方加總)。")
    return Entry("update.param.{p}", "[like the weight]", "param_update",
                 "How much the optimizer steps changed this checkpoint tensor (after − before).",
                 "優化器更新使此權重張量改變了多少(更新後 − 更新前)。")
