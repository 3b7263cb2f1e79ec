"""One lock per job and mode, so two runs at once never corrupt each other's state.

A lock file is this account's own 0600 file in a directory only this account can write:
``flock`` works on any descriptor, read-only ones too, so a lock file another account can
open is a switch that account can use to stop every run. A lock file that is not ours,
not private, not a plain file or has other names is refused, never used.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from systraq.errors import LockedError, SystraqError

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def holder_of(st: os.stat_result, locks: str = "/proc/locks") -> int | None:
    """The pid holding a flock on the file ``st`` describes, as the kernel tells it."""
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open(locks, encoding="ascii", errors="replace") as table:
            for line in table:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; blocked waiters "->"
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted \
                        and fields[4].isdigit():
                    return int(fields[4])
    except OSError:
        pass
    return None


@contextlib.contextmanager
def locked(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; wait up to ``timeout`` seconds, then refuse."""
    try:
        fd = os.open(path, _FLAGS, 0o600)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise SystraqError("lock file is a symlink (refusing to use it)", path) from None
        hint = " (the state directory must be writable by this user)" \
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else ""
        raise SystraqError(f"cannot open lock file: {os.strerror(err.errno or 0)}{hint}",
                           path) from None
    try:
        st = os.fstat(fd)
        # A hard link planted in a shared state dir must not make us write into another file.
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise SystraqError("lock file is not a plain file (refusing to use it)", path)
        if st.st_uid != os.geteuid():
            raise SystraqError("lock file belongs to another account (refusing to use it)",
                               path)
        if stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                pid = holder_of(st)
                holder = f"pid {pid}" if pid is not None else "holder unknown"
                raise LockedError(f"another systraq run ({holder}) holds this lock; "
                                  f"gave up after {timeout:g}s", path)
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
