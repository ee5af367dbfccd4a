# %% jupyter={"source_hidden": true}
from tracer.teaching.classroom import prose  # the text of this notebook, in its language (tracer notebooks --lang)

prose("nb05_md1")

# %%
import json

import pandas as pd

from tracer.commands.run import load_model, run_trace
from tracer.figures.forward import attention_figure, residual_norms_figure, sampling_figure
from tracer.sources.info import count_params
from tracer.teaching.classroom import Exercise, label, language, setup
from tracer.text.chat import parse_reply, render_chat
from tracer.text.tokenizer import QwenTokenizer
from tracer.text.tokentext import piece

setup()
LANG = language()
tok = QwenTokenizer()
ids = tok.encode("Hello, world! 明天交報告 😀")
pieces = [piece(t.bytes) for t in tok.tokens(ids)]
pd.DataFrame([{"id": t.id, label("nb05_lbl_bytes"): t.bytes.hex(" "), label("nb05_lbl_text"): text}
              for t, text in zip(tok.tokens(ids), pieces)])

# %%
ex1 = Exercise("nb05_tokens", len(ids), tolerance=0, lang=LANG, first=pieces[0], last=pieces[-1])
ex1

# %%
answer_1 = None  # ← your answer · 你的答案
ex1.check(answer_1)

# %% jupyter={"source_hidden": true}
prose("nb05_md2")

# %%
messages = [{"role": "system", "content": "You are concise."}, {"role": "user", "content": "明天交報告, 加上禮貌用語"}]
print(render_chat(messages))
print("----- enable_thinking=False -----")
print(render_chat(messages, enable_thinking=False))

# %%
tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]
call = [{"role": "user", "content": "Weather in Taipei?"},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Taipei"}}]},
        {"role": "tool", "content": json.dumps({"temp": 21})}]
print(render_chat(call, tools))
print(parse_reply('<think>\nI should call the tool.\n</think>\n\n<tool_call>\n{"name": "get_weather", '
                  '"arguments": {"city": "Taipei"}}\n</tool_call>'))

# %% jupyter={"source_hidden": true}
prose("nb05_md3")

# %%
model = load_model("qwen3-0.6b", seed=0)
print(label("nb05_lbl_params", n=count_params(model.cfg).total))
c = model.cfg
counts = count_params(c)
ex2 = Exercise("nb05_layer", counts.attention[0] + counts.mlp[0] + counts.norms[0], tolerance=0.5, lang=LANG,
               q=f"{c.num_attention_heads * c.head_dim}, {c.hidden_size}",
               kv=f"{c.num_key_value_heads * c.head_dim}, {c.hidden_size}",
               o=f"{c.hidden_size}, {c.num_attention_heads * c.head_dim}", i=f"{c.intermediate_size}, {c.hidden_size}",
               d=c.hidden_size, dh=c.head_dim, i_prod=f"{c.intermediate_size} × {c.hidden_size}")
ex2

# %%
answer_2 = None  # ← your answer · 你的答案
ex2.check(answer_2)

# %%
prompt = render_chat([{"role": "user", "content": "明天交報告"}], enable_thinking=False)
ids = model.tokenizer.encode(prompt)
trace = run_trace(model, ids, prompt=prompt,
                  capture=["tokens", "layers.*.resid_post", "layers.0.attn.*", "layers.27.attn.*",
                           "final_norm", "logits", "sample.*"])
print(label("nb05_lbl_kept", tokens=len(ids), records=len(trace)))

# %%
residual_norms_figure(trace, LANG).show()
attention_figure(trace, 27, 0, lang=LANG).show()
ex3 = Exercise("nb05_scale", model.cfg.head_dim ** -0.5, tolerance=5e-4, lang=LANG, dh=model.cfg.head_dim,
               root=f"{model.cfg.head_dim ** 0.5:.3f}")
ex3

# %%
answer_3 = None  # ← your answer · 你的答案
ex3.check(answer_3)

# %%
labels = trace.meta["generated_labels"]
fig, probs = sampling_figure(trace["sample.0.masked_logits"], 1.0, None, None, tok.token_strings, lang=LANG)
fig.show()
print(label("nb05_lbl_greedy", ids=trace.meta["generated_ids"], labels=labels))

# %% jupyter={"source_hidden": true}
prose("nb05_md4")
