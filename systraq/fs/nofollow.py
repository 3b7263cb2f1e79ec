"""Reaching and opening paths without ever following a symlink.

Every lookup goes one component at a time from an open directory with ``O_NOFOLLOW``, so a
symlink anywhere on the way (a hostile ``~/.ssh -> /root/.ssh``) is seen, not followed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
O_NOATIME = getattr(os, "O_NOATIME", 0)

PSEUDO_FS_TYPES = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs",
    "tracefs", "pstore", "bpf", "mqueue", "hugetlbfs", "configfs", "fusectl", "autofs",
    "binfmt_misc", "efivarfs", "rpc_pipefs", "nsfs", "selinuxfs", "fuse.gvfsd-fuse",
    "fuse.portal",
})


class ThroughSymlink(Exception):
    """A path's ancestor is a symlink (or not a directory): lookups stop there."""

    def __init__(self, ancestor: bytes) -> None:
        super().__init__(ancestor)
        self.ancestor = ancestor


def split(path: bytes) -> tuple[bytes, bytes]:
    """Split an absolute normalised path into (parent, name); '/' has parent '/'."""
    parent, _, name = path.rpartition(b"/")
    return parent or b"/", name


def join(parent: bytes, name: bytes) -> bytes:
    return parent + name if parent.endswith(b"/") else parent + b"/" + name


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_dev == b.st_dev and a.st_ino == b.st_ino and \
        stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode)


def open_dir_at(parent_fd: int | None, name: bytes, expect: os.stat_result | None = None) -> int:
    """Open a directory below parent_fd without following a symlink.

    With ``expect`` (the lstat seen before), raise FileNotFoundError-like ESTALE when what
    was opened is not that directory: it was replaced in between.
    """
    fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    if expect is not None:
        try:
            if not same_file(os.fstat(fd), expect):
                raise OSError(errno.ESTALE, "replaced while scanning", name)
        except BaseException:
            os.close(fd)
            raise
    return fd


def open_file_at(parent_fd: int | None, name: bytes, st: os.stat_result,
                 euid: int | None = None) -> int:
    """Open a regular file for reading: no symlink, no blocking, no atime update if allowed.

    ``euid`` saves a system call per file for callers that know it.
    """
    flags = FILE_FLAGS
    if O_NOATIME and ((os.geteuid() if euid is None else euid) in (0, st.st_uid)):
        flags |= O_NOATIME
    try:
        return os.open(name, flags, dir_fd=parent_fd)
    except PermissionError:
        if not flags & O_NOATIME:
            raise
        return os.open(name, FILE_FLAGS, dir_fd=parent_fd)


class DirCache:
    """Open directory fds by absolute path, reached component by component (bounded LRU)."""

    def __init__(self, size: int = 64) -> None:
        self._fds: OrderedDict[bytes, int] = OrderedDict()
        self._size = size

    def __enter__(self) -> DirCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])

    def open(self, path: bytes) -> int:
        """Return an fd for directory ``path`` (owned by the cache).

        Raise ThroughSymlink naming the first ancestor (or the path itself) that is a
        symlink or not a directory, OSError for a component that does not exist or cannot
        be searched.
        """
        fd = self._fds.get(path)
        if fd is not None:
            self._fds.move_to_end(path)
            return fd
        if path == b"/":
            fd = os.open(b"/", DIR_FLAGS)
        else:
            parent, name = split(path)
            parent_fd = self.open(parent)
            try:
                fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ThroughSymlink(path) from None
                raise
        self._fds[path] = fd
        if len(self._fds) > self._size:
            os.close(self._fds.popitem(last=False)[1])
        return fd


def pseudo_fs_devices(mountinfo: str = "/proc/self/mountinfo") -> frozenset[int]:
    """Device numbers of mounted pseudo file systems (/proc, /sys, /dev, ...)."""
    devices = set()
    try:
        with open(mountinfo, "rb") as lines:
            for line in lines:
                fields, _, tail = line.partition(b" - ")
                parts = fields.split()
                fstype = tail.split(b" ", 1)[0].decode("ascii", "replace")
                if len(parts) < 5 or fstype not in PSEUDO_FS_TYPES:
                    continue
                major, _, minor = parts[2].partition(b":")
                devices.add(os.makedev(int(major), int(minor)))
    except (OSError, ValueError):
        pass
    return frozenset(devices)
