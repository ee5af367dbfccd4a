"""The trace schema (v2): every record name, its shape, the op that makes it, and what it means.

This table is the one source of truth for what a trace record is (``docs/trace-schema.md`` is the prose
version). Backends emit these names; viewers read formulas and explanations from here via ``__meta__``.
Name patterns use ``{i}`` for a layer, ``{e}`` for an expert and ``{s}`` for a generation step; a decode
step's forward records are the same names under the prefix ``decode.{s}.``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
    "choose": Op(r"\text{next} = \arg\max p \text{ (greedy) or } \text{next} \sim p", "next = argmax p (greedy) or draw from p"),
}


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
    _e("final_norm", "[T, D]", "rms_norm", "Final RMSNorm before the LM head.", "LM head 前的最終 RMSNorm。"),
    _e("logits", "[T, V]", "linear", "LM head: a score for every vocabulary token at every position.",
       "LM head:每個位置對詞彙表中每個 token 的分數。"),
    _e("sample.{s}.logits", "[V]", "last_row", "Logits of the last position, used to choose the next token.",
       "最後一個位置的 logits,用來選下一個 token。"),
    _e("sample.{s}.masked_logits", "[V]", "suppress", "Logits after suppressing tokens that may not be generated.",
       "遮掉不允許生成的 token 之後的 logits。"),
    _e("sample.{s}.probs", "[V]", "greedy_probs", "Probability of each next token after temperature / top-k / top-p (one-hot for greedy).",
       "經過 temperature / top-k / top-p 後各 token 的機率(greedy 為 one-hot)。"),
    _e("sample.{s}.token_id", "[] int", "choose", "The chosen next token.", "選出的下一個 token。"),
]

_PLACEHOLDER = re.compile(r"\{(i|e|s)\}")
_DECODE_PREFIX = re.compile(r"^decode\.(\d+)\.")


def _compile(pattern: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(pattern)
    regex = "".join(re.escape(p) if k % 2 == 0 else r"(\d+)" for k, p in enumerate(parts))
    return re.compile(f"^{regex}$")


_COMPILED = [(_compile(entry.pattern), entry) for entry in SCHEMA]
_DECODE_ONLY = {"layers.{i}.attn.k_cache", "layers.{i}.attn.v_cache"}


def entry_for(name: str) -> Entry:
    """The schema entry of a record name; KeyError for a name the schema does not define."""
    decode = _DECODE_PREFIX.match(name)
    bare = name[decode.end():] if decode else name
    for regex, entry in _COMPILED:
        if regex.match(bare) and (decode or entry.pattern not in _DECODE_ONLY) and not (
                decode and entry.pattern.startswith("sample.")):
            return entry
    raise KeyError(f"{name!r} is not a trace schema name")
