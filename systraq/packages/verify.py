"""Checking installed package files against dpkg's checksums, on every core.

What is checked, as ``dpkg --verify`` and ``debsums`` check it: every path in a package's
``.list`` must exist; a path with an md5 (from ``.md5sums``, or ``Conffiles:`` for a
conffile) must be a regular file with that md5. Conffiles are checked apart (``--conffiles``,
like ``debsums -e``), since an edited conffile is normal. A diverted file is checked where
it was diverted to. The main process stats every file (reusing cached md5s), worker
processes hash the rest; nothing is ever opened through a symlink.
"""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from systraq.config import Settings
from systraq.errors import ExitStatus, SystraqError
from systraq.fs.nofollow import DirCache, ThroughSymlink, open_file_at, same_file
from systraq.packages.dpkgdb import Database, Package
from systraq.packages.md5cache import CacheWriter, Md5Cache, stat_key
from systraq.packages.resolve import Resolver, Unsafe
from systraq.pathcodec import escape
from systraq.snapshot.hashing import plain_digest

CHANGED = "changed"  # content differs from the package's md5
MISSING = "missing"
NOT_REGULAR = "not-regular"  # a package file that is no longer a regular file
UNREADABLE = "unreadable"  # could not be checked (trouble)
PROBLEMS = (CHANGED, MISSING, NOT_REGULAR, UNREADABLE)

BATCH_FILES = 256
BATCH_BYTES = 64 << 20
IN_FLIGHT = 16  # batches handed to the workers and not yet collected
# Fewer bytes than this left to hash after the stat pass: hash here, no pool.
POOL_MIN_BYTES = 32 << 20
_MISSING_ERRNOS = (errno.ENOENT, errno.ENOTDIR)

md5_factory = hashlib.md5


@dataclass(frozen=True)
class Finding:
    package: Package
    path: bytes  # the path checked (diverted-to path for a diverted file)
    problem: str
    conffile: bool = False
    obsolete: bool = False
    listed: bytes | None = None  # the path the package lists, when diverted
    detail: str = ""
    expected: str = ""  # the md5 the package ships ("" where it has none: a directory)


@dataclass
class Verification:
    root: bytes
    admindir: bytes
    conffiles: bool  # conffiles were checked (else every other file)
    packages: int = 0
    files: int = 0
    hashed: int = 0
    bytes_hashed: int = 0
    reused: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    without_md5sums: list[Package] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # database files that did not parse
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> ExitStatus:
        if self.problems or any(f.problem == UNREADABLE for f in self.findings):
            return ExitStatus.TROUBLE
        if self.findings or self.without_md5sums:
            return ExitStatus.DIFFERENCES
        return ExitStatus.OK


@dataclass(slots=True)
class _Item:
    """One path to check."""

    package: Package
    path: bytes  # checked path
    md5: str | None
    conffile: bool
    obsolete: bool
    listed: bytes | None

    @property
    def field(self) -> bytes:
        """The path as the cache spells it."""
        return escape(self.path).encode("utf-8", "surrogateescape")


# --- hashing, in worker processes ----------------------------------------------------------

_worker_dirs: DirCache | None = None


# What hashing one file gives: (md5 or None, outcome, size, stat key, newest of mtime and
# ctime). Outcomes: "ok", "missing", "raced", "not-regular:KIND", or an error text.
Hashed = tuple[str | None, str, int, bytes, int]


def _hash_batch(batch: list[tuple[bytes, bytes]]) -> list[Hashed]:
    """Hash (real directory, name) items; runs in a worker process."""
    global _worker_dirs
    if _worker_dirs is None:
        _worker_dirs = DirCache(256)
    return [_hash_one(_worker_dirs, directory, name) for directory, name in batch]


