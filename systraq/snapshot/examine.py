"""Examining the non-directory entries of one directory: the scan's per-file work.

lstat each name; reuse an unchanged file's previous line; otherwise open it safely
(``O_NOFOLLOW``, never a FIFO or device, fstat must match the lstat), read its extended
attributes and hash it: small files right here, large ones on a thread pool (hashlib and
xxhash release the GIL while they hash, so a second core does real work). What is not
opened has its attributes read by name, never through a symlink.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

from systraq.fs.nofollow import open_file_at, same_file
from systraq.pathcodec import escape, join_field
from systraq.snapshot import growing, xattrs
from systraq.snapshot.entry import PARTIAL, RACED, UNREADABLE
from systraq.snapshot.growing import Growth, Prior
from systraq.snapshot.hashcache import ReusePolicy
from systraq.snapshot.hashing import DEFAULT_LIMIT, hash_fd, new_hasher
from systraq.snapshot.state import entry_line, kept_line, reusable, stat_columns
from systraq.snapshot.xattrs import Attributes

# Files at least this large are hashed on the pool; smaller ones cost less to hash here
# than to hand over.
THREAD_MIN_SIZE = 64 * 1024

_GONE = (errno.ENOENT,)
_REPLACED = (errno.ELOOP, errno.ENOTDIR, errno.ESTALE, errno.EINVAL, errno.ENXIO)

# What became of one name, for the scan's counts.
class Seen(enum.Enum):
    """What became of one name, for the scan's counts."""

    HASHED = "hashed"
    PARTIAL = "partial"  # hashed up to snapshot.hash_limit only
    REUSED = "reused"
    PLAIN = "plain"  # no content to hash: a symlink, fifo, device...
    UNREADABLE = "unreadable"
    RACED = "raced"
    VANISHED = "vanished"
    UNREACHABLE = "unreachable"


HASHED, PARTIAL_, REUSED, PLAIN = Seen.HASHED, Seen.PARTIAL, Seen.REUSED, Seen.PLAIN
UNREADABLE_, RACED_, VANISHED, UNREACHABLE = (Seen.UNREADABLE, Seen.RACED, Seen.VANISHED,
                                              Seen.UNREACHABLE)


@dataclass
class Unit:
    """Names in one open directory (none of them a directory when listed), in scan order,
    with the previous snapshot's lines for them by escaped path."""

    dir_fd: int
    dir_field: str
    names: list[bytes]
    previous: dict[bytes, bytes]
    growing: frozenset[bytes] = frozenset()  # names under a rule that lets them grow


class Outcome(NamedTuple):
    """One name's line (None: nothing to record), what became of it, and the bytes of
    regular file content it stands for."""

    line: bytes | None
    seen: Seen
    size: int


# A growing file's chain: what the previous snapshot recorded (None: nothing), and the two
# snapshots' times.
Chain = tuple[Prior | None, Growth]


