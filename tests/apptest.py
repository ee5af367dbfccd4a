"""The explorer as the AppTest pages see it: one way to open it on a trace, at a page, in a language."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "apps" / "explorer.py")


def open_explorer(monkeypatch, trace: str | None = None, page: str | None = None,
                  lang: str | None = None) -> AppTest:
    """The explorer run the way Streamlit serves it, on ``trace`` (or none), at ``views/{page}.py`` (or its first
    page), in ``lang`` (or English), with no exception on the way."""
    if trace:
        monkeypatch.setenv("QWEN3_TRACER_TRACE", trace)
    else:
        monkeypatch.delenv("QWEN3_TRACER_TRACE", raising=False)
    if lang:
        monkeypatch.setenv("QWEN3_TRACER_LANG", lang)
    else:
        monkeypatch.delenv("QWEN3_TRACER_LANG", raising=False)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page:
        at.switch_page(f"views/{page}.py")
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
    return at
