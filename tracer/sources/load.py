"""MODEL on disk -> a loaded ``run.Model``: config, lazily read weights, tokenizer, template, defaults."""

from __future__ import annotations

import numpy as np

from tracer.commands.run import Model
from tracer.sources import Location, resolve


def open_source(name: str, overrides: list[str], dtype: np.dtype, stream: bool = False) -> Model:
    """Resolve MODEL and open it; every check runs before a weight is read (nothing half-loaded)."""
    location = resolve(name)
    if location.kind == "dir":
        from tracer.sources.checkpoint import CheckpointWeights, read_config

        cfg = read_config(location.path).with_overrides(overrides)
        weights = CheckpointWeights(location.path, cfg, dtype, stream=stream)
        shown = str(location.path) if not name.startswith("hf:") else name
        return Model(shown, cfg, weights, location.label, None, notes=tuple(map(str, weights.warnings)),
                     directory=location.path)
    return open_gguf(name, location, overrides, dtype, stream)


def open_gguf(name: str, location: Location, overrides: list[str], dtype: np.dtype, stream: bool) -> Model:
    from tracer.sources.gguf import GGUFFile, GGUFWeights
    from tracer.sources.ollama import sampling_defaults
    from tracer.sources.vocab import GGUFTokenizer

    file = GGUFFile(location.path, location.label)
    cfg = file.config.with_overrides(overrides)
    weights = GGUFWeights(file, cfg, dtype, stream)
    extras = dict(location.extras)
    defaults = sampling_defaults(extras.get("params", {}))
    if extras.get("system"):
        defaults["system"] = extras["system"]
    extras["gguf"] = {"path": str(location.path), "types": file.type_counts(),
                      "file_type": file.value("general.file_type"), "name": file.value("general.name")}
    return Model(name, cfg, weights, location.label, None, template=file.value("tokenizer.chat_template"),
                 tokenizer_factory=lambda: GGUFTokenizer.from_file(file), defaults=defaults, extras=extras)


def source_lines(model: Model, lang: str = "en") -> list[str]:
    """What ``tracer info`` prints about where the weights came from: GGUF types, Ollama defaults, licenses,
    and the Go template as text."""
    from tracer.i18n import t
    from tracer.sources import source_text

    lines = [t("sources.info_source", lang, source=source_text(model.source, lang))]
    gguf = model.extras.get("gguf")
    if gguf:
        types = ", ".join(f"{k} ×{v}" for k, v in sorted(gguf["types"].items()))
        lines.append(t("sources.info_gguf_types", lang, types=types))
        if gguf["file_type"] is not None:
            from gguf import LlamaFileType

            known = gguf["file_type"] in LlamaFileType._value2member_map_
            kind = LlamaFileType(gguf["file_type"]).name.removeprefix("MOSTLY_") if known else "?"
            lines.append(t("sources.info_file_type", lang, kind=kind, value=gguf["file_type"]))
    for key, value in model.defaults.items():
        if key != "system":
            lines.append(t("sources.info_default", lang, key=key, value=value))
    if model.defaults.get("system"):
        lines.append(t("sources.info_system", lang, text=model.defaults["system"]))
    for text in model.extras.get("license", []):
        lines.append(t("sources.info_license", lang) + "\n" + text.rstrip("\n"))
    if model.extras.get("template"):
        lines.append(t("sources.info_template", lang) + "\n" + model.extras["template"].rstrip("\n"))
    return lines
