"""Typed errors that carry their exit status and the file/line they are about."""

from __future__ import annotations

import enum
import os


class ExitStatus(enum.IntEnum):
    """Exit codes as diff(1) has them."""

    OK = 0
    DIFFERENCES = 1
    TROUBLE = 2


def shown_path(path: str | os.PathLike | bytes) -> str:
    """A path as a message shows it: a str as given (already escaped), any other path
    escaped as reports show paths, so that a name cannot forge a second line."""
    if isinstance(path, str):
        return path
    from systraq.pathcodec import escape

    return escape(os.fsencode(path))


class SystraqError(Exception):
    """Trouble the user must hear about: one line, naming the file and line when known."""

    status = ExitStatus.TROUBLE

    def __init__(self, message: str, path: str | os.PathLike | bytes | None = None,
                 line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = shown_path(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        return where + self.message


class ConfigError(SystraqError):
    """A setting or list file that cannot be right."""


class StateError(SystraqError):
    """A state file that cannot be read, or is not what it claims to be."""


class LockedError(SystraqError):
    """Another run holds the lock."""
