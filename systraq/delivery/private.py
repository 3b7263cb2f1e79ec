"""Directories only the sending account may use: the mail spool, dead letters, kept reports.

A directory is used only when it is a real directory (no symlink) owned by the account
running, with mode 0700: one another account created first (the pub account making
root's spool before root does) is refused, never used. Every file in it is looked at with
lstat, opened with O_NOFOLLOW|O_NONBLOCK and checked with fstat: only a regular 0600 file
of this account with a single link is read, and only such a file is ever removed or
moved. All work goes through the directory's descriptor, so renaming the directory away
after the check does not redirect it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from systraq.delivery.outcome import DeliveryError
from systraq.fs.atomic import AtomicFile

DIR_MODE = 0o700
FILE_MODE = 0o600
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class NotOurs(Exception):
    """A file in a private directory that this account did not write: never read or removed."""


def describe_stat(st: os.stat_result) -> str:
    """``a symlink``, ``a regular file of uid 65534, mode 0644, 2 links`` (for refusals)."""
    kinds = ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"),
             (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    for test, name in kinds:
        if test(st.st_mode):
            return name
    links = f", {st.st_nlink} links" if st.st_nlink != 1 else ""
    return f"a regular file of uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}{links}"


def is_ours(st: os.stat_result) -> bool:
    """A regular 0600 file of this account, with no other name."""
    return (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
            and stat.S_IMODE(st.st_mode) == FILE_MODE and st.st_nlink == 1)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@dataclass
class PrivateDir:
    """An open, checked private directory (see the module notes). Close it when done."""

    path: Path
    what: str  # "mail spool", "dead-letter directory": how messages name it
    fd: int

    @classmethod
    def open(cls, path: Path, what: str, *, create: bool = True) -> PrivateDir | None:
        """Open (and first create, 0700, if ``create``) a private directory.

        Returns None when it does not exist and ``create`` is off; raises DeliveryError
        when it cannot be made or is not a directory of this account with mode 0700.
        """
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.mkdir(path, DIR_MODE)
            except FileExistsError:
                pass
            except OSError as err:
                raise DeliveryError(f"cannot create the {what}: "
                                    f"{os.strerror(err.errno or 0)}", path) from None
        try:
            fd = os.open(path, _DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                return None
            raise DeliveryError(f"the {what} vanished while being created", path) from None
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                try:
                    found = describe_stat(os.lstat(path))
                except OSError:
                    found = "not a directory"
                raise DeliveryError(f"{what} refused: {found} is in the way, not a directory "
                                    "(it is not used; remove it)", path) from None
            raise DeliveryError(f"cannot open the {what}: {os.strerror(err.errno or 0)}",
                                path) from None
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) != DIR_MODE:
            os.close(fd)
            raise DeliveryError(
                f"{what} refused: owned by uid {st.st_uid} with mode "
                f"{stat.S_IMODE(st.st_mode):04o}, not by uid {os.geteuid()} with mode 0700 "
                "(another account may have made it; nothing in it is read, sent or removed: "
                "check it, then remove it)", path)
        return cls(path, what, fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> PrivateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def subdir(self, name: str, what: str) -> PrivateDir:
        """A private directory inside this one (created if missing)."""
        opened = PrivateDir.open(self.path / name, what)
        assert opened is not None
        return opened

    # -- files -------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every name in the directory, sorted."""
        try:
            return sorted(os.listdir(self.fd))
        except OSError as err:
            raise DeliveryError(f"cannot read the {self.what}: {os.strerror(err.errno or 0)}",
                                self.path) from None

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def exists(self, name: str) -> bool:
        try:
            self.lstat(name)
        except FileNotFoundError:
            return False
        return True

    def check(self, name: str) -> os.stat_result:
        """The lstat of ``name`` if it is ours; NotOurs (saying what it is) otherwise."""
        st = self.lstat(name)
        if not is_ours(st):
            raise NotOurs(describe_stat(st))
        return st

    def read(self, name: str, limit: int | None = None) -> tuple[bytes, os.stat_result]:
        """The content of a file of ours (its first ``limit`` bytes if set) and its stat;
        NotOurs for anything else.

        Nothing but a regular file that lstat showed to be ours is opened, so a planted
        FIFO or device is never opened at all.
        """
        seen = self.check(name)
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=self.fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise NotOurs("a symlink") from None
            raise
        try:
            st = os.fstat(fd)
            if not _same(st, seen) or not is_ours(st):
                raise NotOurs(f"replaced while being opened by {describe_stat(st)}")
            chunks = []
            left = st.st_size if limit is None else min(st.st_size, limit)
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks), st
        finally:
            os.close(fd)

    def write(self, name: str, data: bytes) -> Path:
        """Write a file of ours (0600) atomically; return its path."""
        try:
            with AtomicFile(name, dir_fd=self.fd, mode=FILE_MODE) as out:
                out.write(data)
        except OSError as err:
            raise DeliveryError(f"cannot write to the {self.what}: "
                                f"{os.strerror(err.errno or 0)}", self.path / name) from None
        return self.path / name

    def remove(self, name: str, seen: os.stat_result) -> None:
        """Remove ``name`` only if it is still the file of ours that was read."""
        st = self.lstat(name)
        if not _same(st, seen) or not is_ours(st):
            raise NotOurs(f"replaced by {describe_stat(st)}")
        os.unlink(name, dir_fd=self.fd)

    def move(self, name: str, seen: os.stat_result, to: PrivateDir,
             new_name: str | None = None) -> Path:
        """Move a file of ours (the one that was read) into another private directory."""
        st = self.lstat(name)
        if not _same(st, seen) or not is_ours(st):
            raise NotOurs(f"replaced by {describe_stat(st)}")
        target = new_name or name
        os.rename(name, target, src_dir_fd=self.fd, dst_dir_fd=to.fd)
        with contextlib.suppress(OSError):
            os.fsync(to.fd)
            os.fsync(self.fd)
        return to.path / target

    def sweep_temporary(self) -> None:
        """Remove temporary files of ours that a killed run left (call with the lock held)."""
        for name in self.names():
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            with contextlib.suppress(OSError, NotOurs):
                self.remove(name, self.check(name))
