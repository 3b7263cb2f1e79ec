"""Scanning: walk the roots in order, examine files, keep the order.

The walk lists directories and records them; runs of a directory's other entries go to
``examine``, which stats, reuses or hashes them (large files on a thread pool). When most
files must be hashed, subtrees go to worker processes that write their lines to scratch
files, read back in walk order. The output is the same however the work was spread.
Entries come out sorted component by component (``order_key``).
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
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from systraq.fs.nofollow import (
    DirCache,
    ThroughSymlink,
    join,
    open_dir_at,
    pseudo_fs_devices,
    split,
)
from systraq.pathcodec import escape, join_field
from systraq.patterns import order_key
from systraq.snapshot import examine, xattrs
from systraq.snapshot.entry import OK, RACED, UNREADABLE, Entry
from systraq.snapshot.examine import Examiner, Outcome, Unit
from systraq.snapshot.growing import Growth
from systraq.snapshot.hashcache import PreviousSnapshot, ReusePolicy
from systraq.snapshot.hashing import DEFAULT_LIMIT
from systraq.snapshot.listfiles import Root
from systraq.snapshot.pathrules import PathRules, Scope
from systraq.snapshot.state import Header, entry_line, parse_entry, stat_columns

# Names per unit (a run of one directory's non-directories).
UNIT_SIZE = 256
# Lines handed on at a time.
CHUNK_SIZE = 1024
# Large files being hashed at once (each holds an open file); the walk waits beyond this.
IN_FLIGHT_PER_THREAD = 8
# Directories this deep below a listed one are scanned, each with all below it, by worker
# processes: the per-file work is Python, and a process per core is what uses the cores.
SPLIT_DEPTH = 2
# A tree whose previous snapshot had fewer entries is scanned in this process alone.
PARALLEL_MIN_ENTRIES = 20_000
# Subtrees in flight per worker process before the walk waits (their lines wait on disk:
# the walk must not stall behind one large subtree while the other workers idle).
SUBTREES_PER_WORKER = 256

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
    partial: int = 0  # files hashed only up to snapshot.hash_limit
    rehashed: int = 0  # unchanged files read again by the rolling rehash
    sizes: int = 0

    def count(self, seen: examine.Seen, size: int) -> None:
        """Count one examined name."""
        self.sizes += size
        match seen:
            case examine.Seen.HASHED | examine.Seen.PARTIAL:
                self.files_hashed += 1
                self.bytes_hashed += size
                self.partial += seen is examine.Seen.PARTIAL
            case examine.Seen.REUSED:
                self.hashes_reused += 1
            case examine.Seen.UNREADABLE:
                self.unreadable += 1
            case examine.Seen.RACED:
                self.raced += 1
            case examine.Seen.VANISHED:
                self.vanished += 1
            case examine.Seen.UNREACHABLE:
                self.unreachable += 1

    def add(self, other: ScanStats) -> None:
        """Add a subtree's counts (its entries are counted as its lines are handed on)."""
        for name in ("files_hashed", "bytes_hashed", "hashes_reused", "unreadable", "raced",
                     "vanished", "unreachable", "partial", "rehashed", "sizes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Scanner:
    """Turns scan roots into state lines; counts what it met in ``stats``."""

    def __init__(self, algorithm: str, workers: int = 0,
                 previous: PreviousSnapshot | None = None,
                 progress: Progress | None = None,
                 pseudo_devices: frozenset[int] | None = None,
                 hash_limit: int = DEFAULT_LIMIT, rules: PathRules | None = None,
                 created_ns: int = 0) -> None:
        self.algorithm = algorithm
        self.hash_limit = hash_limit
        # Rule lines, when there are any: what is skipped, which files may only grow.
        self.rules = rules if rules is not None and rules.affects_scan else None
        self.growth = Growth(created_ns, previous.header.created_ns if previous else None)
        self.workers = workers or os.cpu_count() or 1
        self.previous = previous
        self.progress = progress
        self.stats = ScanStats()
        self.pseudo_devices = pseudo_fs_devices() if pseudo_devices is None else pseudo_devices
        # Worker processes pay on large trees, whether files are hashed or hashes reused;
        # on a tree known to be small, starting them costs more than they save.
        self.parallel = self.workers > 1 and (
            previous is None or previous.entries >= PARALLEL_MIN_ENTRIES)

    def entries(self, roots: Iterable[Root]) -> Iterator[Entry]:
        """The scan as Entry records (library use; the snapshot writes lines as they are)."""
        for chunk in self.chunks(roots):
            for line in chunk:
                yield parse_entry(line[:-1].decode())

    def chunks(self, roots: Iterable[Root]) -> Iterator[list[bytes]]:
        """Yield the state lines for everything below the roots, in order, a chunk at a time."""
        if not self.parallel:
            yield from self._chunks(self._walk(roots), None)
            return
        previous = (self.previous.path, self.previous.header, self.previous.policy) \
            if self.previous else None
        with tempfile.TemporaryDirectory(prefix="systraq-scan-") as scratch, \
                ProcessPoolExecutor(self.workers, multiprocessing.get_context("fork")) as pool:
            def fan_out(subtree: Subtree) -> Future[SubtreeResult]:
                return pool.submit(scan_subtree, subtree, self.algorithm, previous,
                                   self.pseudo_devices, scratch, self.hash_limit,
                                   self.growth)
            yield from self._chunks(self._walk(roots), fan_out)

    def _chunks(self, walk: Iterator[bytes | Unit | Subtree],
                fan_out: Callable[[Subtree], Future[SubtreeResult]] | None
                ) -> Iterator[list[bytes]]:
        policy = self.previous.policy if self.previous else None
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="hash") \
            if self.workers > 1 and fan_out is None else None
        examiner = Examiner(self.algorithm, policy, pool, self.hash_limit, self.growth)
        pending: deque[bytes | Outcome | Future] = deque()
        in_flight = subtrees = 0
        limit = IN_FLIGHT_PER_THREAD * self.workers
        subtree_limit = SUBTREES_PER_WORKER * self.workers
        chunk: list[bytes] = []
        try:
            for item in walk:
                if isinstance(item, Unit):
                    for outcome in examiner.examine(item):
                        pending.append(outcome)
                        in_flight += isinstance(outcome, Future)
                elif isinstance(item, Subtree):
                    assert fan_out is not None
                    pending.append(fan_out(item))
                    subtrees += 1
                else:
                    pending.append(item)
                # Hand on what is ready; wait for the oldest only past the limits.
                while pending:
                    head = pending[0]
                    if isinstance(head, Future):
                        if in_flight <= limit and subtrees <= subtree_limit \
                                and not head.done():
                            break
                        head = head.result()
                        if isinstance(head, SubtreeResult):
                            subtrees -= 1
                        else:
                            in_flight -= 1
                    pending.popleft()
                    if isinstance(head, SubtreeResult):
                        yield from self._subtree_chunks(head, chunk)
                        chunk = []
                    else:
                        self._take(head, chunk)
                if len(chunk) >= CHUNK_SIZE:
                    yield self._hand_on(chunk)
                    chunk = []
            while pending:
                head = pending.popleft()
                head = head.result() if isinstance(head, Future) else head
                if isinstance(head, SubtreeResult):
                    yield from self._subtree_chunks(head, chunk)
                    chunk = []
                else:
                    self._take(head, chunk)
            self.stats.rehashed += examiner.rehashed
            yield self._hand_on(chunk)
        finally:
            for head in pending:  # an error stopped the walk: let the pool close its files
                if isinstance(head, Future):
                    head.cancel()
            if pool is not None:
                pool.shutdown(wait=True)

    def _subtree_chunks(self, result: SubtreeResult, before: list[bytes]
                        ) -> Iterator[list[bytes]]:
        """The lines waiting before a subtree, then the subtree's lines from its file."""
        if before:
            yield self._hand_on(before)
        self.stats.add(result.stats)
        if result.output is None:
            return
        try:
            with open(result.output, "rb") as lines:
                chunk: list[bytes] = []
                for line in lines:
                    chunk.append(line)
                    if len(chunk) >= 8 * CHUNK_SIZE:
                        yield self._hand_on(chunk)
                        chunk = []
                if chunk:
                    yield self._hand_on(chunk)
        finally:
            os.unlink(result.output)

    def _take(self, item: bytes | Outcome, chunk: list[bytes]) -> None:
        if isinstance(item, bytes):
            chunk.append(item)
            return
        line, seen, size = item
        self.stats.count(seen, size)
        if line is not None:
            chunk.append(line)

    def _hand_on(self, chunk: list[bytes]) -> list[bytes]:
        self.stats.entries += len(chunk)
        if self.progress:
            self.progress(self.stats.entries, self.stats.sizes)
        return chunk

    # The walk: directories here, everything else as units.

    def _walk(self, roots: Iterable[Root]) -> Iterator[bytes | Unit]:
        with DirCache() as dirs:
            for root in roots:
                scope = self.rules.scope(root.path) if self.rules is not None else None
                if scope is not None and scope.prune:
                    continue
                parent, name = (b"/", b"") if root.path == b"/" else split(root.path)
                try:
                    parent_fd = dirs.open(parent)
                except (ThroughSymlink, FileNotFoundError):
                    self.stats.vanished += 1
                    continue
                except OSError:
                    self.stats.unreachable += 1
                    continue
                yield from self._walk_root(parent_fd, parent, name, root, scope)

    def _walk_root(self, parent_fd: int, parent: bytes, name: bytes, root: Root,
                   scope: Scope | None) -> Iterator[bytes | Unit]:
        try:
            st = os.stat(name or b"/", dir_fd=parent_fd if name else None,
                         follow_symlinks=False)
        except OSError as err:
            self._lost(err)
            return
        if not stat.S_ISDIR(st.st_mode):
            if scope is None or not scope.skip:
                yield self._unit(parent, escape(parent), parent_fd, [name],
                                 [name] if scope is not None and scope.growing else ())
            return
        # An explicit stack: a hostile home may nest directories deeper than Python recurses.
        stack: list[tuple[int, bytes, str, Iterator[tuple[bytes, bool]], Scope | None]] = []
        try:
            yield from self._enter(stack, parent_fd if name else None, name or b"/",
                                   root.path, escape(root.path), st, root.recursive, scope,
                                   blind=root.blind)
            yield from self._drain(stack, st.st_dev, split_at=SPLIT_DEPTH if self.parallel
                                   else None)
        finally:
            for fd, *_ in stack:
                os.close(fd)

    def _drain(self, stack: list, root_dev: int, split_at: int | None
               ) -> Iterator[bytes | Unit | Subtree]:
        """Walk the directories on the stack to the end, children in name order."""
        while stack:
            fd, path, field, children, scope = stack[-1]
            run: list[bytes] = []
            grows: list[bytes] = []
            # Only lines still pending below a directory make its children differ from it.
            narrow = scope is not None and bool(scope.pending)
            child_scope = scope
            for child, is_dir in children:
                if narrow:
                    assert scope is not None
                    child_scope = scope.child(child)
                    if child_scope.prune:
                        continue
                if not is_dir:
                    if child_scope is not None:
                        if child_scope.skip:
                            continue
                        if child_scope.growing:
                            grows.append(child)
                    run.append(child)
                    if len(run) >= UNIT_SIZE:
                        yield self._unit(path, field, fd, run, grows)
                        run, grows = [], []
                    continue
                if run:
                    yield self._unit(path, field, fd, run, grows)
                    run, grows = [], []
                if split_at is not None and len(stack) >= split_at:
                    st = os.fstat(fd)
                    yield Subtree(path, field, (st.st_dev, st.st_ino), child, root_dev,
                                  child_scope)
                    continue
                yield from self._child_dir(stack, fd, path, field, child, root_dev,
                                           child_scope)
                break
            else:
                if run:
                    yield self._unit(path, field, fd, run, grows)
                os.close(fd)
                stack.pop()

    def subtree(self, subtree: Subtree, dirs: DirCache) -> Iterator[list[bytes]]:
        """A subtree's lines (the directory and all below it), as the whole walk has them."""
        try:
            parent_fd = dirs.open(subtree.parent)
            st = os.fstat(parent_fd)
        except (OSError, ThroughSymlink):
            self.stats.vanished += 1
            return
        if (st.st_dev, st.st_ino) != subtree.parent_id:  # replaced meanwhile
            self.stats.vanished += 1
            return
        stack: list[tuple[int, bytes, str, Iterator[tuple[bytes, bool]], Scope | None]] = []

        def walk() -> Iterator[bytes | Unit | Subtree]:
            try:
                yield from self._child_dir(stack, parent_fd, subtree.parent,
                                           subtree.parent_field, subtree.name, subtree.root_dev,
                                           subtree.scope)
                yield from self._drain(stack, subtree.root_dev, split_at=None)
            finally:
                for fd, *_ in stack:
                    os.close(fd)

        yield from self._chunks(walk(), None)

    def _lost(self, err: OSError) -> None:
        if err.errno in (errno.EACCES, errno.EPERM):
            self.stats.unreachable += 1
        else:
            self.stats.vanished += 1

    def _child_dir(self, stack: list, parent_fd: int, parent: bytes, parent_field: str,
                   name: bytes, root_dev: int, scope: Scope | None = None
                   ) -> Iterator[bytes | Unit]:
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError as err:
            self._lost(err)
            return
        if not stat.S_ISDIR(st.st_mode):  # replaced since it was listed
            if scope is None or not scope.skip:
                yield self._unit(parent, parent_field, parent_fd, [name],
                                 [name] if scope is not None and scope.growing else ())
            return
        # Pseudo file systems (/proc, /sys, /dev) below a listed directory are not entered.
        descend = st.st_dev == root_dev or st.st_dev not in self.pseudo_devices
        yield from self._enter(stack, parent_fd, name, join(parent, name), st=st,
                               field=join_field(parent_field, name), descend=descend,
                               scope=scope)

    def _enter(self, stack: list, parent_fd: int | None, name: bytes, path: bytes,
               field: str, st: os.stat_result, descend: bool, scope: Scope | None = None,
               blind: bool = False) -> Iterator[bytes]:
        """Record a directory (unless the rules skip it) and, when asked, push it to be
        walked; a ``blind`` one (a list line could not look into it) is recorded unreadable."""
        columns = stat_columns(st)
        record = scope is None or not scope.skip
        if not descend:
            if record:
                if blind:
                    self._count_status(UNREADABLE)
                yield entry_line(field, columns, UNREADABLE if blind else OK,
                                 attributes=_attributes_by_name(parent_fd, name, st))
            return
        try:
            fd = open_dir_at(parent_fd, name, expect=st)
        except OSError as err:
            if err.errno == errno.ENOENT:
                self.stats.vanished += 1
                return
            if not record:
                return
            denied = err.errno in (errno.EACCES, errno.EPERM)
            self._count_status(UNREADABLE if denied else RACED)
            attributes = _attributes_by_name(parent_fd, name, st) if denied else None
            yield entry_line(field, columns, UNREADABLE if denied else RACED,
                             attributes=attributes)
            return
        try:
            attributes: xattrs.Attributes | None = xattrs.of_fd(fd, st)
        except xattrs.Unreadable:
            attributes = None
        try:
            with os.scandir(fd) as listing:
                # encode(..., "surrogateescape") is os.fsencode without its checks.
                children = sorted((e.name.encode("utf-8", "surrogateescape"),
                                   e.is_dir(follow_symlinks=False)) for e in listing)
        except OSError:
            os.close(fd)
            if record:
                self._count_status(UNREADABLE)
                yield entry_line(field, columns, UNREADABLE, attributes=attributes)
            return
        if record:
            yield entry_line(field, columns, attributes=attributes)
        stack.append((fd, path, field, iter(children), scope))

    def _count_status(self, status: str) -> None:
        if status == UNREADABLE:
            self.stats.unreadable += 1
        else:
            self.stats.raced += 1

    def _unit(self, directory: bytes, dir_field: str, dir_fd: int, names: list[bytes],
              growing: Iterable[bytes] = ()) -> Unit:
        previous = {}
        if self.previous is not None:
            previous = self.previous.take_through(join(directory, names[-1]))
        return Unit(dir_fd, dir_field, list(names), previous, frozenset(growing))