def _hash_one(dirs: DirCache, directory: bytes, name: bytes) -> Hashed:
    """lstat a name, open it only if it is a regular file (never through a symlink), check
    that what was opened is what was stat-ed, hash it, and check it did not change."""
    try:
        dir_fd = dirs.open(directory)
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except ThroughSymlink:
        return None, "raced", 0, b"", 0
    except OSError as err:
        outcome = "missing" if err.errno in _MISSING_ERRNOS else (err.strerror or str(err))
        return None, outcome, 0, b"", 0
    if not stat.S_ISREG(st.st_mode):
        return None, f"not-regular:{_kind(st)}", 0, stat_key(st), _newest(st)
    try:
        fd = open_file_at(dir_fd, name, st)
    except OSError as err:
        outcome = "missing" if err.errno in _MISSING_ERRNOS else "raced" \
            if err.errno in (errno.ELOOP, errno.ENXIO) else (err.strerror or str(err))
        return None, outcome, 0, b"", 0
    try:
        opened = os.fstat(fd)
        if not same_file(opened, st):
            return None, "raced", 0, b"", 0
        digest = plain_digest(fd, md5_factory, opened.st_size)
        after = os.fstat(fd)
    except OSError as err:
        return None, err.strerror or str(err), 0, b"", 0
    finally:
        os.close(fd)
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != \
            (opened.st_size, opened.st_mtime_ns, opened.st_ctime_ns):
        return None, "raced", opened.st_size, b"", 0
    return digest, "ok", opened.st_size, stat_key(opened), _newest(opened)


def _kind(st: os.stat_result) -> str:
    return "symlink" if stat.S_ISLNK(st.st_mode) else "directory" \
        if stat.S_ISDIR(st.st_mode) else "not a regular file"


def _newest(st: os.stat_result) -> int:
    return max(st.st_mtime_ns, st.st_ctime_ns)


def _pool(workers: int) -> Executor | None:
    workers = workers or len(os.sched_getaffinity(0)) or 1
    if workers < 2:
        return None
    return ProcessPoolExecutor(workers, multiprocessing.get_context("fork"))


def _warm(_: int) -> int:
    return os.getpid()


# --- the run ------------------------------------------------------------------------------

