"""Listfiles and homelists: which paths a snapshot covers.

``snapshot_<mode>.list`` holds absolute paths or shell globs, ``snapshot_<mode>.homelist``
paths relative to every user's home. Globs are expanded without following symlinks: a
symlink met on the way is itself the entry, never a way in.
"""

from __future__ import annotations

import errno
import os
import posixpath
import pwd
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from systraq.errors import ConfigError
from systraq.fs.nofollow import DirCache, ThroughSymlink, join
from systraq.patterns import has_glob, match_name, order_key

NAME_MAX = 255  # bytes in one file name, on every Linux file system systraq reads


@dataclass(frozen=True)
class Pattern:
    """One line of a listfile: an absolute path or glob, with where it came from."""

    text: bytes
    source: Path
    line: int
    problem: str = ""  # why the line can match nothing (a name over NAME_MAX), if it can't


@dataclass(frozen=True)
class Root:
    """A path the scan starts from; a recursive root covers everything below it."""

    path: bytes
    recursive: bool


@dataclass
class Selection:
    roots: list[Root]
    unmatched: list[Pattern] = field(default_factory=list)
    unreachable: int = 0  # matches the scanning user may not look at (EACCES)


def _normalise(path: bytes) -> bytes:
    return posixpath.normpath(path).replace(b"//", b"/") if path != b"/" else path


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, content) of the meaningful lines: no comments, no blank lines."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read: {os.strerror(err.errno or 0)}", path) from None
    for number, line in enumerate(raw.split(b"\n"), 1):
        text = line.strip()
        if not text or text.startswith(b"#"):
            continue
        if b"\0" in text:
            raise ConfigError("a NUL byte cannot be part of a path", path, number)
        yield number, text


def _problem(text: bytes) -> str:
    """Why a line can match no file at all, or ""."""
    longest = max(len(part) for part in text.split(b"/"))
    if longest > NAME_MAX:
        return (f"a name in this line is {longest} bytes long, over the {NAME_MAX}-byte "
                "limit of file names: it can match nothing")
    return ""


def parse_list(path: Path) -> list[Pattern]:
    """Parse a snapshot listfile: absolute paths or globs, one per line."""
    patterns = []
    for number, text in read_lines(path):
        if not text.startswith(b"/"):
            raise ConfigError(f"{text.decode(errors='replace')!r} is not an absolute path "
                              "(list lines start with /)", path, number)
        patterns.append(Pattern(_normalise(text), path, number, _problem(text)))
    return patterns


def parse_homelist(path: Path) -> list[Pattern]:
    """Parse a homelist: paths or globs relative to a home directory."""
    patterns = []
    for number, text in read_lines(path):
        shown = text.decode(errors="replace")
        if text.startswith(b"/"):
            raise ConfigError(f"{shown!r} is absolute; homelist lines are relative to "
                              "each home (write .ssh, not /.ssh)", path, number)
        normal = posixpath.normpath(text)
        if normal == b".." or normal.startswith(b"../"):
            raise ConfigError(f"{shown!r} leaves the home directory", path, number)
        if normal == b".":
            raise ConfigError("'.' would cover every home entirely; name what to watch",
                              path, number)
        patterns.append(Pattern(normal, path, number, _problem(normal)))
    return patterns


def home_directories(passwd_file: str | os.PathLike[str] | None = None) -> list[bytes]:
    """Every distinct home, '/' and relative ones skipped: of the accounts in the system's
    database, or in ``passwd_file`` (passwd(5) format) when one is given (not empty)."""
    listed = (_homes_in(Path(passwd_file)) if passwd_file
              else (os.fsencode(entry.pw_dir) for entry in pwd.getpwall()))
    homes = set()
    for home in listed:
        home = _normalise(home)
        if home.startswith(b"/") and home != b"/":
            homes.add(home)
    return sorted(homes, key=order_key)


def _homes_in(path: Path) -> Iterator[bytes]:
    """The home field of each account line of a passwd(5) file."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read: {os.strerror(err.errno or 0)}", path) from None
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip() or line.startswith(b"#"):
            continue
        fields = line.split(b":")
        if len(fields) != 7:
            raise ConfigError("not a passwd(5) line (name:password:uid:gid:gecos:home:shell)",
                              path, number)
        yield fields[5]


def expand(pattern: bytes, dirs: DirCache) -> Iterator[bytes]:
    """Yield the existing paths a pattern names, in order; a symlink on the way ends there."""
    parts = [p for p in pattern.split(b"/") if p]
    yield from _expand(b"/", parts, dirs)


def _expand(base: bytes, parts: list[bytes], dirs: DirCache) -> Iterator[bytes]:
    if not parts:
        yield base
        return
    head, rest = parts[0], parts[1:]
    if len(head) > NAME_MAX:
        return  # no file has such a name (the line says so: Pattern.problem)
    try:
        fd = dirs.open(base)
    except ThroughSymlink as err:
        yield err.ancestor
        return
    except FileNotFoundError:
        return
    except OSError as err:
        if err.errno == errno.ENAMETOOLONG:  # over PATH_MAX: nothing can be there
            return
        raise
    if has_glob(head):
        try:
            names = sorted(os.fsencode(n) for n in os.listdir(fd))
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM):
                raise
            return
        names = [n for n in names if match_name(head, n)]
    else:
        names = [head]
    for name in names:
        path = join(base, name)
        try:
            st = os.stat(name, dir_fd=dirs.open(base), follow_symlinks=False)
        except FileNotFoundError:
            continue
        except OSError as err:
            if err.errno == errno.ENAMETOOLONG:
                continue
            raise
        if not rest:
            yield path
        elif stat.S_ISDIR(st.st_mode):
            yield from _expand(path, rest, dirs)
        elif stat.S_ISLNK(st.st_mode):
            yield path


def select(lists: Iterable[Pattern], homelists: Iterable[Pattern],
           homes: Iterable[bytes], record_homes: bool) -> Selection:
    """Turn patterns into sorted, non-overlapping scan roots."""
    wanted: dict[bytes, bool] = {}
    selection = Selection(roots=[])
    homes = list(homes)
    candidates: list[tuple[Pattern | None, bytes, bool]] = []
    for pattern in lists:
        candidates.append((pattern, pattern.text, True))
    for pattern in homelists:
        for home in homes:
            candidates.append((pattern, join(home, pattern.text), True))
    if record_homes:
        candidates.extend((None, home, False) for home in homes)
    matched: set[Pattern] = set()
    with DirCache() as dirs:
        for pattern, text, recursive in candidates:
            try:
                for path in expand(text, dirs):
                    wanted[path] = wanted.get(path, False) or recursive
                    if pattern is not None:
                        matched.add(pattern)
            except OSError as err:
                if err.errno not in (errno.EACCES, errno.EPERM):
                    raise
                selection.unreachable += 1
    seen_unmatched = set()
    for pattern, _, _ in candidates:
        if pattern is not None and pattern not in matched and pattern not in seen_unmatched:
            seen_unmatched.add(pattern)
            selection.unmatched.append(pattern)
    covering: bytes | None = None
    for path in sorted(wanted, key=order_key):
        key = order_key(path)
        if covering is not None and (key == covering or key.startswith(covering + b"\0")
                                     or covering == b""):
            continue
        selection.roots.append(Root(path, wanted[path]))
        if wanted[path]:
            covering = key if path != b"/" else b""
    return selection
