"""``ollama:NAME[:TAG]``: a model pulled by Ollama, read from its store through the manifest.

The store is ``$OLLAMA_MODELS``, else ``~/.ollama/models`` (the Linux service keeps it under
``/usr/share/ollama/.ollama/models``). A name ``[host/][namespace/]model[:tag]`` (defaults
``registry.ollama.ai``, ``library``, ``latest``) has its manifest at ``manifests/host/namespace/model/tag``:
JSON listing layers by media type and digest; each layer's bytes are ``blobs/sha256-<hex>``, and that hex
is the sha256 of the bytes (checked here for every layer). Layers used:

====================================  =================================================================
media type ``application/vnd.ollama.image.``  what qwen3-tracer does with it
====================================  =================================================================
``model``                             the GGUF file: config, weights, tokenizer, Jinja chat template
``params``                            JSON: default temperature, top_k, top_p, stop (flags override)
``system``                            the default system prompt for ``--chat``
``template`` (legacy ``prompt``)      Ollama's Go template, shown as text by ``tracer info``
``license``                           shown by ``tracer info``
====================================  =================================================================
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from tracer.sources import Location, error

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MEDIA = "application/vnd.ollama.image."
PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,79}$")
DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")


SERVICE_STORE = Path("/usr/share/ollama/.ollama/models")  # Linux systemd install (runs as user ollama)


def store_root() -> Path:
    """``$OLLAMA_MODELS``, else ``~/.ollama/models``, else the Linux service's store if only that exists."""
    if os.environ.get("OLLAMA_MODELS"):
        return Path(os.environ["OLLAMA_MODELS"]).expanduser()
    home = Path.home() / ".ollama" / "models"
    return SERVICE_STORE if not home.is_dir() and SERVICE_STORE.is_dir() else home


def parse_name(name: str) -> tuple[str, str, str, str]:
    """``[host/][namespace/]model[:tag]`` -> (host, namespace, model, tag) with Ollama's defaults.

    >>> parse_name("qwen3:0.6b")
    ('registry.ollama.ai', 'library', 'qwen3', '0.6b')
    >>> parse_name("hf.co/org/repo:Q4_K_M")
    ('hf.co', 'org', 'repo', 'Q4_K_M')
    """
    tag = DEFAULT_TAG
    colon, slash = name.rfind(":"), name.rfind("/")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    parts = name.split("/")
    if len(parts) == 1:
        host, namespace, model = DEFAULT_HOST, DEFAULT_NAMESPACE, parts[0]
    elif len(parts) == 2:
        host, (namespace, model) = DEFAULT_HOST, parts
    elif len(parts) == 3:
        host, namespace, model = parts
    else:
        raise error("ollama_bad_name", name=name)
    if not (HOST.match(host) and PART.match(namespace) and "." not in namespace and PART.match(model)
            and PART.match(tag)):
        raise error("ollama_bad_name", name=name)
    return host, namespace, model, tag


def blob_path(root: Path, digest: str) -> Path:
    m = DIGEST.match(str(digest))
    if not m:
        raise error("ollama_bad_digest", digest=digest)
    return root / "blobs" / f"sha256-{m.group(1)}"


def verified_blob(root: Path, digest: str, manifest: Path) -> Path:
    """The blob of a digest, after checking that it exists and that its sha256 is the digest."""
    path = blob_path(root, digest)
    if not path.is_file():
        raise error("ollama_missing_blob", digest=digest, path=path, manifest=manifest)
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            sha.update(chunk)
    if sha.hexdigest() != DIGEST.match(digest).group(1):  # type: ignore[union-attr]
        raise error("ollama_bad_blob", path=path, digest=digest, actual=sha.hexdigest())
    return path


def resolve_ollama(spec: str) -> Location:
    """The model layer's GGUF, with params, system prompt, template and licenses as extras."""
    host, namespace, model, tag = parse_name(spec)
    root = store_root()
    manifest = root / "manifests" / host / namespace / model / tag
    label = f"ollama:{spec}"
    if not manifest.is_file():
        raise error("ollama_not_found", name=spec, path=manifest, model=f"{model}:{tag}")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        layers = data["layers"]
        if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
            raise TypeError("layers is not a list of objects")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise error("ollama_bad_manifest", path=manifest, detail=exc) from None
    extras: dict[str, Any] = {"manifest": str(manifest), "license": []}
    gguf_path = None
    if isinstance(data.get("config"), dict) and "digest" in data["config"]:
        verified_blob(root, data["config"]["digest"], manifest)
    for layer in layers:
        kind = str(layer.get("mediaType", "")).removeprefix(MEDIA)
        path = verified_blob(root, layer.get("digest", ""), manifest)
        if kind == "model":
            gguf_path = path
        elif kind == "params":
            try:
                params = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise error("ollama_bad_params", path=path, detail=exc) from None
            if not isinstance(params, dict):
                raise error("ollama_bad_params", path=path, detail="not a JSON object")
            extras["params"] = params
        elif kind == "system":
            extras["system"] = path.read_text(encoding="utf-8")
        elif kind in ("template", "prompt"):
            extras["template"] = path.read_text(encoding="utf-8")
        elif kind == "license":
            extras["license"].append(path.read_text(encoding="utf-8"))
    if gguf_path is None:
        raise error("ollama_no_model_layer", path=manifest)
    return Location("gguf", gguf_path, label, extras)


def sampling_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """The Ollama parameters qwen3-tracer's sampler understands: temperature, top_k, top_p, stop.

    >>> sampling_defaults({"temperature": 0.6, "top_k": 20, "stop": "<|im_end|>", "num_ctx": 4096})
    {'temperature': 0.6, 'top_k': 20, 'stop': ('<|im_end|>',)}
    """
    out: dict[str, Any] = {}
    for key, kind in (("temperature", float), ("top_k", int), ("top_p", float)):
        if key in params:
            try:
                out[key] = kind(params[key])
            except (TypeError, ValueError):
                raise error("ollama_bad_param", key=key, value=params[key]) from None
    if "stop" in params:
        stops = params["stop"] if isinstance(params["stop"], list) else [params["stop"]]
        out["stop"] = tuple(str(s) for s in stops)
    return out
