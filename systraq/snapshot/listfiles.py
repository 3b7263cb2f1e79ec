"""Listfiles and homelists: which paths a snapshot covers.

``snapshot_<mode>.list`` holds absolute paths or shell globs, ``snapshot_<mode>.homelist``
paths relative to every user's home. Globs are expanded without following symlinks: a
symlink met on the way is itself the entry, never a way in.

A line may name a rule after the path, separated by a TAB or two or more spaces
(``/var/log/syslog  growing``), and a line that starts with ``!`` excludes what it matches
(``!/etc/mtab``). Only the snapshot lists have that syntax (``rules`` given); in
filetraq's list every line is a path, as Debian's filetraq reads it.
"""

from __future__ import annotations

import errno
import os
import posixpath
import pwd
import re
import stat
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from systraq.errors import ConfigError
from systraq.fs.nofollow import DirCache, ThroughSymlink, join
from systraq.patterns import has_glob, match_name, order_key
from systraq.rules import DEFAULT

NAME_MAX = 255  # bytes in one file name, on every Linux file system systraq reads
# A rule after the path: a TAB or two or more spaces, then a rule name, at the line's end.
_RULE_AT_END = re.compile(rb"(?:\t|  )[ \t]*([A-Za-z][A-Za-z0-9_-]*)\Z")
EXCLUDE = b"!"


@dataclass(frozen=True)
class Pattern:
    """One line of a listfile: an absolute path or glob, with where it came from."""

    text: bytes
    source: Path
    line: int
    problem: str = ""  # why the line can match nothing (a name over NAME_MAX), if it can't
    rule: str = DEFAULT  # the rule the line names
    exclude: bool = False  # a '!' line: what it matches is never scanned

    @property
    def where(self) -> str:
        """``snapshot_pub.list:3``: the line as messages name it."""
        return f"{self.source.name}:{self.line}"


@dataclass(frozen=True)
class Root:
    """A path the scan starts from; a recursive root covers everything below it."""

    path: bytes
    recursive: bool
    # A directory a list line needed to look into and could not: recorded unreadable.
    blind: bool = False


@dataclass
class Selection:
    roots: list[Root]
    unmatched: list[Pattern] = field(default_factory=list)
    unreachable: int = 0  # matches the scanning user may not look at (EACCES)
    # Directories the lines needed to look into and could not (recorded as blind roots).
    blind: list[bytes] = field(default_factory=list)


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


def _rule_and_path(text: bytes, rules: Collection[str] | None, path: Path, number: int
                   ) -> tuple[bytes, str, bool]:
    """(path text, rule, exclusion) of a list line; without ``rules`` the line is a path."""
    if rules is None:
        return text, DEFAULT, False
    exclude = text.startswith(EXCLUDE)
    if exclude:
        text = text[1:].strip()
    found = _RULE_AT_END.search(text)
    if found is None:
        return text, DEFAULT, exclude
    name = found.group(1).decode()
    if exclude:
        raise ConfigError(f"an exclusion takes no rule (found {name!r}): what a '!' line "
                          "matches is not scanned at all", path, number)
    if name not in rules:
        raise ConfigError(f"unknown rule {name!r} (known: {', '.join(rules)}; a path with a "
                          "TAB or two spaces before its last word: write one of those "
                          "spaces as [ ])", path, number)
    return text[:found.start()].rstrip(b" \t"), name, False


def parse_list(path: Path, rules: Collection[str] | None = None) -> list[Pattern]:
    """Parse a listfile: absolute paths or globs, one per line; with the names of the
    ``rules`` a line may give, the snapshot lists' rules and '!' exclusions too."""
    patterns = []
    for number, line in read_lines(path):
        text, rule, exclude = _rule_and_path(line, rules, path, number)
        if not text.startswith(b"/"):
            raise ConfigError(f"{text.decode(errors='replace')!r} is not an absolute path "
                              "(list lines start with /)", path, number)
        patterns.append(Pattern(_normalise(text), path, number, _problem(text), rule,
                                exclude))
    return patterns


def parse_homelist(path: Path, rules: Collection[str] | None = None) -> list[Pattern]:
    """Parse a homelist: paths or globs relative to a home directory (rules and '!'
    exclusions as in ``parse_list``; ``./!name`` is a name that starts with '!')."""
    patterns = []
    for number, line in read_lines(path):
        text, rule, exclude = _rule_and_path(line, rules, path, number)
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
        patterns.append(Pattern(normal, path, number, _problem(normal), rule, exclude))
    return patterns


@dataclass(frozen=True)
class Home:
    """A home directory and the account it belongs to."""

    path: bytes
    uid: int
    user: str


# A passwd file read for homes is never larger than this.
PASSWD_LIMIT = 64 << 20