class Verifier:
    def __init__(self, db: Database, conffiles: bool, cache: Md5Cache | None,
                 writer: CacheWriter | None, reverify_days: float, pool: Executor | None
                 ) -> None:
        self.db = db
        self.conffiles = conffiles
        self.cache = cache
        self.cached = cache is not None and bool(cache.by_key)  # md5s to look up
        self.writer = writer
        self.reverify_days = reverify_days
        self.pool = pool
        self.resolver = Resolver(db.root)
        self.dirs = DirCache(256)
        self._real_dirs: dict[bytes, bytes] = {}
        self.result = Verification(db.root, db.admindir, conffiles)
        self.now_s = int(time.time())
        # Stat-ed files waiting for an md5: (item, stat, real dir, name).
        self.pending: list[tuple[_Item, os.stat_result, bytes, bytes]] = []
        # Cached md5s the rolling re-verification takes this run.
        self.due = cache.due(self.now_s, reverify_days) if cache is not None else set()

    # -- what to check --------------------------------------------------------------------

    def items(self, package: Package) -> list[_Item]:
        db = self.db
        try:
            listed = db.file_list(package)
        except SystraqError as err:
            self.result.problems.append(str(err))
            listed = None
        if self.conffiles:
            return [_Item(package, db.checked_path(c.path, package), c.md5 or None, True,
                          c.obsolete, c.path if db.checked_path(c.path, package) != c.path
                          else None) for c in package.conffiles]
        try:
            sums = db.md5sums(package)
        except SystraqError as err:
            self.result.problems.append(str(err))
            sums = {}
        if sums is None:
            sums = {}
            self._no_md5sums.add(package.key)
        conffiles = {c.path for c in package.conffiles}
        paths = listed if listed is not None else list(sums)
        out = []
        for path in paths:
            if path in conffiles:
                continue
            checked = db.checked_path(path, package)
            out.append(_Item(package, checked, sums.get(path), False, False,
                             path if checked != path else None))
        return out

    # -- the stat pass --------------------------------------------------------------------

    def run(self, progress: Callable[[int], None] | None = None) -> Verification:
        started = time.perf_counter()
        self._no_md5sums: set[str] = set()
        self._regular_without_md5: set[str] = set()
        futures: list[tuple[Future, list]] = []
        batch: list = []
        batch_bytes = 0
        for package in sorted(self.db.packages, key=lambda p: (p.name, p.arch)):
            if not package.on_disk:
                continue
            self.result.packages += 1
            for item in self.items(package):
                self.result.files += 1
                self._stat(item)
            if package.key in self._no_md5sums and package.key in self._regular_without_md5:
                self.result.without_md5sums.append(package)
            if progress is not None:
                progress(self.result.files)
            # Hand full batches to the workers as soon as they are known.
            while self.pool is not None and self.pending:
                work = self.pending.pop()
                batch.append(work)
                batch_bytes += work[1].st_size if work[1] is not None else 0
                if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                    futures.append((self._submit(batch), batch))
                    batch, batch_bytes = [], 0
                    # Memory stays bounded: take results in as the workers finish them.
                    while futures and (futures[0][0].done() or len(futures) > IN_FLIGHT):
                        self._collect(futures[0][0].result(), futures[0][1])
                        futures.pop(0)
        left = sum(w[1].st_size for w in self.pending if w[1] is not None)
        if self.pool is None and left >= POOL_MIN_BYTES:
            self.pool = ThreadPoolExecutor(len(os.sched_getaffinity(0)) or 1)
        if self.pool is not None:
            batch += self.pending
            self.pending = []
            for start in range(0, len(batch), BATCH_FILES):
                part = batch[start: start + BATCH_FILES]
                futures.append((self._submit(part), part))
        else:
            batch = self.pending
            self.pending = []
            if batch:
                self._collect(_hash_batch_local(self.dirs, batch), batch)
        for future, part in futures:
            self._collect(future.result(), part)
        self.result.findings.sort(key=lambda f: (f.package.name, f.package.arch, f.path))
        self.result.seconds = time.perf_counter() - started
        return self.result

    def _submit(self, batch: list) -> Future:
        assert self.pool is not None
        work = [(real_dir, name) for _, _, real_dir, name in batch]
        if isinstance(self.pool, ThreadPoolExecutor):
            return self.pool.submit(_hash_batch_local, DirCache(64), batch)
        return self.pool.submit(_hash_batch, work)

    def _where(self, path: bytes) -> tuple[bytes, bytes]:
        """(real directory, name) of a package path, remembered per directory."""
        parent, _, name = path.rpartition(b"/")
        real_dir = self._real_dirs.get(parent)
        if real_dir is None:
            directory, name = self.resolver.split(path)
            real_dir = self._real_dirs[parent] = self.resolver.real(directory) or b"/"
        elif not name or name in (b".", b".."):
            raise Unsafe("not a file path", errno.EINVAL)
        return real_dir, name

    def _stat(self, item: _Item) -> None:
        try:
            real_dir, name = self._where(item.path)
            if item.md5 is not None and not self.cached:
                # Nothing to look up: the worker stats the file as it hashes it.
                self.pending.append((item, None, real_dir, name))
                return
            st = os.stat(name, dir_fd=self.dirs.open(real_dir), follow_symlinks=False)
        except Unsafe as err:
            self._finding(item, UNREADABLE, str(err))
            return
        except ThroughSymlink:
            self._finding(item, UNREADABLE, "a symlink appeared on the way")
            return
        except OSError as err:
            if err.errno in _MISSING_ERRNOS:
                self._finding(item, MISSING)
            else:
                self._finding(item, UNREADABLE, err.strerror or str(err))
            return
        key = stat_key(st)
        if item.md5 is None:
            if not item.conffile and stat.S_ISREG(st.st_mode):
                self._regular_without_md5.add(item.package.key)
            self._remember(item, st, key, None)
            return
        if not stat.S_ISREG(st.st_mode):
            self._finding(item, NOT_REGULAR, f"now a {_kind(st)}")
            self._remember(item, st, key, None)
            return
        cached = self.cache.lookup(key) if self.cache is not None else None
        if cached is not None and key not in self.due:
            self.result.reused += 1
            self._judge(item, cached[0])
            self._remember(item, st, key, cached[0], cached[1])
            return
        self.pending.append((item, st, real_dir, name))

    def _collect(self, results: list[Hashed], batch: list) -> None:
        for (item, _, real_dir, name), hashed in zip(batch, results, strict=True):
            if hashed[1] == "raced":  # changed while read: once more, here
                hashed = _hash_one(self.dirs, real_dir, name)
            digest, outcome, size, key, newest = hashed
            if outcome.startswith("not-regular:"):
                self._finding(item, NOT_REGULAR, f"now a {outcome.partition(':')[2]}")
                self._write(item, key, None, self.now_s, newest)
                continue
            if digest is None:
                if outcome == "missing":
                    self._finding(item, MISSING)
                else:
                    self._finding(item, UNREADABLE, "changed while being checked"
                                  if outcome == "raced" else outcome)
                continue
            self.result.hashed += 1
            self.result.bytes_hashed += size
            self._judge(item, digest)
            self._write(item, key, digest, self.now_s, newest)

    def _judge(self, item: _Item, digest: str) -> None:
        if digest != item.md5:
            self._finding(item, CHANGED)

    def _remember(self, item: _Item, st: os.stat_result, key: bytes, md5: str | None,
                  checked: int | None = None) -> None:
        self._write(item, key, md5, checked or self.now_s, _newest(st))

    def _write(self, item: _Item, key: bytes, md5: str | None, checked: int, newest: int
               ) -> None:
        if self.writer is not None:
            self.writer.add(item.field, key, md5, checked, item.package.key, newest)

    def _finding(self, item: _Item, problem: str, detail: str = "") -> None:
        self.result.findings.append(Finding(item.package, item.path, problem, item.conffile,
                                            item.obsolete, item.listed, detail,
                                            item.md5 or ""))


