"""Serving a class: the listen address and password rules of ``tracer app`` / ``tracer notebooks``, the settings
handed to the app, and clean interruption of the command line (SIGTERM behaves like Ctrl-C)."""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tracer import TracerError

PASSWORD_ENV = "TRACER_APP_PASSWORD"
TRACES_DIR_ENV = "QWEN3_TRACER_TRACES_DIR"
BUDGET_ENV = "QWEN3_TRACER_MAX_MEMORY"
WORKERS_ENV = "QWEN3_TRACER_WORKERS"
UPLOAD_ENV = "QWEN3_TRACER_MAX_UPLOAD_MB"


def is_loopback(address: str) -> bool:
    """True for addresses only this machine can reach.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def server_address(address: str, password: str | None) -> tuple[str, str | None]:
    """The address to bind and the class password: a non-loopback address is refused without a password."""
    try:
        if address != "localhost":
            ipaddress.ip_address(address)
    except ValueError:
        raise TracerError.of("safety.bad_address", address=address) from None
    password = password if password is not None else os.environ.get(PASSWORD_ENV)
    password = password or None
    if not is_loopback(address) and not password:
        raise TracerError.of("safety.password_required", address=address)
    return address, password


def default_traces_dir() -> Path:
    """A per-user data folder: ``$XDG_DATA_HOME/qwen3-tracer/traces`` (``~/.local/share`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "qwen3-tracer" / "traces"


def app_environment(traces_dir: str | None, password: str | None, budget: int, workers: int,
                    max_upload_mb: int) -> dict[str, str]:
    """The settings the explorer reads from its environment (a child of this process)."""
    folder = Path(traces_dir).expanduser() if traces_dir else default_traces_dir()
    if traces_dir and not folder.is_dir():
        raise TracerError.of("safety.traces_dir", path=folder)
    folder.mkdir(parents=True, exist_ok=True)
    env = {TRACES_DIR_ENV: str(folder.resolve()), BUDGET_ENV: str(budget), WORKERS_ENV: str(workers),
           UPLOAD_ENV: str(max_upload_mb)}
    env[PASSWORD_ENV] = password or ""
    return env


def one_line(text: str) -> str:
    """A message on one line, its control characters escaped (file contents may carry terminal escapes)."""
    from tracer.safety.safefiles import escape_controls

    return escape_controls(" ".join(text.split("\n")))


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """While the command runs, SIGTERM raises KeyboardInterrupt, so temporary files are removed as on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