def _attributes_by_name(parent_fd: int | None, name: bytes, st: os.stat_result
                        ) -> xattrs.Attributes | None:
    """A directory's attributes read without opening it (None: could not be read)."""
    try:
        if parent_fd is not None:
            return xattrs.of_name(parent_fd, name, st)
        fd = open_dir_at(None, b"/", expect=st)  # the root directory itself
        try:
            return xattrs.of_fd(fd, st)
        finally:
            os.close(fd)
    except (xattrs.Unreadable, OSError):
        return None


@dataclass(frozen=True)
class Subtree:
    """A directory (``name`` in ``parent``) to be scanned with all below it elsewhere."""

    parent: bytes
    parent_field: str
    parent_id: tuple[int, int]
    name: bytes
    root_dev: int
    scope: Scope | None = None  # the rules at ``name`` (None: no rule lines)


@dataclass
class SubtreeResult:
    output: str | None  # a file of state lines, removed once read
    stats: ScanStats


def scan_subtree(subtree: Subtree, algorithm: str,
                 previous: tuple[Path, Header, ReusePolicy] | None,
                 pseudo_devices: frozenset[int], scratch: str, hash_limit: int,
                 growth: Growth | None = None) -> SubtreeResult:
    """Worker process: scan one subtree into a file of lines in ``scratch``."""
    cursor = None
    if previous is not None:
        cursor = PreviousSnapshot.at(*previous, order_key(join(subtree.parent, subtree.name)))
    # Two threads: a large file hashes on the second while this one goes on (a worker with
    # one huge subtree then still gets help from an idle core).
    scanner = Scanner(algorithm, workers=2, previous=cursor, pseudo_devices=pseudo_devices,
                      hash_limit=hash_limit)
    scanner.parallel = False
    if growth is not None:
        scanner.growth = growth
    handle, output = tempfile.mkstemp(dir=scratch, suffix=".lines")
    with os.fdopen(handle, "wb", buffering=1 << 16) as out, DirCache() as dirs:
        for chunk in scanner.subtree(subtree, dirs):
            out.write(b"".join(chunk))
    if cursor is not None:
        cursor.close()
    return SubtreeResult(output, scanner.stats)