class Examiner:
    def __init__(self, algorithm: str, policy: ReusePolicy | None,
                 pool: ThreadPoolExecutor | None, hash_limit: int = DEFAULT_LIMIT,
                 growth: Growth | None = None) -> None:
        self.factory = new_hasher(algorithm)
        self.policy = policy
        self.pool = pool
        self.hash_limit = hash_limit
        self.growth = growth or Growth(0, None)
        self.euid = os.geteuid()  # created after any privilege drop
        self.rehashed = 0  # unchanged files read again by the rolling rehash

    def examine(self, unit: Unit) -> list[Outcome | Future[Outcome]]:
        """One outcome per name, in order; large files' outcomes as futures."""
        return [self._one(unit.dir_fd, name, join_field(unit.dir_field, name), unit.previous,
                          name in unit.growing)
                for name in unit.names]

    def _one(self, dir_fd: int, name: bytes, field: str, previous_lines: dict[bytes, bytes],
             grows: bool = False) -> Outcome | Future[Outcome]:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as err:
            denied = err.errno in (errno.EACCES, errno.EPERM)
            return Outcome(None, UNREACHABLE if denied else VANISHED, 0)
        columns = stat_columns(st)
        mode = st.st_mode
        key = field.encode()
        previous = previous_lines.get(key) if previous_lines else None
        # A previous snapshot kept only for growing files' chains (--full, or every file due
        # for its rehash) has no line to reuse.
        same_record = self.policy is not None and self.policy.reuse and \
            reusable(previous, field, columns)
        if stat.S_ISREG(mode):
            # Reuse needs the whole stat record unchanged and the file not racy, and the
            # file not due for its rolling rehash.
            if same_record and self.policy is not None and \
                    max(st.st_mtime_ns, st.st_ctime_ns) < self.policy.racy_after_ns:
                if not self.policy.rehash.due(key):
                    if self.policy.upgrade:
                        previous = self._keep(previous, dir_fd, name, st)
                    return Outcome(previous, REUSED, st.st_size)
                self.rehashed += 1
            chain = (growing.prior_of(previous, self.growth), self.growth) if grows else None
            return self._open_and_hash(dir_fd, name, field, st, columns, chain)
        if stat.S_ISDIR(mode):  # became a directory since it was listed: not entered
            return Outcome(entry_line(field, columns, RACED, attributes=None), RACED_, 0)
        if same_record:
            # A link's target, like any attribute, cannot change without a new inode or
            # ctime: same record, same line.
            if self.policy is not None and self.policy.upgrade:
                previous = self._keep(previous, dir_fd, name, st)
            return Outcome(previous, PLAIN, 0)
        if stat.S_ISLNK(mode):
            try:
                target = os.readlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                return Outcome(None, VANISHED, 0)
            except OSError:
                return Outcome(entry_line(field, columns, RACED, attributes=None), RACED_, 0)
            return entry_line(field, columns, target_field=escape(os.fsencode(target)),
                              attributes=_by_name(dir_fd, name, st)), PLAIN, 0
        return Outcome(entry_line(field, columns, attributes=_by_name(dir_fd, name, st)),
                       PLAIN, 0)

    @staticmethod
    def _keep(previous: bytes, dir_fd: int, name: bytes, st: os.stat_result) -> bytes:
        """A previous line of an older format in this one: with the attributes it lacks."""
        return kept_line(previous, _by_name(dir_fd, name, st))

    def _open_and_hash(self, dir_fd: int, name: bytes, field: str, st: os.stat_result,
                       columns: str, chain: Chain | None = None
                       ) -> Outcome | Future[Outcome]:
        try:
            fd = open_file_at(dir_fd, name, st, self.euid)
        except OSError as err:
            return _failed(err, field, columns, st.st_size, dir_fd, name, st)
        try:
            opened = os.fstat(fd)
        except OSError as err:
            os.close(fd)
            return _failed(err, field, columns, st.st_size)
        if not same_file(opened, st):
            os.close(fd)
            return Outcome(entry_line(field, columns, RACED, attributes=None), RACED_,
                           st.st_size)
        if not _same_record(opened, st):
            columns = stat_columns(opened)
        if self.pool is not None and opened.st_size >= THREAD_MIN_SIZE:
            return self.pool.submit(_hash_open_file, fd, opened, field, columns, self.factory,
                                    self.hash_limit, chain)
        return _hash_open_file(fd, opened, field, columns, self.factory, self.hash_limit,
                               chain)


def _by_name(dir_fd: int, name: bytes, st: os.stat_result) -> Attributes | None:
    """The attributes of ``name`` (None: they could not be read)."""
    try:
        return xattrs.of_name(dir_fd, name, st)
    except xattrs.Unreadable:
        return None


def _same_record(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mode, a.st_uid, a.st_gid, a.st_size, a.st_mtime_ns, a.st_ctime_ns,
            a.st_nlink) == (b.st_mode, b.st_uid, b.st_gid, b.st_size, b.st_mtime_ns,
                            b.st_ctime_ns, b.st_nlink)


def _hash_open_file(fd: int, opened: os.stat_result, field: str, columns: str, factory,
                    limit: int, chain: Chain | None = None) -> Outcome:
    """Hash a file opened and checked by the caller (``columns`` from ``opened``); close it.
    A growing file (``chain`` given) is hashed up to its previous length too, and marked.

    Runs on any thread.
    """
    prior = chain[0] if chain is not None else None
    try:
        attributes: Attributes | None = xattrs.of_fd(fd, opened)
    except xattrs.Unreadable:
        attributes = None
    try:
        digest = hash_fd(fd, factory, opened, limit, prior.size if prior else None)
        after = os.fstat(fd)
    except OSError as err:
        return _failed(err, field, columns, opened.st_size)
    finally:
        os.close(fd)
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != \
            (opened.st_size, opened.st_mtime_ns, opened.st_ctime_ns):
        return Outcome(entry_line(field, columns, RACED, attributes=None), RACED_,
                       digest.read)
    if not digest.complete:
        return Outcome(entry_line(field, columns, PARTIAL, digest.value,
                                  attributes=attributes), PARTIAL_, digest.read)
    value = digest.value if chain is None else growing.marked(digest, prior, chain[1])
    return Outcome(entry_line(field, columns, digest=value, attributes=attributes),
                   HASHED, digest.read)


def _failed(err: OSError, field: str, columns: str, size: int, dir_fd: int | None = None,
            name: bytes = b"", st: os.stat_result | None = None) -> Outcome:
    """The line of a file that could not be read (attributes by name when ``st`` is given)."""
    if err.errno in _GONE:
        return Outcome(None, VANISHED, 0)
    if err.errno in _REPLACED:
        return Outcome(entry_line(field, columns, RACED, attributes=None), RACED_, size)
    attributes = _by_name(dir_fd, name, st) if dir_fd is not None and st is not None else None
    return Outcome(entry_line(field, columns, UNREADABLE, attributes=attributes),
                   UNREADABLE_, size)
