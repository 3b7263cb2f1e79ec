"""The backup store, laid out exactly as Debian's filetraq 0.3 lays it out.

``BACKUPDIR/<absolute path>/orig`` is the last content seen of a file; when the content
changes, the previous ``orig`` is kept as ``orig.MM.DD.YY__HH.MM`` (local time of the
change) and the new content becomes ``orig``. A store written by Debian's filetraq carries
on here and the other way round.

What systraq adds:

- the dated copy is made first (a hard link, which never overwrites anything), then the new
  content is written to a temporary file, flushed to disk and renamed over ``orig``: a crash
  between the steps loses no version. A run that records many files stages them all (dated
  copies and temporary files), flushes the file system once (syncfs), then renames them all
  and flushes again: two flushes instead of two fsyncs a file;
- a second change within the same minute does not overwrite that minute's dated copy: the
  next copy is ``orig-2.MM.DD.YY__HH.MM``, then ``orig-3...`` (names that filetraq's pruning
  glob ``*.??.??__??.??`` still matches);
- every lookup below BACKUPDIR goes one component at a time with ``O_NOFOLLOW``: a symlink
  planted in the store is refused, never followed;
- directories are created with the configured mode, files with the source's permission bits
  minus write for others (and without setuid, setgid or sticky bits).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from systraq.errors import SystraqError
from systraq.fs.atomic import AtomicFile, temp_name
from systraq.fs.nofollow import DIR_FLAGS, FILE_FLAGS, DirCache, ThroughSymlink, join, split
from systraq.fs.readlimit import read_limited
from systraq.fs.walk import walk
from systraq.pathcodec import escape

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
    _LIBC.syncfs.argtypes = [ctypes.c_int]
except (OSError, AttributeError):
    _LIBC = None

ORIG = b"orig"
META = b".systraq"  # systraq's own files in a store: lock and memory of notices
_DATED = re.compile(rb"orig(?:-([1-9][0-9]*))?\.(\d\d)\.(\d\d)\.(\d\d)__(\d\d)\.(\d\d)")
_TEMP = re.compile(rb"\.orig\.[0-9a-f]{12}\.tmp")
_CHUNK = 1 << 20


class StoreError(SystraqError):
    """The backup store holds something it should not (a symlink, a non-directory)."""


@dataclass(frozen=True)
class Orig:
    """What the store holds as the last content of a file."""

    size: int
    mtime_ns: int
    sha256: str  # of the content, or of its first ``limit`` bytes when content is None
    content: bytes | None  # None when larger than the limit it was read with


@dataclass(frozen=True)
class StagedContent:
    """New content written aside in the store, waiting to become ``orig``."""

    path: bytes
    tmp: bytes  # its name in the file's store directory
    kept: bytes | None  # the dated copy made of the previous content


@dataclass
class PruneResult:
    removed: list[bytes] = field(default_factory=list)
    kept: int = 0

    def to_wire(self) -> dict[str, object]:
        return {"removed": self.removed, "kept": self.kept}

    @classmethod
    def from_wire(cls, data: dict[str, object]) -> PruneResult:
        removed = data["removed"]
        if not isinstance(removed, list) or not all(isinstance(p, bytes) for p in removed):
            raise ValueError("prune result: removed is not a list of paths")
        return cls(removed, int(data["kept"]))  # type: ignore[call-overload]


def dated_name(when: time.struct_time, copy: int = 1) -> bytes:
    """Name of a dated copy: filetraq's ``orig.MM.DD.YY__HH.MM``, ``orig-N.`` for the Nth."""
    stamp = time.strftime("%m.%d.%y__%H.%M", when)
    return (f"orig.{stamp}" if copy == 1 else f"orig-{copy}.{stamp}").encode()


def dated_time(name: bytes, now: float | None = None) -> float | None:
    """When a dated copy was made, from its name (local time); None if not a dated copy.

    Years are two digits, as filetraq writes them: 20YY, or 19YY when that would lie in
    the future.
    """
    match = _DATED.fullmatch(name)
    if match is None:
        return None
    month, day, year, hour, minute = (int(g) for g in match.groups()[1:])
    now = time.time() if now is None else now
    for century in (2000, 1900):
        try:
            stamp = time.mktime((century + year, month, day, hour, minute, 0, 0, 0, -1))
        except (OverflowError, ValueError):
            return None
        if stamp <= now + 86400 or century == 1900:
            return stamp
    return None


def store_mode(source_mode: int) -> int:
    """Permission bits of a stored copy: the source's, minus write for others and s/t bits."""
    return stat.S_IMODE(source_mode) & 0o775


