"""One lock per job and mode, so two runs at once never corrupt each other's state."""

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


@contextlib.contextmanager
def locked(path: Path, timeout: float, owner: tuple[int, int] | None = None
           ) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; wait up to ``timeout`` seconds, then refuse.

    A lock file created here is given to ``owner`` (the account that shares it) if set.
    """
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
    except PermissionError as denied:
        # Created by another account (root ran the pub job by hand): flock works read-only.
        try:
            fd = os.open(path, os.O_RDONLY | flags)
        except FileNotFoundError:
            raise SystraqError(f"cannot create lock file: {denied.strerror} (the state "
                               "directory must be writable by this user)", path) from None
        except OSError as err:
            raise SystraqError(f"cannot open lock file: {os.strerror(err.errno or 0)}",
                               path) from None
    except OSError as err:
        raise SystraqError(f"cannot open lock file: {os.strerror(err.errno or 0)}",
                           path) from None
    try:
        st = os.fstat(fd)
        if owner is not None and st.st_uid != owner[0] and st.st_size == 0:
            with contextlib.suppress(OSError):
                os.fchown(fd, *owner)
        # A hard link planted in a shared state dir must not make us write into another file.
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise SystraqError("lock file is not a plain file (refusing to use it)", path)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise LockedError(f"another systraq run (pid {holder}) holds this lock; "
                                  f"gave up after {timeout:g}s", path)
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
