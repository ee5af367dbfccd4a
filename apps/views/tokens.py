"""The rendered ChatML prompt with special tokens highlighted, and the token table (id, bytes, text)."""

import html
import re

import streamlit as st

from common import header, require_trace

header("Tokens & chat template", "Tokens 與對話模板")
trace = require_trace()
m = trace.meta
if m.get("prompt"):
    parts = re.split(r"(<\|[a-z_]+\|>|</?think>|</?tool_call>|</?tool_response>)", m["prompt"])
    rendered = "".join(f"<span style='background:#ffe08a;border-radius:3px'>{html.escape(p)}</span>"
                       if re.fullmatch(r"<\|[a-z_]+\|>|</?think>|</?tool_call>|</?tool_response>", p)
                       else html.escape(p) for p in parts)
    st.markdown(f"<pre style='white-space:pre-wrap'>{rendered}</pre>", unsafe_allow_html=True)
else:
    st.caption("This trace was made from token ids, not text.")
rows = [{"position": k, "id": i, "bytes": b, "text": repr(label)}
        for k, (i, b, label) in enumerate(zip(m["token_ids"], m.get("token_bytes") or [""] * len(m["token_ids"]),
                                              m["token_labels"]))]
st.dataframe(rows)
