"""qwen3-tracer: see every number a Qwen3 model computes, from token ids to the next token."""

from __future__ import annotations

import errno
from types import MappingProxyType
from typing import Any

__version__ = "0.1.0"


class Message:
    """A catalog text not rendered yet: its key (``AREA.KEY``, see ``tracer.i18n``) and its values.

    ``str()`` is the English text; ``text(lang)`` the text in any language. A value that is itself a
    ``Message`` or a ``TracerError`` is rendered in the same language (a phrase, or an error quoted in another).
    """

    __slots__ = ("key", "values")

    def __init__(self, key: str, /, **values: Any) -> None:
        self.key = key
        self.values = values

    def text(self, lang: str | None = "en") -> str:
        """The message in ``lang`` (``en``, ``zh``, ``zh-Hans``, ``zh-Hant``)."""
        from tracer.i18n import t

        return t(self.key, lang, **{name: value.text(lang) if isinstance(value, (Message, TracerError)) else value
                                    for name, value in self.values.items()})

    def __str__(self) -> str:
        return self.text("en")

    def __repr__(self) -> str:
        return f"Message({self.key!r}, **{self.values!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return _message, (self.key, self.values)


def _message(key: str, values: dict[str, Any]) -> Message:
    return Message(key, **values)


class TracerError(Exception):
    """A problem with the user's input: the CLI prints it as one line and exits with code 2.

    ``TracerError.of(key, **values)`` keeps the catalog key, so the message can be shown in the user's
    language; ``str()`` stays English. ``TracerError(text)`` carries a fixed text (a third-party message).

    >>> exc = TracerError.of("i18n.unknown_language", lang="fr", choices="en, zh-Hans, zh-Hant")
    >>> str(exc)
    "unknown language 'fr'; choose one of en, zh-Hans, zh-Hant"
    >>> exc.text("zh-Hant") != str(exc), exc.key
    (True, 'i18n.unknown_language')
    >>> TracerError("plain text").text("zh")
    'plain text'
    """

    def __init__(self, message: str | Message) -> None:
        self.message = message if isinstance(message, Message) else None
        super().__init__(str(message))

    @classmethod
    def of(cls, key: str, /, **values: Any) -> TracerError:
        """The error whose text is the catalog entry ``key`` with ``values`` filled in."""
        return cls(Message(key, **values))

    @property
    def key(self) -> str | None:
        """The catalog key of the message (``None`` for a fixed text)."""
        return self.message.key if self.message is not None else None

    def text(self, lang: str | None = "en") -> str:
        """The message in ``lang``; a fixed text is the same in every language."""
        return self.message.text(lang) if self.message is not None else str(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.message if self.message is not None else str(self),)


_OS_REASONS = MappingProxyType({
    errno.ENOENT: "os_no_such_path", errno.EACCES: "os_permission", errno.EPERM: "os_permission",
    errno.EISDIR: "os_is_folder", errno.ENOTDIR: "os_not_folder", errno.ENOSPC: "os_disk_full",
    errno.EROFS: "os_read_only", errno.EEXIST: "os_exists"})


def os_reason(exc: OSError) -> Message | str:
    """Why the system refused a file, as words every language can show (the system's own words for a rare case).

    >>> os_reason(FileNotFoundError(errno.ENOENT, "No such file or directory")).text("zh-Hans")
    '没有这个文件或文件夹'
    """
    key = _OS_REASONS.get(exc.errno) if exc.errno is not None else None
    return Message(f"errors.{key}") if key else (exc.strerror or type(exc).__name__)
