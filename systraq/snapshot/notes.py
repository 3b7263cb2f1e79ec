"""Notes a snapshot job leaves for the next report: what a report cannot see by itself.

A note is one line ``NS<TAB>TEXT`` in ``snapshot_<mode>.notes`` beside the snapshot: NS is
the creation time of the snapshot the note is about, TEXT is escaped like a path. A diff
shows the notes whose time lies after the copy it compares with and at or before the
snapshot it compares, so each note is shown by exactly one recorded report. The file keeps
the last few notes, is replaced atomically by the account that takes the snapshot, and is
read by the reporting account (root reads the pub account's) without following a symlink,
as a regular file, and only so far.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from systraq.fs.atomic import write_atomic
from systraq.pathcodec import EscapeError, escape, unescape

KEPT_NOTES = 16
_READ_LIMIT = 16384  # a few notes; another account's file gets no more say than that
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def read_notes(path: Path) -> list[tuple[int, str]]:
    """The notes in ``path`` as (time, escaped text); a missing, odd or malformed file or
    line counts as no note (a note is help, never a reason to stop a report)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as err:
        if err.errno not in (errno.ENOENT, errno.ELOOP, errno.EACCES, errno.ENXIO):
            raise
        return []
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        data = handle.read(_READ_LIMIT)
    notes = []
    for line in data.split(b"\n")[:-1]:  # a cut last line is dropped
        stamp, _, text = line.partition(b"\t")
        with contextlib.suppress(ValueError, EscapeError, UnicodeDecodeError):
            # Escaped again, so whatever the file holds cannot forge a report line.
            notes.append((int(stamp), escape(unescape(text.decode("utf-8")))))
    return notes[-KEPT_NOTES:]


def leave_note(path: Path, created_ns: int, text: str, private: bool) -> None:
    """Add a note about the snapshot created at ``created_ns`` (keeping the last few)."""
    notes = read_notes(path)[-(KEPT_NOTES - 1):]
    notes.append((created_ns, escape(text.encode("utf-8", "surrogateescape"))))
    data = "".join(f"{stamp}\t{note}\n" for stamp, note in notes).encode("utf-8")
    write_atomic(path, data, mode=0o600 if private else 0o644)


def notes_between(path: Path, after_ns: int, upto_ns: int) -> list[str]:
    """The notes about snapshots created after ``after_ns`` and at or before ``upto_ns``."""
    return [text for stamp, text in read_notes(path) if after_ns < stamp <= upto_ns]
