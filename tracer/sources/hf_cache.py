"""``hf:ORG/NAME[@REVISION]``: a model already in the Hugging Face hub cache, found offline by huggingface_hub.

The cache is ``$HF_HUB_CACHE``, else ``$HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub`` (``HF_HOME`` defaults to
``$XDG_CACHE_HOME/huggingface`` or ``~/.cache/huggingface``), read at every call (huggingface_hub itself reads
the variables once, when it is imported). A repo is ``models--ORG--NAME/`` with ``refs/main``, ``snapshots/<commit>/``
and ``blobs/``; the snapshot folder is an ordinary checkpoint folder, or holds GGUF files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tracer.sources import Location, error

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_root() -> Path:
    """Where huggingface_hub keeps downloaded repos, from the environment as it is now."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def parse_hf(spec: str) -> tuple[str, str | None]:
    """``ORG/NAME[@REVISION]`` -> (repo id, revision or None).

    >>> parse_hf("Qwen/Qwen3-0.6B@main")
    ('Qwen/Qwen3-0.6B', 'main')
    """
    repo, _, revision = spec.partition("@")
    if not REPO_ID.match(repo) or "--" in repo or ".." in repo:
        raise error("hf_bad_name", name=spec)
    return repo, revision or None


def resolve_hf(spec: str) -> Location:
    """The snapshot folder of a cached repo (or its one GGUF file), with a one-line error naming the cache."""
    repo, revision = parse_hf(spec)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise error("needs_hub") from None
    root = cache_root()
    folder = root / ("models--" + repo.replace("/", "--"))
    try:
        snapshot = Path(snapshot_download(repo, revision=revision, cache_dir=str(root), local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        at = f"@{revision}" if revision else ""
        command = f"hf download {repo}" + (f" --revision {revision}" if revision else "")
        raise error("hf_not_cached", name=f"{repo}{at}", folder=folder, command=command) from None
    label = f"hf:{repo}" + (f"@{revision}" if revision else "") + f" ({snapshot})"
    if (snapshot / "config.json").is_file():
        return Location("dir", snapshot, label)
    ggufs = sorted(snapshot.glob("*.gguf"))
    if len(ggufs) == 1:
        return Location("gguf", ggufs[0], label)
    if ggufs:
        raise error("hf_many_gguf", name=repo, files=", ".join(str(p) for p in ggufs[:4]))
    raise error("hf_no_weights", name=repo, folder=snapshot)
