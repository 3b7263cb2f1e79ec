"""Generating filetraq.conf, as systraq's Makefile did after every package operation.

The list holds every world-readable regular file under /etc (not descending into
directories the unprivileged systraq user cannot read), every user's existing
``~/.ssh/authorized_keys*``, systraq's own configuration files and filetraq.conf itself
(so an edit that drops a line is seen), then the administrator's ``filetraq.tail.conf``
verbatim. Each section is sorted (bytewise, as ``LC_ALL=C sort``). The file is replaced
atomically, and only when its content changes: running it twice changes nothing.

When root runs it, the file system is looked at by a child process that has dropped to the
unprivileged pub user (``snapshot.pub_user``, else nobody), so the list is what that user
sees, while the file is written by root into the root-owned configuration directory.

The snapshot state files are deliberately not listed (unlike the original
filetraq.tail.conf): they carry timestamps and change every hour, so their diffs would be
noise; ``systraq diff`` reports what they record.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import pwd
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from systraq.config import Settings
from systraq.errors import SystraqError
from systraq.fs.atomic import write_atomic
from systraq.fs.nofollow import DirCache, ThroughSymlink, join, pseudo_fs_devices, split
from systraq.fs.privilege import pub_account, run_as
from systraq.fs.walk import walk
from systraq.layout import FILETRAQ_TAIL, OWN_CONFIG_FILES
from systraq.patterns import literal
from systraq.snapshot.listfiles import expand, home_directories, parse_list

DEFAULT_DIRS = (Path("/etc"),)


@dataclass
class ConfResult:
    path: Path
    entries: int
    changed: bool
    skipped: int = 0  # names a list line cannot hold (a newline, spaces at an end)
    generated_as: str = ""


def list_line(path: bytes) -> bytes | None:
    """A list line naming exactly ``path``: glob characters bracketed; None if impossible."""
    if b"\n" in path or path != path.strip():
        return None
    return literal(path)


def world_readable_files(top: bytes) -> Iterator[bytes]:
    """Regular files with o+r below ``top``, never following a symlink, never entering a
    directory this user cannot list; sorted bytewise within each directory."""
    with DirCache() as dirs:
        st = _lstat(dirs, top)
        if st is None or not stat.S_ISDIR(st.st_mode):
            return
        for found in walk(dirs, top, st, pseudo_devices=pseudo_fs_devices()):
            if not found.skipped and stat.S_ISREG(found.st.st_mode) \
                    and found.st.st_mode & stat.S_IROTH:
                yield found.path


def _lstat(dirs: DirCache, path: bytes) -> os.stat_result | None:
    parent, name = split(path)
    try:
        if not name:
            return os.stat(b"/")
        return os.stat(name, dir_fd=dirs.open(parent), follow_symlinks=False)
    except (OSError, ThroughSymlink):
        return None


def authorized_keys(homes: Iterable[bytes]) -> list[bytes]:
    """Every existing ``~/.ssh/authorized_keys*`` that is a regular file this user can see.

    Only regular files: a directory of that name would have filetraq copy its whole tree.
    """
    found = []
    with DirCache() as dirs:
        for home in homes:
            ssh = join(home, b".ssh")
            try:
                # expand() yields a symlink met on the way (a home that is a link): not ours.
                matches = [p for p in expand(join(ssh, b"authorized_keys*"), dirs)
                           if p.startswith(ssh + b"/authorized_keys")]
            except OSError as err:
                if err.errno not in (errno.EACCES, errno.EPERM):
                    raise
                continue
            for path in matches:
                st = _lstat(dirs, path)
                if st is not None and stat.S_ISREG(st.st_mode):
                    found.append(path)
    return found


def collect(settings: Settings, dirs: Iterable[Path], output: Path) -> list[list[bytes]]:
    """The generated sections (without the tail), each sorted and free of duplicates."""
    listed: set[bytes] = set()
    sections = []
    own = [os.fsencode(settings.config_dir.absolute() / name) for name in OWN_CONFIG_FILES
           if (settings.config_dir / name).exists()]
    own.append(os.fsencode(output.absolute()))
    for paths in ([p for d in dirs for p in world_readable_files(os.fsencode(d.absolute()))],
                  authorized_keys(home_directories(settings.snapshot.passwd)), own):
        section = sorted(set(paths) - listed)
        listed.update(section)
        sections.append(section)
    return sections


def format_conf(sections: list[list[bytes]], dirs: Iterable[Path], tail: Path | None
           ) -> tuple[bytes, int, int]:
    """The file's bytes, the number of entries and of names skipped."""
    titles = [f"# world-readable files under {', '.join(str(d) for d in dirs)}",
              "# users' ~/.ssh/authorized_keys*",
              "# systraq's own configuration, and this list"]
    out = [b"# filetraq.conf: generated by `systraq filetraq-conf`; changes made here are "
           b"overwritten.",
           f"# Add paths or globs to {FILETRAQ_TAIL}: it is copied at the end.".encode()]
    entries = skipped = 0
    for title, section in zip(titles, sections, strict=True):
        out.append(title.encode())
        for path in section:
            line = list_line(path)
            if line is None:
                skipped += 1
                continue
            out.append(line)
            entries += 1
    data = b"\n".join(out) + b"\n"
    if tail is not None:
        parse_list(tail)  # refuse a tail that would make the list unreadable
        text = tail.read_bytes()
        data += f"# from {tail}\n".encode() + text + (b"" if text.endswith(b"\n") or not text
                                                       else b"\n")
    return data, entries, skipped


def _absolute(path: Path) -> Path:
    """``path`` from the current directory, ``..`` and ``.`` resolved by name."""
    return Path(os.path.abspath(path))


def write_filetraq_conf(settings: Settings, output: Path | None = None,
                        dirs: Iterable[Path] | None = None) -> ConfResult:
    """Regenerate the list; replace it atomically if (and only if) its content changed."""
    # Absolute before anything else: the listing runs in a child that changes directory,
    # and a relative name in the list would mean nothing to filetraq.
    settings = dataclasses.replace(settings, config_dir=_absolute(settings.config_dir),
                                   state_dir=_absolute(settings.state_dir))
    output = _absolute(output or settings.layout.filetraq_list)
    dirs = [_absolute(d) for d in dirs or DEFAULT_DIRS]
    for directory in dirs:
        if not directory.is_dir():
            raise SystraqError("not a directory", directory)
    account = pub_account(settings)
    if account is None:
        sections = collect(settings, dirs, output)
        generated_as = pwd.getpwuid(os.geteuid()).pw_name
    else:
        sections = run_as(account, collect, settings, dirs, output)
        generated_as = account.pw_name
    tail = settings.layout.filetraq_tail
    data, entries, skipped = format_conf(sections, dirs, tail if tail.exists() else None)
    result = ConfResult(output, entries, changed=False, skipped=skipped,
                        generated_as=generated_as)
    try:
        if output.read_bytes() == data:
            return result
    except FileNotFoundError:
        pass
    except OSError as err:
        raise SystraqError(f"cannot read: {os.strerror(err.errno or 0)}", output) from None
    _replace(output, data)
    result.changed = True
    return result


def _replace(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data, mode=0o644)
    except OSError as err:
        raise SystraqError(f"cannot write: {os.strerror(err.errno or 0)}", path) from None
