"""Examining a run of non-directory entries of one directory: the scan's per-file work.

Runs in a worker process (or inline): lstat, reuse of an unchanged file's previous line,
else a safe open (``O_NOFOLLOW``, no FIFOs or devices, fstat must match the lstat) and a
hash. Returns finished state lines in the order given.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from systraq.entry import RACED, UNREADABLE
from systraq.hashcache import ReusePolicy
from systraq.hashing import hash_fd, new_hasher
from systraq.nofollow import DirCache, ThroughSymlink, open_file_at, same_file
from systraq.pathcodec import escape
from systraq.state import entry_line, stat_columns

_DENIED = (errno.EACCES, errno.EPERM)
_GONE = (errno.ENOENT,)
_REPLACED = (errno.ELOOP, errno.ENOTDIR, errno.ESTALE, errno.EINVAL, errno.ENXIO)


@dataclass
class Unit:
    """Names in one directory (none of them a directory when listed), in scan order,
    with the previous snapshot's lines for them."""

    dir_path: bytes
    dir_field: str
    dir_id: tuple[int, int]
    names: list[bytes]
    previous: dict[str, bytes]  # escaped path → line


@dataclass
class Counts:
    files_hashed: int = 0
    bytes_hashed: int = 0
    hashes_reused: int = 0
    unreadable: int = 0
    raced: int = 0
    vanished: int = 0
    unreachable: int = 0
    sizes: int = 0  # bytes of regular files seen, for progress


@dataclass
class UnitResult:
    lines: list[bytes]
    per_unit: list[int] = field(default_factory=list)  # how many lines each unit gave
    counts: Counts = field(default_factory=Counts)


class Examiner:
    """Per-process state: the hash, the reuse rule, open directories."""

    def __init__(self, algorithm: str, policy: ReusePolicy | None) -> None:
        self.factory = new_hasher(algorithm)
        self.policy = policy
        self.dirs = DirCache(size=32)

    def examine(self, units: list[Unit]) -> UnitResult:
        """Examine units in order; their lines in one list, their counts summed."""
        result = UnitResult([])
        for unit in units:
            before = len(result.lines)
            fd = self._open_dir(unit)
            if fd is None:
                result.counts.vanished += len(unit.names)
                result.per_unit.append(0)
                continue
            prefix = unit.dir_field if unit.dir_field != "/" else ""
            for name in unit.names:
                # Escaping is per character and never touches "/": fields compose like paths.
                path_field = f"{prefix}/{escape(name)}"
                line = self._one(fd, name, path_field, unit.previous.get(path_field),
                                 result.counts)
                if line is not None:
                    result.lines.append(line)
            result.per_unit.append(len(result.lines) - before)
        return result

    def _open_dir(self, unit: Unit) -> int | None:
        for _ in range(2):
            try:
                fd = self.dirs.open(unit.dir_path)
            except (OSError, ThroughSymlink):
                return None
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == unit.dir_id:
                return fd
            self.dirs.forget(unit.dir_path)  # replaced since we last opened it
        return None

    def _one(self, dir_fd: int, name: bytes, field: str, previous: bytes | None,
             counts: Counts) -> bytes | None:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as err:
            if err.errno in _DENIED:
                counts.unreachable += 1
            else:
                counts.vanished += 1
            return None
        columns = stat_columns(st)
        mode = st.st_mode
        if stat.S_ISREG(mode):
            counts.sizes += st.st_size
            if previous is not None and self.policy is not None and \
                    max(st.st_mtime_ns, st.st_ctime_ns) < self.policy.racy_after_ns and \
                    previous.startswith(f"{field}\t{columns}\tok\t".encode()):
                counts.hashes_reused += 1
                return previous
            return self._hash_file(dir_fd, name, field, st, columns, counts)
        if stat.S_ISLNK(mode):
            # A link's target cannot change without a new inode and ctime: same record, same line.
            if previous is not None and previous.startswith(f"{field}\t{columns}\tok\t".encode()):
                return previous
            try:
                target = os.readlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                counts.vanished += 1
                return None
            except OSError:
                counts.raced += 1
                return entry_line(field, columns, RACED)
            return entry_line(field, columns, target_field=escape(os.fsencode(target)))
        if stat.S_ISDIR(mode):  # became a directory since it was listed: not entered
            counts.raced += 1
            return entry_line(field, columns, RACED)
        return entry_line(field, columns)

    def _hash_file(self, dir_fd: int, name: bytes, field: str, st: os.stat_result,
                   columns: str, counts: Counts) -> bytes | None:
        try:
            fd = open_file_at(dir_fd, name, st)
        except OSError as err:
            return self._failed(err, field, columns, counts)
        try:
            opened = os.fstat(fd)
            if not same_file(opened, st):
                counts.raced += 1
                return entry_line(field, columns, RACED)
            digest = hash_fd(fd, self.factory, opened.st_size)
            after = os.fstat(fd)
        except OSError as err:
            return self._failed(err, field, columns, counts)
        finally:
            os.close(fd)
        columns = stat_columns(opened)
        if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != \
                (opened.st_size, opened.st_mtime_ns, opened.st_ctime_ns):
            counts.raced += 1
            return entry_line(field, columns, RACED)
        counts.files_hashed += 1
        counts.bytes_hashed += opened.st_size
        return entry_line(field, columns, digest=digest)

    @staticmethod
    def _failed(err: OSError, field: str, columns: str, counts: Counts) -> bytes | None:
        if err.errno in _GONE:
            counts.vanished += 1
            return None
        if err.errno in _REPLACED:
            counts.raced += 1
            return entry_line(field, columns, RACED)
        counts.unreadable += 1
        return entry_line(field, columns, UNREADABLE)


_examiner: Examiner | None = None


def init_worker(algorithm: str, policy: ReusePolicy | None) -> None:
    """Process pool initializer."""
    global _examiner
    _examiner = Examiner(algorithm, policy)


def examine_in_worker(units: list[Unit]) -> UnitResult:
    """Process pool entry point."""
    assert _examiner is not None
    return _examiner.examine(units)