class Store:
    """An open backup store: every operation is relative to the directory opened once."""

    def __init__(self, path: Path, dir_mode: int = 0o755) -> None:
        self.path = Path(path)
        self.dir_mode = dir_mode
        try:
            # The top directory is the administrator's: it may itself be a symlink.
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise StoreError("no such directory (create the backup store first)",
                             self.path) from None
        except NotADirectoryError:
            raise StoreError("not a directory", self.path) from None
        except OSError as err:
            raise StoreError(f"cannot open: {os.strerror(err.errno or 0)}", self.path) from None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def shown(self, path: bytes, name: bytes = ORIG) -> bytes:
        """How the store path of a file's copy is shown: BACKUPDIR/<path>/NAME."""
        return os.fsencode(self.path).rstrip(b"/") + path + b"/" + name

    # -- directories -----------------------------------------------------------------

    def meta_dir(self) -> int:
        """An fd of BACKUPDIR/.systraq (created on first use); the caller closes it."""
        return self._open_dirs([META], create=True)  # type: ignore[return-value]

    def _entry_dir(self, path: bytes, create: bool) -> int | None:
        parts = [p for p in path.split(b"/") if p]
        if not path.startswith(b"/") or not parts or b".." in parts or b"." in parts:
            raise StoreError(f"not a normalised absolute path: {path!r}")
        return self._open_dirs(parts, create)

    def _open_dirs(self, parts: list[bytes], create: bool) -> int | None:
        fd = os.dup(self.fd)
        done = [os.fsencode(self.path)]
        try:
            for name in parts:
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    child = self._make_dir(fd, name)
                except OSError as err:
                    if err.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise StoreError("is a symlink or not a directory in the backup "
                                         "store (refusing to follow it)",
                                         escape(b"/".join([*done, name]))) from None
                    raise
                os.close(fd)
                fd = child
                done.append(name)
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _make_dir(self, parent_fd: int, name: bytes) -> int:
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass  # made by a concurrent filetraq: use it as it is
        else:
            child = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
            os.fchmod(child, self.dir_mode)
            return child
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)

    # -- reading ---------------------------------------------------------------------

    def read_orig(self, path: bytes, limit: int) -> Orig | None:
        """The stored last content of ``path`` (None if there is none yet).

        Content up to ``limit`` bytes is returned; of a larger copy only the first ``limit``
        bytes are read, to hash them.
        """
        fd = self._entry_dir(path, create=False)
        if fd is None:
            return None
        try:
            try:
                file_fd = os.open(ORIG, FILE_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                return None
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise StoreError("is a symlink in the backup store (refusing to "
                                     "follow it)", escape(self.shown(path))) from None
                raise StoreError(f"cannot read: {os.strerror(err.errno or 0)}",
                                 escape(self.shown(path))) from None
            try:
                st = os.fstat(file_fd)
                if not stat.S_ISREG(st.st_mode):
                    raise StoreError("is not a regular file", escape(self.shown(path)))
                return _read(file_fd, st, limit)
            finally:
                os.close(file_fd)
        finally:
            os.close(fd)

    def exists(self, path: bytes, name: bytes) -> bool:
        """Whether BACKUPDIR/<path>/NAME exists (as anything)."""
        fd = self._entry_dir(path, create=False)
        if fd is None:
            return False
        try:
            os.stat(name, dir_fd=fd, follow_symlinks=False)
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(fd)

    def has_orig(self, path: bytes) -> bool:
        return self.exists(path, ORIG)

    # -- writing ---------------------------------------------------------------------

    def stage(self, path: bytes, content: bytes, source: os.stat_result, keep_previous: bool,
              when: time.struct_time) -> StagedContent:
        """Keep the previous ``orig`` as a dated copy, write the new content aside.

        Return what ``publish`` needs, after a ``sync``, to make the content ``orig``: the
        dated copy (if any) and the new content are then on disk before ``orig`` changes.
        """
        fd = self._entry_dir(path, create=True)
        assert fd is not None
        try:
            _sweep(fd)
            kept = self._keep_dated(fd, when) if keep_previous else None
            return StagedContent(path, self._write_temp(fd, content, source), kept)
        finally:
            os.close(fd)

    def stage_link(self, path: bytes, source: bytes, source_name: bytes, keep_previous: bool,
                   when: time.struct_time) -> StagedContent | None:
        """Stage for ``path`` the content the store already holds for ``source`` (its
        ``orig``, or a file staged for it this run) as a hard link: one file listed under
        many names is stored once. None if no link can be made (then ``stage`` it)."""
        src = self._entry_dir(source, create=False)
        if src is None:
            return None
        try:
            st = os.stat(source_name, dir_fd=src, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                return None
            fd = self._entry_dir(path, create=True)
            assert fd is not None
            try:
                _sweep(fd)
                temp = temp_name(ORIG)
                try:
                    os.link(source_name, temp, src_dir_fd=src, dst_dir_fd=fd,
                            follow_symlinks=False)
                except OSError as err:
                    if err.errno in (errno.EMLINK, errno.EPERM, errno.EXDEV,
                                     errno.EOPNOTSUPP, errno.ENOENT):
                        return None
                    raise
                kept = self._keep_dated(fd, when) if keep_previous else None
                return StagedContent(path, temp, kept)
            finally:
                os.close(fd)
        except FileNotFoundError:
            return None
        finally:
            os.close(src)

    def usage(self) -> int:
        """What the store holds on disk: allocated bytes of its files and directories,
        each inode once however many names it has (never through a symlink)."""
        counted: set[tuple[int, int]] = set()
        total = 0

        def count(st: os.stat_result) -> None:
            nonlocal total
            if (st.st_dev, st.st_ino) not in counted:
                counted.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512

        def enter(_path: bytes, st: os.stat_result) -> None:
            count(st)

        top = os.fsencode(self.path).rstrip(b"/") or b"/"
        with DirCache() as dirs:
            for found in walk(dirs, top, os.fstat(self.fd), may_enter=enter):
                count(found.st)
        return total

    def publish(self, staged: StagedContent) -> None:
        """The staged content becomes ``orig`` (a rename: atomic)."""
        fd = self._entry_dir(staged.path, create=False)
        if fd is None:
            raise StoreError("vanished from the backup store", escape(self.shown(staged.path)))
        try:
            AtomicFile.staged(staged.tmp, ORIG, fd, sync=False).publish()
        finally:
            os.close(fd)

    def sync(self) -> None:
        """Flush the store's file system to disk (syncfs; sync where that is missing)."""
        if _LIBC is None or _LIBC.syncfs(self.fd) != 0:
            os.sync()

    def _keep_dated(self, fd: int, when: time.struct_time) -> bytes | None:
        for copy in range(1, 10000):
            name = dated_name(when, copy)
            try:
                os.link(ORIG, name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
                return name
            except FileExistsError:
                continue
            except FileNotFoundError:
                return None  # nothing to keep (removed meanwhile)
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP,
                                     errno.EXDEV):
                    raise
                # Hard links refused (fs.protected_hardlinks on a copy another user made,
                # or a file system without them): copy instead, still never overwriting.
                if self._copy_exclusive(fd, name):
                    return name
        raise StoreError("too many dated copies within one minute")

    def _copy_exclusive(self, fd: int, name: bytes) -> bool:
        src = os.open(ORIG, FILE_FLAGS, dir_fd=fd)
        try:
            st = os.fstat(src)
            try:
                dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | os.O_CLOEXEC, 0o600, dir_fd=fd)
            except FileExistsError:
                return False
            try:
                while chunk := os.read(src, _CHUNK):
                    _write_all(dst, chunk)
                os.fchmod(dst, stat.S_IMODE(st.st_mode))
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
            return True
        finally:
            os.close(src)

    def _write_temp(self, fd: int, content: bytes, source: os.stat_result) -> bytes:
        # Flushed to disk by the caller's one ``sync`` for the whole run.
        out = AtomicFile(ORIG, dir_fd=fd, mode=store_mode(source.st_mode), sync=False).open()
        try:
            out.write(content)
            out.set_times(source.st_atime_ns, source.st_mtime_ns)
            out.stage()
        except BaseException:
            out.discard()
            raise
        assert out.temp is not None
        return out.temp

    # -- pruning ---------------------------------------------------------------------

    def prune(self, older_than_days: float, now: float | None = None) -> PruneResult:
        """Delete dated copies made more than ``older_than_days`` ago, and nothing else.

        Iterative and never through a symlink: a store as deep as a hostile tree it
        mirrors is pruned like any other.
        """
        now = time.time() if now is None else now
        cutoff = now - older_than_days * 86400
        result = PruneResult()
        top = os.fsencode(self.path).rstrip(b"/") or b"/"
        meta = join(top, META)
        with DirCache() as dirs:
            for found in walk(dirs, top, os.fstat(self.fd),
                              may_enter=lambda path, _st: "meta" if path == meta else None):
                parent, name = split(found.path)
                if not found.skipped and stat.S_ISREG(found.st.st_mode) and \
                        _TEMP.fullmatch(name):  # left by a killed run; the lock is ours
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=dirs.open(parent))
                    continue
                made = dated_time(name, now)
                if found.skipped or made is None or not stat.S_ISREG(found.st.st_mode):
                    continue
                if made < cutoff:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=dirs.open(parent))
                        result.removed.append(found.path)
                else:
                    result.kept += 1
        return result


def _sweep(fd: int) -> None:
    """Remove an entry's temporary files (left by a killed run; the lock says no run owns
    them)."""
    for name in os.listdir(fd):
        if _TEMP.fullmatch(os.fsencode(name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=fd)


def hand_over(top: Path, uid: int, gid: int) -> None:
    """Give a store and everything in it to an account (root made it; the cron job runs
    as that account and must be able to write it). Never follows a symlink."""
    os.chown(top, uid, gid, follow_symlinks=False)
    with DirCache() as dirs:
        stack = [os.fsencode(top.absolute())]
        while stack:
            directory = stack.pop()
            try:
                fd = dirs.open(directory)
                entries = [(os.fsencode(e.name), e.is_dir(follow_symlinks=False))
                           for e in os.scandir(fd)]
            except (OSError, ThroughSymlink):
                continue
            for name, is_dir in entries:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
                if is_dir:
                    stack.append(join(directory, name))


def _read(fd: int, st: os.stat_result, limit: int) -> Orig:
    got = read_limited(fd, st.st_size, limit)
    return Orig(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=got.sha256, content=got.data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
