"""Files written whole or not at all: the one way systraq replaces a file.

Content goes to a temporary file in the target's directory, is flushed to disk, and is
renamed over the target; then the directory is flushed. A crash or a full disk leaves
the previous file intact, and an error removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from systraq.fs.oserror import naming

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_BUFFER = 1 << 16

PathName = str | bytes | os.PathLike


def fsync_dir(directory: PathName | int) -> None:
    """Flush a directory (a path, or an open descriptor) so a rename in it is durable."""
    if isinstance(directory, int):
        os.fsync(directory)
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(target: bytes) -> bytes:
    """The temporary name used for ``target``: hidden, unique, ends in ``.tmp``."""
    return b"." + target + b"." + secrets.token_hex(6).encode() + b".tmp"


_TEMP_NAME = re.compile(rb"\.(.+)\.[0-9a-f]{12}\.tmp")


def sweep_temporaries(targets: Iterable[Path]) -> list[Path]:
    """Remove the temporary files a killed run left for these targets (beside each);
    return those removed.

    Call it holding the lock of every run that writes the targets: no live run then owns
    one. Only our own names and only this account's regular files go; neither a
    directory nor a name in it is followed if it is a symlink.
    """
    by_dir: dict[Path, set[bytes]] = {}
    for target in targets:
        by_dir.setdefault(target.parent, set()).add(os.fsencode(target.name))
    removed = []
    for directory, wanted in by_dir.items():
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                         os.O_CLOEXEC)
        except OSError:
            continue  # not there (nothing left), or not a directory we may use
        try:
            for raw in map(os.fsencode, os.listdir(fd)):
                match = _TEMP_NAME.fullmatch(raw)
                if match is None or match.group(1) not in wanted:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(raw, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                        os.unlink(raw, dir_fd=fd)
                        removed.append(directory / os.fsdecode(raw))
        finally:
            os.close(fd)
    return removed


class AtomicFile:
    """Write ``name`` (in ``dir_fd``, or a path) atomically.

    Use as a context manager: ``write`` content, and leaving the block commits it (or,
    on an exception, discards it). ``sync=False`` leaves flushing to the caller, who
    flushes a whole file system once for many files (see ``stage``/``publish``).
    """

    def __init__(self, target: PathName, *, dir_fd: int | None = None, mode: int = 0o644,
                 owner: tuple[int, int] | None = None, sync: bool = True) -> None:
        path = os.fsencode(target)
        if dir_fd is None:
            directory, _, name = path.rpartition(b"/")
            self.directory: bytes | None = directory or (b"/" if path.startswith(b"/") else b".")
        else:
            directory, name = b"", path
            self.directory = None
        if not name or b"/" in name and dir_fd is not None:
            raise ValueError(f"not a file name: {target!r}")
        self.name = name
        self.target = path
        self.sync = sync
        self._dir_fd = dir_fd
        self._own_dir = False
        self._mode = mode
        self._owner = owner
        self._fd: int | None = None
        self._buffer = bytearray()
        self.temp: bytes | None = None
        self.written = 0

    @classmethod
    def staged(cls, temp: bytes, target: bytes, dir_fd: int, sync: bool = True
               ) -> AtomicFile:
        """A file staged earlier (under ``temp`` in ``dir_fd``), ready to ``publish``."""
        staged = cls(target, dir_fd=dir_fd, sync=sync)
        staged.temp = temp
        return staged

    # -- the steps -------------------------------------------------------------------

    def open(self) -> AtomicFile:
        with naming(self.target):
            return self._open()

    def _open(self) -> AtomicFile:
        if self._dir_fd is None:
            self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self._own_dir = True
        temp = temp_name(self.name)
        self._fd = os.open(temp, _CREATE, 0o600, dir_fd=self._dir_fd)
        self.temp = temp
        try:
            if self._owner is not None:
                os.fchown(self._fd, *self._owner)
            os.fchmod(self._fd, self._mode)
        except BaseException:
            self.discard()
            raise
        return self

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        self.written += len(data)
        if len(self._buffer) >= _BUFFER:
            self._flush_buffer()

    def _flush_buffer(self) -> None:
        assert self._fd is not None
        view = memoryview(self._buffer)
        with naming(self.target):  # a full disk says which file
            while view:
                view = view[os.write(self._fd, view):]
        view.release()
        self._buffer.clear()

    def set_times(self, atime_ns: int, mtime_ns: int) -> None:
        """Give the new file these times (a backup keeps its source's)."""
        self._flush_buffer()
        assert self._fd is not None
        os.utime(self._fd, ns=(atime_ns, mtime_ns))

    def stage(self) -> None:
        """Write out and close the temporary file, leaving it under its temporary name."""
        assert self._fd is not None
        try:
            self._flush_buffer()
            if self.sync:
                with naming(self.target):
                    os.fsync(self._fd)
        except BaseException:
            self.discard()
            raise
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def publish(self) -> None:
        """Rename the staged file over the target (and flush the directory if syncing)."""
        assert self.temp is not None and self._dir_fd is not None
        try:
            with naming(self.target):
                os.rename(self.temp, self.name, src_dir_fd=self._dir_fd,
                          dst_dir_fd=self._dir_fd)
                self.temp = None
                if self.sync:
                    fsync_dir(self._dir_fd)
        finally:
            self.discard()

    def commit(self) -> None:
        self.stage()
        self.publish()

    def discard(self) -> None:
        """Remove the temporary file (if any) and release the directory."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.temp is not None and self._dir_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.temp, dir_fd=self._dir_fd)
            self.temp = None
        if self._own_dir and self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
            self._own_dir = False

    # -- as a context manager --------------------------------------------------------

    def __enter__(self) -> AtomicFile:
        return self.open()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def write_atomic(path: Path | str | bytes, data: bytes, *, mode: int = 0o644,
                 owner: tuple[int, int] | None = None, dir_fd: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with AtomicFile(path, dir_fd=dir_fd, mode=mode, owner=owner) as out:
        out.write(data)
