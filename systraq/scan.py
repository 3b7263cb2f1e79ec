"""Scanning: lstat every path, hash regular files through a safe open, never follow a link.

Entries come out sorted component by component (see ``listfiles.order_key``): a directory,
then its children by name. Hashing runs on a thread pool (hashlib releases the GIL), while
the walk goes on; results are put back in walk order.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from systraq.entry import RACED, UNREADABLE, Entry
from systraq.hashing import Hasher, hash_fd
from systraq.listfiles import Root
from systraq.nofollow import (
    DirCache,
    ThroughSymlink,
    join,
    open_dir_at,
    open_file_at,
    pseudo_fs_devices,
    same_file,
    split,
)

# Files up to this size are hashed on the walking thread: a pool hand-off costs more.
INLINE_HASH_SIZE = 64 * 1024
# How many entries may wait for their hash before the walk pauses (bounds open fds too).
WINDOW = 256

_GONE = (errno.ENOENT,)
_DENIED = (errno.EACCES, errno.EPERM)
_REPLACED = (errno.ELOOP, errno.ENOTDIR, errno.ESTALE, errno.EINVAL, errno.ENXIO)

ReuseHash = Callable[[Entry], "str | None"]


@dataclass
class ScanStats:
    entries: int = 0
    files_hashed: int = 0
    bytes_hashed: int = 0
    hashes_reused: int = 0
    unreadable: int = 0
    raced: int = 0
    vanished: int = 0
    unreachable: int = 0


@dataclass
class _Pending:
    entry: Entry
    fd: int
    opened: os.stat_result


def _content_changed(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns) != (b.st_size, b.st_mtime_ns, b.st_ctime_ns)


class Scanner:
    """Turns scan roots into entries; counts what it met in ``stats``."""

    def __init__(self, factory: Callable[[], Hasher], workers: int = 0,
                 reuse: ReuseHash | None = None) -> None:
        self.factory = factory
        self.workers = workers or os.cpu_count() or 1
        self.reuse = reuse
        self.stats = ScanStats()
        self.pseudo_devices = pseudo_fs_devices()

    def scan(self, roots: Iterable[Root]) -> Iterator[Entry]:
        """Yield the entries below the roots, sorted; hashes filled in."""
        window: deque[Entry | Future[Entry]] = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="hash") as pool:
            for item in self._walk(roots):
                if isinstance(item, _Pending):
                    if item.opened.st_size <= INLINE_HASH_SIZE:
                        window.append(self._hash(item))
                    else:
                        window.append(pool.submit(self._hash, item))
                else:
                    window.append(item)
                while window and (len(window) > WINDOW or not isinstance(window[0], Future)
                                  or window[0].done()):
                    yield self._count(window.popleft())
            while window:
                yield self._count(window.popleft())

    def _count(self, item: Entry | Future[Entry]) -> Entry:
        entry = item.result() if isinstance(item, Future) else item
        self.stats.entries += 1
        if entry.status == UNREADABLE:
            self.stats.unreadable += 1
        elif entry.status == RACED:
            self.stats.raced += 1
        return entry

    def _hash(self, pending: _Pending) -> Entry:
        try:
            digest = hash_fd(pending.fd, self.factory, pending.opened.st_size)
            after = os.fstat(pending.fd)
        except OSError:
            return replace(pending.entry, status=UNREADABLE)
        finally:
            os.close(pending.fd)
        if _content_changed(pending.opened, after):
            return replace(pending.entry, status=RACED)
        self.stats.files_hashed += 1
        self.stats.bytes_hashed += pending.opened.st_size
        return replace(pending.entry, hash=digest)

    def _walk(self, roots: Iterable[Root]) -> Iterator[Entry | _Pending]:
        with DirCache() as dirs:
            for root in roots:
                if root.path == b"/":
                    parent_fd, name = None, b"/"
                else:
                    parent, name = split(root.path)
                    try:
                        parent_fd = dirs.open(parent)
                    except (ThroughSymlink, FileNotFoundError):
                        self.stats.vanished += 1
                        continue
                    except OSError:
                        self.stats.unreachable += 1
                        continue
                yield from self._walk_root(parent_fd, name, root)

    def _walk_root(self, parent_fd: int | None, name: bytes, root: Root
                   ) -> Iterator[Entry | _Pending]:
        visited = self._visit(parent_fd, name, root.path, root.recursive, None)
        if visited is None:
            return
        root_dev = visited[0].dev if isinstance(visited[0], Entry) else None
        # An explicit stack: a hostile home may nest directories deeper than Python recurses.
        stack: list[tuple[int, bytes, Iterator[bytes]]] = []
        try:
            while True:
                if visited is not None:
                    item, fd, names = visited
                    yield item
                    if fd is not None:
                        stack.append((fd, item.path, iter(names)))
                if not stack:
                    return
                fd, path, names = stack[-1]
                child = next(names, None)
                if child is None:
                    os.close(fd)
                    stack.pop()
                    visited = None
                    continue
                visited = self._visit(fd, child, join(path, child), True, root_dev)
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    def _visit(self, parent_fd: int | None, name: bytes, path: bytes, descend: bool,
               root_dev: int | None) -> tuple[Entry | _Pending, int | None, list[bytes]] | None:
        """Look at one path: its entry (or file waiting for a hash), and a directory to enter."""
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError as err:
            if err.errno in _DENIED:
                self.stats.unreachable += 1
            else:
                self.stats.vanished += 1
            return None
        mode = st.st_mode
        item: Entry | _Pending | None
        if stat.S_ISREG(mode):
            item = self._visit_file(parent_fd, name, path, st)
        elif stat.S_ISLNK(mode):
            item = self._visit_symlink(parent_fd, name, path, st)
        elif stat.S_ISDIR(mode):
            return self._visit_dir(parent_fd, name, path, st, descend, root_dev)
        else:
            item = Entry.from_stat(path, st)
        return None if item is None else (item, None, [])

    def _visit_symlink(self, parent_fd: int | None, name: bytes, path: bytes,
                       st: os.stat_result) -> Entry | None:
        try:
            target = os.readlink(name, dir_fd=parent_fd)
        except FileNotFoundError:
            self.stats.vanished += 1
            return None
        except OSError:
            return Entry.from_stat(path, st, status=RACED)
        return Entry.from_stat(path, st, target=os.fsencode(target))

    def _visit_dir(self, parent_fd: int | None, name: bytes, path: bytes, st: os.stat_result,
                   descend: bool, root_dev: int | None
                   ) -> tuple[Entry, int | None, list[bytes]] | None:
        # Pseudo file systems (/proc, /sys, /dev) below a listed directory are not entered.
        if not descend or (st.st_dev != root_dev and st.st_dev in self.pseudo_devices
                           and root_dev is not None):
            return (Entry.from_stat(path, st), None, [])
        try:
            fd = open_dir_at(parent_fd, name, expect=st)
        except OSError as err:
            failed = self._failed(err, path, st)
            return None if failed is None else (failed, None, [])
        try:
            names = sorted(os.fsencode(n) for n in os.listdir(fd))
        except OSError as err:
            os.close(fd)
            failed = self._failed(err, path, st)
            return None if failed is None else (failed, None, [])
        return (Entry.from_stat(path, st), fd, names)

    def _visit_file(self, parent_fd: int | None, name: bytes, path: bytes,
                    st: os.stat_result) -> Entry | _Pending | None:
        if self.reuse is not None:
            digest = self.reuse(Entry.from_stat(path, st))
            if digest:
                self.stats.hashes_reused += 1
                return Entry.from_stat(path, st, hash=digest)
        try:
            fd = open_file_at(parent_fd, name, st)
        except OSError as err:
            return self._failed(err, path, st)
        try:
            opened = os.fstat(fd)
        except OSError as err:
            os.close(fd)
            return self._failed(err, path, st)
        if not same_file(opened, st):
            os.close(fd)
            return Entry.from_stat(path, st, status=RACED)
        return _Pending(Entry.from_stat(path, opened), fd, opened)

    def _failed(self, err: OSError, path: bytes, st: os.stat_result) -> Entry | None:
        if err.errno in _GONE:
            self.stats.vanished += 1
            return None
        status = RACED if err.errno in _REPLACED else UNREADABLE
        return Entry.from_stat(path, st, status=status)