def _hash_batch_local(dirs: DirCache, batch: list) -> list[Hashed]:
    return [_hash_one(dirs, real_dir, name) for _, _, real_dir, name in batch]


def verify_packages(root: str | bytes = b"/", admindir: str | bytes | None = None, *,
                    conffiles: bool = False, cache_path: Path | None = None,
                    reverify_days: float = 7.0, workers: int = 0,
                    progress: Callable[[int], None] | None = None) -> Verification:
    """Check every installed package's files (or conffiles) under ROOT.

    With ``cache_path``, md5s of files whose stat record did not change are reused from
    there, and the cache is rewritten (a cache that cannot be written is a warning).
    """
    started_ns = time.time_ns()
    root = os.fsencode(root)
    cache = None
    if cache_path is not None and reverify_days > 0 and not conffiles:
        shown_admin = os.fsencode(admindir) if admindir is not None else b""
        cache = Md5Cache.load(cache_path, root, shown_admin)
    # Workers are forked before the database is read, so they stay small; only a run
    # that expects to hash much (no cache yet) starts them.
    pool = _pool(workers) if (cache is None or not cache.by_key) else None
    if pool is not None:
        list(pool.map(_warm, range(getattr(pool, "_max_workers", 1))))
    try:
        with Database.open(root, admindir) as db:
            writer = None
            warning = None
            if cache is not None and cache_path is not None:
                try:
                    writer = CacheWriter(cache_path, root, os.fsencode(admindir)
                                         if admindir is not None else b"", started_ns)
                except OSError as err:
                    warning = (f"{cache_path}: cannot write the md5 cache "
                               f"({err.strerror}): the next run hashes every file again")
            verifier = Verifier(db, conffiles, cache, writer, reverify_days, pool)
            try:
                result = verifier.run(progress)
                if writer is not None:
                    writer.commit(cache)
                    writer = None
            finally:
                if writer is not None:
                    writer.discard()
                if verifier.pool is not None and verifier.pool is not pool:
                    verifier.pool.shutdown()
            if warning:
                result.warnings.append(warning)
            return result
    finally:
        if pool is not None:
            pool.shutdown()


def run_packages(settings: Settings, root: str | None = None, admindir: str | None = None,
                 *, conffiles: bool = False, progress: Callable[[int], None] | None = None
                 ) -> Verification:
    """``systraq packages``: the tree and cache from the settings unless given.

    Only root keeps the md5 cache (in STATE/root, which no other account may read).
    """
    pkg = settings.packages
    root = root if root is not None else pkg.root
    admindir = admindir if admindir is not None else (pkg.admindir or None)
    cache = settings.layout.packages_cache if os.geteuid() == 0 else None
    return verify_packages(root, admindir, conffiles=conffiles, cache_path=cache,
                           reverify_days=pkg.reverify_days, workers=settings.snapshot.workers,
                           progress=progress)
