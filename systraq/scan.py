"""Scanning: walk the roots in order, examine files on every core, keep the order.

The walk (this process) lists directories and records them; runs of a directory's other
entries go, in batches, to worker processes (``examine``) that stat, hash and format
them. Results come back in walk order, so the output is the same whatever the number of
workers. Entries come out sorted component by component (``order_key``).
"""

from __future__ import annotations

import errno
import multiprocessing

# Imported now, not when the pool starts: a pub scan drops root first, and the account it
# drops to may not be able to read the Python installation's files.
import multiprocessing.popen_fork
import multiprocessing.synchronize
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, fields

from systraq.entry import RACED, UNREADABLE, Entry
from systraq.examine import Counts, Examiner, Unit, UnitResult, examine_in_worker, init_worker
from systraq.hashcache import PreviousSnapshot
from systraq.listfiles import Root
from systraq.nofollow import DirCache, ThroughSymlink, open_dir_at, pseudo_fs_devices, split
from systraq.pathcodec import escape
from systraq.state import entry_line, parse_entry, stat_columns

# Names per unit (a run of one directory's non-directories).
UNIT_SIZE = 256
# Entries per batch handed to a worker: large enough that the hand-off is cheap (a batch
# spans directories), small enough to keep both cores busy.
BATCH_SIZE = 512
# Batches in flight per worker before the walk waits (bounds memory on huge trees).
IN_FLIGHT_PER_WORKER = 4

Progress = Callable[[int, int], None]  # entries, bytes of regular files


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
    sizes: int = 0


