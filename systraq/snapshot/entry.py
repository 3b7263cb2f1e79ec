"""The record of one file-system object, as a snapshot sees it."""

from __future__ import annotations

import functools
import grp
import pwd
import stat
from dataclasses import dataclass

# One letter per file type, as find(1) prints them with %y.
TYPE_LETTERS = {
    stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFIFO: "p",
    stat.S_IFSOCK: "s", stat.S_IFCHR: "c", stat.S_IFBLK: "b",
}
TYPE_NAMES = {"f": "file", "d": "directory", "l": "symlink", "p": "fifo", "s": "socket",
              "c": "char device", "b": "block device", "?": "unknown"}

# What a scan could establish about an entry's content.
OK = "ok"
UNREADABLE = "unreadable"  # metadata recorded, content could not be read (or dir listed)
RACED = "raced"  # the object changed or was replaced while it was being scanned
PARTIAL = "partial"  # content hashed only up to the per-file cap (snapshot.hash_limit)
STATUSES = (OK, UNREADABLE, RACED, PARTIAL)
# Statuses whose entry carries a content hash.
HASHED_STATUSES = (OK, PARTIAL)


@dataclass(frozen=True, slots=True)
class Entry:
    path: bytes
    type: str
    perms: int
    uid: int
    user: str
    gid: int
    group: str
    size: int
    mtime_ns: int
    ctime_ns: int
    dev: int
    ino: int
    nlink: int
    status: str = OK
    hash: str = ""
    target: bytes | None = None
    # Extended attributes as text (systraq.snapshot.xattrs); None: not recorded.
    caps: str | None = None
    acl: str | None = None
    label: str | None = None
    xattrs: str | None = None


@functools.lru_cache(maxsize=4096)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return ""


@functools.lru_cache(maxsize=4096)
def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""