def accounts_homes(passwd: str = "") -> list[Home]:
    """Every account with an absolute home other than '/', from a passwd(5) file or (by
    default) the system's account database, in order."""
    if not passwd:
        entries = [(e.pw_name, e.pw_uid, e.pw_dir) for e in pwd.getpwall()]
    else:
        entries = []
        try:
            with open(passwd, "rb") as handle:
                raw = handle.read(PASSWD_LIMIT)
        except OSError as err:
            raise ConfigError(f"cannot read: {os.strerror(err.errno or 0)}", passwd) from None
        for number, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip() or line.startswith((b"#", b"+", b"-")):
                continue
            fields = line.split(b":")
            if len(fields) != 7 or not fields[2].isdigit() or not fields[3].isdigit():
                raise ConfigError("not a passwd(5) line (name:password:uid:gid:gecos:home:"
                                  "shell)", passwd, number)
            entries.append((os.fsdecode(fields[0]), int(fields[2]), os.fsdecode(fields[5])))
    homes = []
    for name, uid, directory in entries:
        home = _normalise(os.fsencode(directory))
        if home.startswith(b"/") and home != b"/":
            homes.append(Home(home, uid, name))
    return homes


def home_directories(passwd: str = "") -> list[bytes]:
    """Every distinct home in the passwd database, '/' and relative ones skipped."""
    return sorted({home.path for home in accounts_homes(passwd)}, key=order_key)


class Unreachable(PermissionError):
    """A pattern's expansion needed to look into ``directory`` and could not (EACCES)."""

    def __init__(self, code: int, directory: bytes) -> None:
        super().__init__(code, os.strerror(code), os.fsdecode(directory))
        self.directory = directory


def expand(pattern: bytes, dirs: DirCache) -> Iterator[bytes]:
    """Yield the existing paths a pattern names, in order; a symlink on the way ends there.

    Raise ``Unreachable`` (a PermissionError) naming the directory it could not look into.
    """
    parts = [p for p in pattern.split(b"/") if p]
    yield from _expand(b"/", parts, dirs)


def _first_closed(path: bytes, dirs: DirCache) -> bytes:
    """The first directory on the way to ``path`` that cannot be opened by this account."""
    reached = b"/"
    for part in [p for p in path.split(b"/") if p]:
        reached = join(reached, part)
        try:
            dirs.open(reached)
        except ThroughSymlink:
            return reached
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM):
                return reached
            return path
    return path


def _closed(err: OSError) -> bool:
    return err.errno in (errno.EACCES, errno.EPERM)


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
        if _closed(err):
            raise Unreachable(err.errno or errno.EACCES, _first_closed(base, dirs)) from None
        raise
    if has_glob(head):
        try:
            names = sorted(os.fsencode(n) for n in os.listdir(fd))
        except OSError as err:
            if _closed(err):
                raise Unreachable(err.errno or errno.EACCES, base) from None
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
            if _closed(err):  # a directory that may be listed, not searched
                raise Unreachable(err.errno or errno.EACCES, base) from None
            raise
        if not rest:
            yield path
        elif stat.S_ISDIR(st.st_mode):
            yield from _expand(path, rest, dirs)
        elif stat.S_ISLNK(st.st_mode):
            yield path


class PathRulesLike(Protocol):
    def pruned(self, path: bytes) -> bool: ...


class _NoRules:
    """Stands in for PathRules when a mode has no rule lines: nothing is skipped."""

    @staticmethod
    def pruned(path: bytes) -> bool:
        return False


def _literal_head(text: bytes) -> bytes:
    """The part of a pattern before its first glob component."""
    head = b"/"
    for part in [p for p in text.split(b"/") if p]:
        if has_glob(part):
            break
        head = join(head, part)
    return head


def select(lists: Iterable[Pattern], homelists: Iterable[Pattern],
           homes: Iterable[bytes], record_homes: bool, rules: PathRulesLike | None = None
           ) -> Selection:
    """Turn patterns into sorted, non-overlapping scan roots.

    ``rules`` (a ``pathrules.PathRules``) says what is never recorded (excluded, or the
    root scan's): a match below such a path is dropped. A directory a line needed to look
    into and could not is a blind spot: a root of its own, recorded as unreadable.
    """
    skipping = rules if rules is not None else _NoRules()
    wanted: dict[bytes, bool] = {}
    selection = Selection(roots=[])
    homes = list(homes)
    candidates: list[tuple[Pattern | None, bytes, bool]] = []
    for pattern in lists:
        if not pattern.exclude:
            candidates.append((pattern, pattern.text, True))
    for pattern in homelists:
        if pattern.exclude:
            continue
        for home in homes:
            candidates.append((pattern, join(home, pattern.text), True))
    if record_homes:
        candidates.extend((None, home, False) for home in homes)
    matched: set[Pattern] = set()
    blind: set[bytes] = set()
    with DirCache() as dirs:
        for pattern, text, recursive in candidates:
            if skipping.pruned(_literal_head(text)):
                if pattern is not None:
                    matched.add(pattern)  # all it names is excluded, or root's
                continue
            try:
                for path in expand(text, dirs):
                    if pattern is not None:
                        matched.add(pattern)
                    if skipping.pruned(path):
                        continue
                    wanted[path] = wanted.get(path, False) or recursive
            except Unreachable as err:
                selection.unreachable += 1
                if not skipping.pruned(err.directory):
                    blind.add(err.directory)
            except OSError as err:
                if not _closed(err):
                    raise
                selection.unreachable += 1
    for directory in blind:
        wanted.setdefault(directory, False)
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
        selection.roots.append(Root(path, wanted[path], blind=path in blind))
        if path in blind:
            selection.blind.append(path)
        if wanted[path]:
            covering = key if path != b"/" else b""
    return selection
