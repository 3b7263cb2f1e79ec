"""The state directory: each account writes only its own directory in it.

``STATE/root`` belongs to root (its snapshot, the reported and baseline copies, its lock
and mail spool), ``STATE/pub`` to the account the pub snapshot runs as. Before a job
writes, its directory is made if missing and checked: a real directory, owned by the
account, writable by no other. A directory another account made or can write is refused
loudly, never used. Root also moves the flat layout of earlier versions into place once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
import tempfile
from pathlib import Path

from systraq.config import Settings
from systraq.errors import SystraqError
from systraq.fs.atomic import AtomicFile
from systraq.layout import BASELINE, MODES, REPORTED
from systraq.snapshot.state import open_state

_COPY_CHUNK = 1 << 20


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def ensure_dir(path: Path, uid: int, gid: int, mode: int) -> Path:
    """Make ``path`` (owned by uid:gid, with ``mode``) if missing; refuse one that is not a
    directory, belongs to another account, or others may write."""
    if not os.path.lexists(path):
        _make_dir(path, uid, gid, mode)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise SystraqError("is not a directory (refusing to use it)", path)
    if st.st_uid != uid:
        raise SystraqError(f"belongs to {_owner_name(st.st_uid)}, not {_owner_name(uid)}: "
                           "refusing to use it (another account made it)", path)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SystraqError(f"mode {stat.S_IMODE(st.st_mode):04o} lets other accounts write "
                           "in it: refusing to use it", path)
    return path


def _make_dir(path: Path, uid: int, gid: int, mode: int) -> None:
    """Make a directory that appears with its owner and mode already set (made aside, then
    renamed into place), so a concurrent run never sees it half made."""
    ensure_state_dir(path.parent)
    try:
        made = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as err:
        raise SystraqError(f"cannot create: {os.strerror(err.errno or 0)} (set the state "
                           "directory up as root: systraq init)", path) from None
    try:
        if os.geteuid() == 0:
            os.chown(made, uid, gid)
        os.chmod(made, mode)
        os.rename(made, path)  # over nothing, or over an empty twin made meanwhile
    except OSError as err:
        with contextlib.suppress(OSError):
            os.rmdir(made)
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise


def ensure_state_dir(path: Path) -> None:
    """The state directory itself (made by root or an installer; 0755 when made here)."""
    try:
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as err:
        raise SystraqError(f"cannot create the state dir: {os.strerror(err.errno or 0)}",
                           path) from None


def own_dir(settings: Settings) -> Path:
    """This account's directory in the state dir, made and checked (root: migrated too)."""
    euid, egid = os.geteuid(), os.getegid()
    ensure_state_dir(settings.state_dir)
    if euid == 0:
        migrate_flat_layout(settings)
    return ensure_dir(settings.layout.account_dir(euid), euid, egid,
                      0o700 if euid == 0 else 0o755)


def pub_dir_for(settings: Settings, account: pwd.struct_passwd) -> Path:
    """The pub account's directory, made by root for it before root drops to it."""
    ensure_state_dir(settings.state_dir)
    if os.geteuid() == 0:
        migrate_flat_layout(settings)
    return ensure_dir(settings.layout.mode_dir("pub"), account.pw_uid, account.pw_gid, 0o755)


# -- the flat layout of earlier versions ------------------------------------------------

def _copy_as_own(source: Path, target: Path) -> None:
    """Copy a state file into root's directory as root's own file, then drop the old one."""
    with open_state(source) as src:
        private = not os.fstat(src.fileno()).st_mode & stat.S_IROTH
        with AtomicFile(target, mode=0o600 if private else 0o644) as out:
            while chunk := src.read(_COPY_CHUNK):
                out.write(chunk)
    os.unlink(source)


def migrate_flat_layout(settings: Settings) -> list[str]:
    """Move files of the flat layout (``STATE/snapshot_root.stat``, ``STATE/reported_*``,
    ...) into the account directories; return what was moved (root only, idempotent)."""
    layout = settings.layout
    moved: list[str] = []
    names = [f"snapshot_{m}.stat" for m in MODES] + \
        [f"{k}_{m}.stat" for k in (REPORTED, BASELINE) for m in MODES]
    if not any(os.path.lexists(layout.flat(n)) for n in [*names, "spool"]):
        return moved
    root_dir = ensure_dir(layout.account_dir(0), 0, 0, 0o700)
    for name in names:
        old = layout.flat(name)
        try:
            st = os.lstat(old)
        except FileNotFoundError:
            continue
        if name == "snapshot_pub.stat":
            # The pub account's file: it goes to that account's directory, or away (the
            # next pub snapshot makes a new one).
            if stat.S_ISREG(st.st_mode) and st.st_uid != 0:
                with contextlib.suppress(SystraqError, OSError):
                    pub = ensure_dir(layout.mode_dir("pub"), st.st_uid, st.st_gid, 0o755)
                    if not (pub / name).exists():
                        os.rename(old, pub / name)
                        moved.append(name)
                        continue
            os.unlink(old)
            continue
        target = root_dir / name
        if target.exists() or not stat.S_ISREG(st.st_mode):
            os.unlink(old)
            continue
        _copy_as_own(old, target)
        moved.append(name)
    for name in os.listdir(settings.state_dir):
        old = layout.flat(name)
        if name.endswith((".lock", ".pin", ".tmp")) and os.path.isfile(old) \
                and not os.path.islink(old):
            with contextlib.suppress(OSError):
                os.unlink(old)
    spool = layout.flat("spool")
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(spool)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == 0:
            try:
                os.rename(spool, layout.spool(0))
                moved.append("spool")
            except OSError as err:
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
    return moved