class Scanner:
    """Turns scan roots into state lines; counts what it met in ``stats``."""

    def __init__(self, algorithm: str, workers: int = 0,
                 previous: PreviousSnapshot | None = None,
                 progress: Progress | None = None) -> None:
        self.algorithm = algorithm
        self.workers = workers or os.cpu_count() or 1
        self.previous = previous
        self.progress = progress
        self.stats = ScanStats()
        self.pseudo_devices = pseudo_fs_devices()

    def entries(self, roots: Iterable[Root]) -> Iterator[Entry]:
        """The scan as Entry records (library use; the snapshot writes lines as they are)."""
        for chunk in self.chunks(roots):
            for line in chunk:
                yield parse_entry(line[:-1].decode())

    def chunks(self, roots: Iterable[Root]) -> Iterator[list[bytes]]:
        """Yield the state lines for everything below the roots, in order, a batch at a time."""
        policy = self.previous.policy if self.previous else None
        queue: deque[tuple[list[bytes | Unit], Future[UnitResult] | None]] = deque()
        inline = Examiner(self.algorithm, policy)
        pool = None
        if self.workers > 1:
            pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("fork"),
                                       initializer=init_worker,
                                       initargs=(self.algorithm, policy))
        limit = IN_FLIGHT_PER_WORKER * self.workers
        batch: list[bytes | Unit] = []  # directory lines, and units to examine
        size = 0

        def flush() -> None:
            nonlocal batch, size
            units = [item for item in batch if isinstance(item, Unit)]
            done: Future[UnitResult] | None = None
            if units and pool is not None:
                done = pool.submit(examine_in_worker, units)
            elif units:
                done = Future()
                done.set_result(inline.examine(units))
            queue.append((batch, done))
            batch, size = [], 0

        try:
            for item in self._walk(roots):
                batch.append(item)
                size += len(item.names) if isinstance(item, Unit) else 1
                if size < BATCH_SIZE:
                    continue
                flush()
                while queue and (len(queue) > limit or queue[0][1] is None
                                 or queue[0][1].done()):
                    yield self._assemble(*queue.popleft())
            flush()
            while queue:
                yield self._assemble(*queue.popleft())
        finally:
            inline.dirs.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _assemble(self, batch: list[bytes | Unit], done: Future[UnitResult] | None
                  ) -> list[bytes]:
        """Put a batch's lines in walk order: directory lines between the units' results."""
        result = done.result() if done is not None else UnitResult([])
        for counter in fields(Counts):
            name = counter.name
            setattr(self.stats, name, getattr(self.stats, name) + getattr(result.counts, name))
        counts = iter(result.per_unit)
        position = 0
        lines: list[bytes] = []
        for item in batch:
            if isinstance(item, Unit):
                count = next(counts)
                lines.extend(result.lines[position:position + count])
                position += count
            else:
                lines.append(item)
        self.stats.entries += len(lines)
        if self.progress:
            self.progress(self.stats.entries, self.stats.sizes)
        return lines

    # The walk: directories here, everything else as units.

    def _walk(self, roots: Iterable[Root]) -> Iterator[bytes | Unit]:
        with DirCache() as dirs:
            for root in roots:
                parent, name = (b"/", b"") if root.path == b"/" else split(root.path)
                try:
                    parent_fd = dirs.open(parent)
                except (ThroughSymlink, FileNotFoundError):
                    self.stats.vanished += 1
                    continue
                except OSError:
                    self.stats.unreachable += 1
                    continue
                yield from self._walk_root(parent_fd, parent, name, root)

    def _walk_root(self, parent_fd: int, parent: bytes, name: bytes, root: Root
                   ) -> Iterator[bytes | Unit]:
        try:
            st = os.stat(name or b"/", dir_fd=parent_fd if name else None,
                         follow_symlinks=False)
        except OSError as err:
            self._lost(err)
            return
        if not stat.S_ISDIR(st.st_mode):
            parent_st = os.fstat(parent_fd)
            yield self._unit(parent, escape(parent), (parent_st.st_dev, parent_st.st_ino),
                             [name])
            return
        # An explicit stack: a hostile home may nest directories deeper than Python recurses.
        stack: list[tuple[int, bytes, str, tuple[int, int], Iterator[tuple[bytes, bool]]]] = []
        try:
            yield from self._enter(stack, parent_fd if name else None, name or b"/",
                                   root.path, escape(root.path), st, root.recursive)
            while stack:
                fd, path, field, dir_id, children = stack[-1]
                run: list[bytes] = []
                for child, is_dir in children:
                    if not is_dir:
                        run.append(child)
                        if len(run) >= UNIT_SIZE:
                            yield self._unit(path, field, dir_id, run)
                            run = []
                        continue
                    if run:
                        yield self._unit(path, field, dir_id, run)
                        run = []
                    yield from self._child_dir(stack, fd, path, field, child, st.st_dev)
                    break
                else:
                    if run:
                        yield self._unit(path, field, dir_id, run)
                    os.close(fd)
                    stack.pop()
        finally:
            for fd, *_ in stack:
                os.close(fd)

    def _lost(self, err: OSError) -> None:
        if err.errno in (errno.EACCES, errno.EPERM):
            self.stats.unreachable += 1
        else:
            self.stats.vanished += 1

    def _child_dir(self, stack: list, parent_fd: int, parent: bytes, parent_field: str,
                   name: bytes, root_dev: int) -> Iterator[bytes | Unit]:
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError as err:
            self._lost(err)
            return
        if not stat.S_ISDIR(st.st_mode):  # replaced since it was listed
            parent_st = os.fstat(parent_fd)
            yield self._unit(parent, parent_field, (parent_st.st_dev, parent_st.st_ino), [name])
            return
        # Pseudo file systems (/proc, /sys, /dev) below a listed directory are not entered.
        descend = st.st_dev == root_dev or st.st_dev not in self.pseudo_devices
        yield from self._enter(stack, parent_fd, name, _join(parent, name), st=st,
                               field=_join_field(parent_field, name), descend=descend)

    def _enter(self, stack: list, parent_fd: int | None, name: bytes, path: bytes,
               field: str, st: os.stat_result, descend: bool) -> Iterator[bytes]:
        """Record a directory and, when asked, push it to be walked."""
        columns = stat_columns(st)
        if not descend:
            yield entry_line(field, columns)
            return
        try:
            fd = open_dir_at(parent_fd, name, expect=st)
        except OSError as err:
            if err.errno == errno.ENOENT:
                self.stats.vanished += 1
                return
            denied = err.errno in (errno.EACCES, errno.EPERM)
            self._count_status(UNREADABLE if denied else RACED)
            yield entry_line(field, columns, UNREADABLE if denied else RACED)
            return
        try:
            with os.scandir(fd) as listing:
                children = sorted((os.fsencode(e.name), e.is_dir(follow_symlinks=False))
                                  for e in listing)
        except OSError:
            os.close(fd)
            self._count_status(UNREADABLE)
            yield entry_line(field, columns, UNREADABLE)
            return
        yield entry_line(field, columns)
        stack.append((fd, path, field, (st.st_dev, st.st_ino), iter(children)))

    def _count_status(self, status: str) -> None:
        if status == UNREADABLE:
            self.stats.unreadable += 1
        else:
            self.stats.raced += 1

    def _unit(self, directory: bytes, dir_field: str, dir_id: tuple[int, int],
              names: list[bytes]) -> Unit:
        previous = {}
        if self.previous is not None:
            previous = self.previous.take_through(_join(directory, names[-1]))
        return Unit(directory, dir_field, dir_id, list(names), previous)


def _join(parent: bytes, name: bytes) -> bytes:
    return parent + b"/" + name if parent != b"/" else b"/" + name


def _join_field(parent_field: str, name: bytes) -> str:
    # Escaping is per character and "/" is never escaped, so fields compose like paths.
    return f"{parent_field}/{escape(name)}" if parent_field != "/" else f"/{escape(name)}"
