# %% [markdown]
# # 5 · A full-size Qwen3 trace
#
# The real tokenizer and chat template (thinking on and off, a tool call), then a 28-layer trace of Qwen3-0.6B on
# seeded random weights: the residual stream's size layer by layer, attention heatmaps, and the logits.
# At the end: how to point the same code at real weights.

# %%
import json

import pandas as pd

from tracer.chat import parse_reply, render_chat
from tracer.classroom import setup
from tracer.figures import attention_figure, residual_norms_figure, sampling_figure
from tracer.info import count_params
from tracer.run import load_model, run_trace
from tracer.tokenizer import QwenTokenizer

setup()
tok = QwenTokenizer()
ids = tok.encode("Hello, world! 明天交報告 😀")
pd.DataFrame([{"id": t.id, "bytes": t.bytes.hex(" "), "text": t.text} for t in tok.tokens(ids)])

# %% [markdown]
# ## The chat template: thinking on, thinking off, and a tool call

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

# %% [markdown]
# ## 28 layers of Qwen3-0.6B
# Exact size first (seed 003 estimates about 591M):

# %%
model = load_model("qwen3-0.6b", seed=0)
print(f"{count_params(model.cfg).total:,} parameters")
prompt = render_chat([{"role": "user", "content": "明天交報告"}], enable_thinking=False)
ids = model.tokenizer.encode(prompt)
trace = run_trace(model, ids, prompt=prompt,
                  capture=["tokens", "layers.*.resid_post", "layers.0.attn.*", "layers.27.attn.*",
                           "final_norm", "logits", "sample.*"])
print(len(ids), "tokens,", len(trace), "records kept (--capture)")

# %%
residual_norms_figure(trace).show()
attention_figure(trace, 27, 0).show()

# %%
labels = trace.meta["generated_labels"]
fig, probs = sampling_figure(trace["sample.0.masked_logits"], 1.0, None, None)
fig.show()
print("greedy next token:", trace.meta["generated_ids"], labels, "(random weights: the token means nothing yet)")

# %% [markdown]
# ## With real weights
# Download a Qwen3 checkpoint elsewhere and copy the folder (config.json, model.safetensors, tokenizer files)
# to this machine. Then `load_model("/path/to/Qwen3-0.6B")` reads it memory-mapped, and everything above works
# the same — including the chat template the checkpoint ships. From the command line:
#
# ```
# tracer trace /path/to/Qwen3-0.6B --prompt "明天交報告" --chat --max-new-tokens 16 --out real.npz
# tracer app real.npz
# ```
