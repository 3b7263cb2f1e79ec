"""OS errors that say which file: a full or read-only file system names what failed.

``os.write``, ``fsync`` and ``close`` raise ENOSPC, EDQUOT or EIO without a file name, and
"No space left on device" alone does not say which file system filled up. Writers wrap
their work in ``naming(path)``; the command line shows ``describe(err)``, with the file
in the escaped form reports use, so a name cannot forge a second line.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, TextIO

from systraq.pathcodec import escape

PathName = str | bytes | os.PathLike


@contextlib.contextmanager
def naming(path: PathName) -> Iterator[None]:
    """Give an OSError raised inside that names no file (or only a name relative to a
    directory descriptor) the name ``path``."""
    try:
        yield
    except OSError as err:
        # A name relative to a directory descriptor means nothing to the reader either.
        if err.filename is None or _relative(err.filename):
            err.filename = path
            if _relative(err.filename2):
                err.filename2 = None
        raise


def _relative(name: PathName | None) -> bool:
    return name is not None and not os.fsencode(name).startswith(b"/")


def shown_path(path: PathName) -> str:
    """A path as error messages show it: escaped like paths in reports."""
    return escape(os.fsencode(path))


def describe(err: OSError) -> str:
    """``FILE: reason`` (the file escaped), or the reason alone when no file is known."""
    reason = err.strerror or str(err)
    if err.filename is None:
        return reason
    where = shown_path(err.filename)
    if err.filename2 is not None:
        where += f" → {shown_path(err.filename2)}"
    return f"{where}: {reason}"


class NamedStream:
    """A text stream whose write errors name it (``standard output``), for ``describe``."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self._stream = stream
        self._name = name

    def write(self, text: str) -> int:
        with naming(self._name):
            return self._stream.write(text)

    def flush(self) -> None:
        with naming(self._name):
            self._stream.flush()

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._stream, attribute)
