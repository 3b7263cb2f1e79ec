"""Walking a directory tree without ever following a symlink.

Every directory is reached through ``DirCache`` (one component at a time, ``O_NOFOLLOW``),
children are visited in name order, depth first, with an explicit stack (a hostile home
may nest deeper than Python recurses). The caller's policy says which directories not to
enter, and why; pseudo file systems (/proc, /sys) below the top are never entered.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from systraq.fs.nofollow import DirCache, ThroughSymlink, join


@dataclass(frozen=True)
class Found:
    """A non-directory below the top, or a directory the walk did not enter (``skipped``)."""

    path: bytes
    st: os.stat_result
    skipped: str = ""  # why a directory was not entered ("" for everything else)


# Given a directory and its lstat, the reason not to enter it, or None to enter.
EnterPolicy = Callable[[bytes, os.stat_result], str | None]


def walk(dirs: DirCache, top: bytes, top_st: os.stat_result, *,
         may_enter: EnterPolicy | None = None,
         pseudo_devices: frozenset[int] = frozenset()) -> Iterator[Found]:
    """Everything below directory ``top``, in order; directories themselves only when
    they are not entered."""
    stack = [(top, top_st)]
    while stack:
        path, st = stack.pop()
        reason = may_enter(path, st) if may_enter is not None else None
        if reason is not None:
            yield Found(path, st, reason)
            continue
        try:
            fd = dirs.open(path)
            names = sorted(os.fsencode(n) for n in os.listdir(fd))
        except PermissionError:
            yield Found(path, st, "directory cannot be listed")
            continue
        except (ThroughSymlink, FileNotFoundError, NotADirectoryError):
            continue  # replaced or removed meanwhile
        subdirs = []
        for name in names:
            try:
                child_st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            child = join(path, name)
            if not stat.S_ISDIR(child_st.st_mode):
                yield Found(child, child_st)
            elif not (child_st.st_dev != st.st_dev and child_st.st_dev in pseudo_devices):
                subdirs.append((child, child_st))
        stack.extend(reversed(subdirs))
