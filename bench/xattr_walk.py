#!/usr/bin/env python3
"""Walk a tree and lstat every entry, with ``--xattrs`` also reading its extended
attributes as a snapshot does (bench use only: the cost of reading them all).

A snapshot reads the attributes of directories and of files it hashes; an unchanged file
keeps its previous line, attributes included (they cannot change without moving ctime).
The difference between the two walks is what reading every entry's attributes costs.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys

from systraq.snapshot import xattrs


def walk(top: bytes, read_attributes: bool) -> int:
    count = 0
    stack = [os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)]
    while stack:
        fd = stack.pop()
        try:
            with os.scandir(fd) as listing:
                names = [os.fsencode(e.name) for e in listing]
            for name in names:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                count += 1
                if read_attributes:
                    with contextlib.suppress(xattrs.Unreadable):
                        xattrs.of_name(fd, name, st)
                if stat.S_ISDIR(st.st_mode):
                    with contextlib.suppress(OSError):
                        stack.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY
                                             | os.O_NOFOLLOW, dir_fd=fd))
        finally:
            os.close(fd)
    return count


if __name__ == "__main__":
    print(walk(os.fsencode(sys.argv[1]), "--xattrs" in sys.argv[2:]))
