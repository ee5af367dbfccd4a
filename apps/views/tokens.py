"""The rendered prompt with its newlines and special tokens highlighted, and the token table: id, bytes,
the token as text (partial characters as <0xE6>), and the joined text of characters split across tokens."""

import html
import re

import streamlit as st

from common import header, require_trace, show_notes, t
from tracer.text.tokentext import TokenText

SPECIAL = r"<\|[a-z_]+\|>|</?think>|</?tool_call>|</?tool_response>"

header("nav_tokens")
trace = require_trace()
show_notes(trace, "tokens")
m = trace.meta
if m.get("prompt"):
    st.caption(t("template_caption"))
    parts = re.split(f"({SPECIAL})", m["prompt"])
    rendered = "".join(
        f"<span style='background:#ffe08a;border-radius:3px;padding:0 2px'>{html.escape(p)}</span>"
        if re.fullmatch(SPECIAL, p) else html.escape(p).replace("\n", "<span style='color:#bbb'>↵</span><br>")
        for p in parts)
    st.markdown(f"<div class='chat-template' style='font-family:monospace;background:#f6f6f6;padding:8px;"
                f"border-radius:4px'>{rendered}</div>", unsafe_allow_html=True)
else:
    st.caption(t("from_ids"))
text = TokenText(m)
ids = list(m["token_ids"])
raws = m.get("token_bytes") or [""] * len(ids)
st.dataframe([{t("col_position"): k, t("col_id"): i, t("col_bytes"): b, t("col_token"): label,
               t("col_joined"): joined}
              for k, (i, b, label, joined) in enumerate(zip(ids, raws, text.prompt_labels(), text.prompt_joined()))],
             hide_index=True)
st.caption(t("bytes_caption"))
