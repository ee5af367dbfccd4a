# %% jupyter={"source_hidden": true}
from tracer.teaching.classroom import prose  # the text of this notebook, in its language (tracer notebooks --lang)

prose("nb06_md1")

# %%
import numpy as np
import pandas as pd

from tracer.commands.run import load_model, run_trace
from tracer.engine import ops
from tracer.figures.forward import sampling_figure
from tracer.sources import seed004
from tracer.teaching.classroom import Exercise, label, language, setup

setup()
LANG = language()
model = load_model("qwen3-0.6b", ["num_hidden_layers=2", "vocab_size=500", "initializer_range=0.5"])
trace = run_trace(model, [1, 2, 3, 4, 5])
logits = trace["sample.0.masked_logits"]
print(label("nb06_lbl_greedy", id=int(np.argmax(logits))))

# %%
import ipywidgets as widgets  # noqa: E402
from IPython.display import display  # noqa: E402

def show(temperature=1.0, top_k=0, top_p=1.0):
    fig, probs = sampling_figure(logits, temperature, top_k or None, top_p if top_p < 1 else None, lang=LANG)
    fig.show()
    print(label("nb06_lbl_drawn", n=int((probs > 0).sum())))

temperature = widgets.FloatSlider(1.0, min=0.0, max=2.0, step=0.05, description=label("nb06_lbl_temperature"))
display(widgets.interactive(show, temperature=temperature, top_k=(0, 50), top_p=(0.05, 1.0, 0.05)))
show(0.7, 20, 0.9)

# %% jupyter={"source_hidden": true}
prose("nb06_md2")

# %%
z = np.array(seed004.SEED001_TEMPERATURE["logits"])
zs = ", ".join(f"{v:g}" for v in z)
ex1 = Exercise("nb06_t1", ops.softmax(z)[0], lang=LANG, logits=zs)
ex1

# %%
answer_1 = None  # ← your answer · 你的答案
ex1.check(answer_1)

# %%
ex2 = Exercise("nb06_t2", ops.softmax(z / 2)[0], lang=LANG, logits=zs, halves=", ".join(f"{v:g}" for v in z / 2))
ex2

# %%
answer_2 = None  # ← your answer · 你的答案
ex2.check(answer_2)

# %%
p1 = ops.softmax(z)
ex3 = Exercise("nb06_topp", int((ops.sampling_probs(z, 1.0, None, 0.9) > 0).sum()), tolerance=0, lang=LANG,
               probs=", ".join(f"{v:.3f}" for v in p1), p0=f"{p1[0]:.3f}")
ex3

# %%
answer_3 = None  # ← your answer · 你的答案
ex3.check(answer_3)

# %%
rows = []
for T, printed in seed004.SEED001_TEMPERATURE["printed"].items():
    exact = ops.softmax(z / T)
    rows.append({"T": T, label("nb06_lbl_document"): printed, "softmax(z / T)": np.round(exact, 4).tolist(),
                 label("nb06_lbl_error"): round(float(np.abs(exact - printed).max()), 3)})
pd.DataFrame(rows)

# %% jupyter={"source_hidden": true}
prose("nb06_md3")

# %%
for T in (1.0, 0.5, 2.0):
    print(T, np.round(ops.sampling_probs(z, T, None, None), 3), " top-p 0.9:",
          np.round(ops.sampling_probs(z, T, None, 0.9), 3))
