"""Reading dpkg's database: packages, their files, checksums, conffiles and diversions.

The files are read as dpkg writes them under ADMINDIR (default ROOT/var/lib/dpkg):
``status`` (packages, versions, architectures, ``Conffiles:``), ``info/PKG.list`` or
``info/PKG:ARCH.list`` (every path a package owns), ``info/PKG[:ARCH].md5sums`` and
``diversions``. With ``--root`` they come from a tree anyone may have made, so every file
is opened without following a symlink, must be a regular file, and is read only up to a
size limit: a hostile tree costs time and memory in proportion to what is on disk.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from systraq.errors import SystraqError
from systraq.fs.nofollow import DIR_FLAGS, FILE_FLAGS

DEFAULT_ADMINDIR = b"/var/lib/dpkg"
MAX_STATUS_BYTES = 256 << 20
MAX_INFO_BYTES = 64 << 20
MAX_DIVERSIONS_BYTES = 16 << 20

NOT_INSTALLED = "not-installed"
CONFIG_FILES = "config-files"
STATES = (NOT_INSTALLED, CONFIG_FILES, "half-installed", "unpacked", "half-configured",
          "triggers-awaited", "triggers-pending", "installed")

_MD5 = re.compile(rb"[0-9a-f]{32}")
_FIELD = re.compile(rb"([A-Za-z0-9][A-Za-z0-9-]*):[ \t]*(.*)")


class DatabaseError(SystraqError):
    """A dpkg database file that cannot be read or parsed (names file and line)."""


@dataclass(frozen=True)
class Conffile:
    path: bytes
    md5: str  # "" when dpkg has no hash yet ("newconffile")
    obsolete: bool = False


@dataclass(frozen=True)
class Package:
    name: str
    arch: str
    version: str
    state: str
    multiarch: str = ""
    conffiles: tuple[Conffile, ...] = ()

    @property
    def key(self) -> str:
        """``name:arch`` as dpkg.log names it."""
        return f"{self.name}:{self.arch}" if self.arch else self.name

    @property
    def on_disk(self) -> bool:
        """Whether the package has files on disk (every state but not-installed)."""
        return self.state != NOT_INSTALLED


@dataclass(frozen=True)
class Diversion:
    path: bytes  # the path a package ships
    to: bytes  # where the shipped file went
    package: str | None  # the diverting package; None for a local diversion

    def applies_to(self, package: Package) -> bool:
        """Whether ``package``'s file at ``path`` was moved to ``to`` (debsums' rule)."""
        return self.package is None or self.package not in (package.name, package.key)


def read_bounded(dir_fd: int | None, name: bytes, limit: int, shown: bytes) -> bytes | None:
    """A regular file's bytes (None if absent), never through a symlink, at most ``limit``."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise DatabaseError("is a symlink: not read", shown) from None
        raise DatabaseError(f"cannot read: {err.strerror}", shown) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DatabaseError("not a regular file: not read", shown)
        if st.st_size > limit:
            raise DatabaseError(f"larger than {limit} bytes: not read", shown)
        chunks, total = [], 0
        while total < st.st_size:
            chunk = os.read(fd, min(1 << 20, st.st_size - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    except OSError as err:
        raise DatabaseError(f"cannot read: {err.strerror}", shown) from None
    finally:
        os.close(fd)


def open_tree_dir(root: bytes, relative: bytes, shown: bytes) -> int:
    """Open ROOT (as given) and then each component of ``relative`` without following one."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise DatabaseError(f"cannot open: {err.strerror}", root) from None
    for part in (p for p in relative.split(b"/") if p):
        try:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
        except OSError as err:
            os.close(fd)
            why = "a symlink or not a directory on the way" if err.errno in (
                errno.ELOOP, errno.ENOTDIR) else err.strerror
            raise DatabaseError(f"cannot open: {why}", shown) from None
        os.close(fd)
        fd = child
    return fd


def _stanzas(data: bytes, shown: bytes) -> Iterator[tuple[int, dict[bytes, bytes]]]:
    """(first line number, fields) of each deb822 stanza; continuation lines kept."""
    fields: dict[bytes, bytes] = {}
    start = 0
    last: bytes | None = None
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            if fields:
                yield start, fields
            fields, last = {}, None
            continue
        if line[:1] in (b" ", b"\t"):
            if last is None:
                raise DatabaseError("continuation line without a field", shown, number)
            fields[last] += b"\n" + line
            continue
        match = _FIELD.fullmatch(line)
        if match is None:
            raise DatabaseError("not a 'Field: value' line", shown, number)
        if not fields:
            start = number
        last = match.group(1).lower()
        fields[last] = match.group(2)
    if fields:
        yield start, fields


def _text(value: bytes, what: str, shown: bytes, line: int) -> str:
    try:
        return value.decode("ascii").strip()
    except UnicodeDecodeError:
        raise DatabaseError(f"{what} is not ASCII", shown, line) from None


def parse_conffiles(value: bytes, shown: bytes, line: int) -> tuple[Conffile, ...]:
    """The ``Conffiles:`` field: `` /path md5 [obsolete] [remove-on-upgrade]`` per line.

    Conffiles dpkg removes on upgrade are left out, as debsums does.
    """
    out = []
    for offset, raw in enumerate(value.split(b"\n")):
        raw = raw.strip()
        if not raw:
            continue
        words = raw.rsplit(b" ", 3)
        flags: set[bytes] = set()
        while len(words) > 2 and words[-1] in (b"obsolete", b"remove-on-upgrade"):
            flags.add(words.pop())
        path, _, digest = b" ".join(words).rpartition(b" ")
        if not path.startswith(b"/"):
            raise DatabaseError("Conffiles: expected '/path md5'", shown, line + offset)
        if b"remove-on-upgrade" in flags:
            continue
        md5 = digest.decode("ascii") if _MD5.fullmatch(digest) else ""
        if not md5 and digest != b"newconffile":
            raise DatabaseError("Conffiles: not an md5 checksum", shown, line + offset)
        out.append(Conffile(path, md5, b"obsolete" in flags))
    return tuple(out)


def parse_status(data: bytes, shown: bytes) -> list[Package]:
    """Every package stanza of a ``status`` file."""
    packages = []
    for line, fields in _stanzas(data, shown):
        if b"package" not in fields:
            raise DatabaseError("stanza without a Package field", shown, line)
        name = _text(fields[b"package"], "Package", shown, line)
        status = _text(fields.get(b"status", b""), "Status", shown, line).split()
        if len(status) != 3 or status[2] not in STATES:
            raise DatabaseError(f"{name}: Status must be 'want flag state'", shown, line)
        conffiles = parse_conffiles(fields[b"conffiles"], shown, line) \
            if b"conffiles" in fields else ()
        packages.append(Package(
            name=name, arch=_text(fields.get(b"architecture", b""), "Architecture", shown, line),
            version=_text(fields.get(b"version", b""), "Version", shown, line),
            state=status[2],
            multiarch=_text(fields.get(b"multi-arch", b""), "Multi-Arch", shown, line),
            conffiles=conffiles))
    return packages


def parse_diversions(data: bytes, shown: bytes) -> dict[bytes, Diversion]:
    """The ``diversions`` file: three lines each (path, diverted-to, package or ':')."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) % 3:
        raise DatabaseError("truncated: diversions come in groups of three lines", shown,
                            len(lines))
    out = {}
    for index in range(0, len(lines), 3):
        path, to, package = lines[index: index + 3]
        if not path.startswith(b"/") or not to.startswith(b"/"):
            raise DatabaseError("a diversion path is not absolute", shown, index + 1)
        out[path] = Diversion(path, to, None if package == b":" else
                              _text(package, "package", shown, index + 3))
    return out


def parse_md5sums(data: bytes, shown: bytes) -> dict[bytes, str]:
    """An ``md5sums`` file: ``md5  relative/path`` per line, by absolute path."""
    out = {}
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line:
            continue
        digest, path = line[:32], line[34:]
        if line[32:34] != b"  " or not path or not _MD5.fullmatch(digest):
            raise DatabaseError("expected 'md5sum  path'", shown, number)
        if path.startswith(b"./"):
            path = path[1:]
        elif not path.startswith(b"/"):
            path = b"/" + path
        out[path] = digest.decode("ascii")
    return out


def parse_list(data: bytes, shown: bytes) -> list[bytes]:
    """A ``.list`` file: one absolute path per line (``/.`` left out)."""
    out = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line or line == b"/.":
            continue
        if not line.startswith(b"/"):
            raise DatabaseError("not an absolute path", shown, number)
        out.append(line)
    return out


@dataclass
class Database:
    """One dpkg database, as found under ROOT (or at ADMINDIR)."""

    root: bytes
    admindir: bytes  # as shown in messages
    packages: list[Package]
    diversions: dict[bytes, Diversion]
    info_fd: int
    info_names: frozenset[str]
    _diverted_to: dict[bytes, Diversion] = field(default_factory=dict)

    @classmethod
    def open(cls, root: str | bytes = b"/", admindir: str | bytes | None = None) -> Database:
        root = os.fsencode(root) or b"/"
        if admindir is None:
            admin_fd = open_tree_dir(root, DEFAULT_ADMINDIR, _under(root, DEFAULT_ADMINDIR))
            shown = _under(root, DEFAULT_ADMINDIR)
        else:
            shown = os.fsencode(admindir)
            admin_fd = open_tree_dir(shown, b"", shown)
        try:
            status = read_bounded(admin_fd, b"status", MAX_STATUS_BYTES, shown + b"/status")
            if status is None:
                raise DatabaseError("no status file: not a dpkg database", shown)
            packages = parse_status(status, shown + b"/status")
            del status
            diversions_data = read_bounded(admin_fd, b"diversions", MAX_DIVERSIONS_BYTES,
                                           shown + b"/diversions")
            diversions = parse_diversions(diversions_data, shown + b"/diversions") \
                if diversions_data else {}
            try:
                info_fd = os.open(b"info", DIR_FLAGS, dir_fd=admin_fd)
            except FileNotFoundError:
                raise DatabaseError("no info directory", shown) from None
            except OSError as err:
                raise DatabaseError(f"info: cannot open: {err.strerror}", shown) from None
        finally:
            os.close(admin_fd)
        names = frozenset(os.listdir(info_fd))
        db = cls(root, shown, packages, diversions, info_fd, names)
        db._diverted_to = {d.to: d for d in diversions.values()}
        return db

    def close(self) -> None:
        if self.info_fd >= 0:
            os.close(self.info_fd)
            self.info_fd = -1

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info_name(self, package: Package, suffix: str) -> str | None:
        """The info file of a package, ``PKG:ARCH.suffix`` or ``PKG.suffix``, if present."""
        qualified, plain = f"{package.name}:{package.arch}.{suffix}", f"{package.name}.{suffix}"
        order = (qualified, plain) if package.multiarch == "same" else (plain, qualified)
        return next((n for n in order if n in self.info_names), None)

    def _info(self, package: Package, suffix: str) -> tuple[bytes, bytes] | None:
        name = self.info_name(package, suffix)
        if name is None:
            return None
        shown = self.admindir + b"/info/" + name.encode()
        data = read_bounded(self.info_fd, name.encode(), MAX_INFO_BYTES, shown)
        return None if data is None else (data, shown)

    def file_list(self, package: Package) -> list[bytes] | None:
        """Every path the package owns (its ``.list``), None without one."""
        got = self._info(package, "list")
        return None if got is None else parse_list(*got)

    def md5sums(self, package: Package) -> dict[bytes, str] | None:
        """md5 by absolute path (its ``.md5sums``), None without one."""
        got = self._info(package, "md5sums")
        return None if got is None else parse_md5sums(*got)

    def checked_path(self, path: bytes, package: Package) -> bytes:
        """Where ``package``'s file ``path`` is on disk: diverted files are checked at the
        diverted-to path unless the package is the one that diverts (as debsums does)."""
        diversion = self.diversions.get(path)
        if diversion is not None and diversion.applies_to(package):
            return diversion.to
        return path

    def listed_paths(self, on_disk: bytes) -> list[tuple[bytes, Diversion | None]]:
        """The paths a package may list for the file at ``on_disk``: itself, and the path
        diverted to it (with that diversion)."""
        out: list[tuple[bytes, Diversion | None]] = [(on_disk, None)]
        diversion = self._diverted_to.get(on_disk)
        if diversion is not None:
            out.append((diversion.path, diversion))
        return out


def _under(root: bytes, path: bytes) -> bytes:
    return path if root in (b"/", b"") else root.rstrip(b"/") + path
