"""State files, format version 2: a header, one entry per line sorted by path, a trailer.

Written to a temporary file in the same directory, fsynced and renamed into place, so a
crash or a full disk leaves the previous file intact. Read strictly: a file that is
truncated, edited or of a version this module does not know is refused with its name and
line. Version 1 files (written by earlier systraq) are still read. Every knowledge of the
line format lives here: other modules build lines with ``entry_line`` and ask
``reusable`` whether a previous line may be kept.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import xxhash

from systraq.errors import StateError
from systraq.fs.atomic import AtomicFile
from systraq.pathcodec import EscapeError, escape, unescape
from systraq.patterns import order_key
from systraq.snapshot.entry import (
    OK,
    PARTIAL,
    STATUSES,
    TYPE_LETTERS,
    TYPE_NAMES,
    Entry,
    group_name,
    user_name,
)
from systraq.snapshot.xattrs import NONE as NO_ATTRIBUTES
from systraq.snapshot.xattrs import Attributes

VERSION = 2
READABLE_VERSIONS = (1, 2)
MAGIC = "#systraq-state"
_V1_COLUMNS = ("path", "type", "perms", "uid", "user", "gid", "group", "size", "mtime_ns",
               "ctime_ns", "dev", "ino", "nlink", "status", "hash", "target")
# Version 2 adds the extended attributes (systraq.snapshot.xattrs), after the others.
ATTRIBUTE_COLUMNS = ("caps", "acl", "label", "xattrs")
COLUMNS = _V1_COLUMNS + ATTRIBUTE_COLUMNS
_COLUMNS = {1: _V1_COLUMNS, 2: COLUMNS}
# The attribute columns of an entry whose attributes were not recorded.
NOT_RECORDED = "-"
_UNRECORDED = "\t".join([NOT_RECORDED] * len(ATTRIBUTE_COLUMNS))
_UNRECORDED_TAIL = f"\t{_UNRECORDED}\n".encode()
_NO_ATTRIBUTES = "\t" * (len(ATTRIBUTE_COLUMNS) - 1)
# Header keys by format version: version 1 rehashed every file at once (#full_rehash, when
# it last did); version 2 rehashes a slice each run (#rehash, the interval it used).
_HEADER_KEYS = {1: ("host", "mode", "created", "hash", "full_rehash", "lists", "columns"),
                2: ("host", "mode", "created", "hash", "rehash", "lists", "columns")}


@dataclass(frozen=True)
class Header:
    host: str
    mode: str
    created_ns: int
    hash: str
    full_rehash_ns: int = 0  # version 1 files only: when every file was last hashed
    lists: tuple[bytes, ...] = field(default_factory=tuple)
    rehash_interval_ns: int = 0  # the rolling rehash interval this snapshot used
    version: int = VERSION  # of the file it was read from

    @property
    def records_attributes(self) -> bool:
        """Whether its entries record extended attributes (capabilities, ACLs, ...)."""
        return self.version >= 2


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


def format_header(header: Header) -> bytes:
    lines = [
        f"{MAGIC}\t{VERSION}",
        f"#host\t{escape(header.host.encode())}",
        f"#mode\t{header.mode}",
        f"#created\t{header.created_ns}\t{_iso(header.created_ns)}",
        f"#hash\t{header.hash}",
        f"#rehash\t{header.rehash_interval_ns}\t{header.rehash_interval_ns / 3600e9:g}h",
        "\t".join(["#lists", *(escape(p) for p in header.lists)]),
        "\t".join(["#columns", *COLUMNS]),
    ]
    return ("\n".join(lines) + "\n").encode()


@functools.lru_cache(maxsize=4096)
def _user_field(uid: int) -> str:
    return escape(os.fsencode(user_name(uid)))


@functools.lru_cache(maxsize=4096)
def _group_field(gid: int) -> str:
    return escape(os.fsencode(group_name(gid)))


def stat_columns(st: os.stat_result) -> str:
    """The columns from type to nlink, straight from a stat result (the scan's hot path)."""
    return (f"{TYPE_LETTERS.get(stat.S_IFMT(st.st_mode), '?')}\t{stat.S_IMODE(st.st_mode):04o}"
            f"\t{st.st_uid}\t{_user_field(st.st_uid)}\t{st.st_gid}\t{_group_field(st.st_gid)}"
            f"\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ctime_ns}\t{st.st_dev}\t{st.st_ino}"
            f"\t{st.st_nlink}")


# What may follow a path and its stat columns in a line whose hash can be kept.
_KEEPABLE = (f"\t{OK}\t".encode(), f"\t{PARTIAL}\t".encode())


def reusable(previous: bytes | None, path_field: str, columns: str) -> bool:
    """Whether ``previous`` (a line of the previous snapshot, or None) records ``path_field``
    with exactly these stat columns and a content hash or link target that may be kept.

    Extended attributes cannot change without moving ctime either, so a line that recorded
    them keeps them; one that could not record them is not kept.
    """
    if previous is None:
        return False
    prefix = f"{path_field}\t{columns}".encode()
    return previous.startswith(prefix) and previous.startswith(_KEEPABLE, len(prefix)) \
        and not previous.endswith(_UNRECORDED_TAIL)


def kept_line(previous: bytes, attributes: Attributes | None) -> bytes:
    """A reusable line of a version-1 snapshot in this version's format: with the
    attribute columns it lacks."""
    return previous[:-1] + b"\t" + _attribute_columns(attributes).encode() + b"\n"


def _attribute_columns(attributes: Attributes | None) -> str:
    if attributes is None:
        return _UNRECORDED
    if attributes is NO_ATTRIBUTES:
        return _NO_ATTRIBUTES
    return f"{attributes.caps}\t{attributes.acl}\t{attributes.label}\t{attributes.xattrs}"


def entry_line(path_field: str, columns: str, status: str = OK, digest: str = "",
               target_field: str = "", attributes: Attributes | None = NO_ATTRIBUTES
               ) -> bytes:
    """An entry line; ``attributes`` None when they could not be read."""
    return (f"{path_field}\t{columns}\t{status}\t{digest}\t{target_field}\t"
            f"{_attribute_columns(attributes)}\n").encode()


def format_entry(entry: Entry) -> bytes:
    columns = "\t".join((
        entry.type, f"{entry.perms:04o}", str(entry.uid), escape(os.fsencode(entry.user)),
        str(entry.gid), escape(os.fsencode(entry.group)), str(entry.size), str(entry.mtime_ns),
        str(entry.ctime_ns), str(entry.dev), str(entry.ino), str(entry.nlink)))
    attributes = None if entry.caps is None else Attributes(
        entry.caps, entry.acl or "", entry.label or "", entry.xattrs or "")
    return entry_line(escape(entry.path), columns, entry.status, entry.hash,
                      "" if entry.target is None else escape(entry.target), attributes)


def shared_columns(old: Header, new: Header) -> Callable[[bytes], bytes] | None:
    """None when two state files have the same columns; else what cuts an entry line of
    either down to the columns both have (unchanged entries then compare equal)."""
    if old.version == new.version:
        return None
    count = len(_COLUMNS[min(old.version, new.version)])

    def cut(line: bytes) -> bytes:
        return b"\t".join(line.rstrip(b"\n").split(b"\t", count)[:count])
    return cut


def line_path(line: bytes) -> bytes:
    """The raw path of an entry line."""
    return unescape(line[: line.index(b"\t")].decode("utf-8"))


def line_key(line: bytes) -> bytes:
    """The order key of an entry line's path, without decoding it when it has no escapes."""
    path = line[: line.index(b"\t")]
    if b"\\" not in path:
        path.decode("utf-8")  # a plain path is valid UTF-8, or the line is corrupt
        return path.replace(b"/", b"\0")
    return order_key(line_path(line))


def trusted_line_key(line: bytes) -> tuple[bytes, bytes]:
    """(order key, escaped path) of a line from a file that passed its checksum."""
    field = line[: line.index(b"\t")]
    return (field.replace(b"/", b"\0") if b"\\" not in field else line_key(line)), field


def parse_entry(line: str, version: int = VERSION) -> Entry:
    """Parse one entry line (without its newline); raise ValueError when it is malformed."""
    fields = line.split("\t")
    expected = len(_COLUMNS[version])
    if len(fields) != expected:
        raise ValueError(f"expected {expected} tab-separated fields, found {len(fields)}")
    (path, type_, perms, uid, user, gid, group, size, mtime, ctime, dev, ino, nlink,
     status, digest, target) = fields[:16]
    # Not recorded (version 1, or unreadable): None, never compared.
    caps = acl = label = xattrs = None
    if version >= 2 and fields[16] != NOT_RECORDED:
        caps, acl, label, xattrs = fields[16:]
    if type_ not in TYPE_NAMES:
        raise ValueError(f"unknown type {type_!r}")
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if not path.startswith("/"):
        raise ValueError("path is not absolute")
    try:
        numbers = [int(v) for v in (uid, gid, size, mtime, ctime, dev, ino, nlink)]
        mode = int(perms, 8)
    except ValueError:
        raise ValueError("a numeric field is not a number") from None
    try:
        return Entry(unescape(path), type_, mode, numbers[0], os.fsdecode(unescape(user)),
                     numbers[1], os.fsdecode(unescape(group)), *numbers[2:], status=status,
                     hash=digest, target=unescape(target) if target else None, caps=caps,
                     acl=acl, label=label, xattrs=xattrs)
    except EscapeError as err:
        raise ValueError(err.message) from None


class StateWriter:
    """Write a state file atomically; entries must come in order (``order_key``)."""

    def __init__(self, path: Path, header: Header, private: bool = False,
                 owner: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        self.header = header
        self.count = 0
        self._last_key: bytes | None = None
        self._checksum = xxhash.xxh3_128()
        self._out = AtomicFile(self.path, mode=0o600 if private else 0o644, owner=owner)

    def __enter__(self) -> StateWriter:
        self._out.open()
        self._write(format_header(self.header))
        return self

    def _write(self, data: bytes) -> None:
        self._checksum.update(data)
        self._out.write(data)

    def add_chunk(self, lines: list[bytes]) -> None:
        """Add entry lines known to be in order among themselves (a scan's output)."""
        if not lines:
            return
        first = order_key(line_path(lines[0]))
        if self._last_key is not None and first <= self._last_key:
            raise AssertionError(f"entries out of order or repeated at {lines[0]!r}")
        self._last_key = order_key(line_path(lines[-1]))
        self._write(b"".join(lines))
        self.count += len(lines)

    def add(self, entry: Entry) -> None:
        self.add_line(format_entry(entry), entry.path)

    def add_line(self, line: bytes, path: bytes) -> None:
        """Add an entry line already formatted (by the scan) for raw ``path``."""
        key = order_key(path)
        if self._last_key is not None and key <= self._last_key:
            raise AssertionError(f"entries out of order or repeated at {path!r}")
        self._last_key = key
        self._write(line)
        self.count += 1

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self._out.discard()
            return
        try:
            self._out.write(f"#end\tentries={self.count}\t"
                            f"xxh3_128={self._checksum.hexdigest()}\n".encode())
            self._out.commit()
        except BaseException:
            self._out.discard()
            raise


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def open_state(path: Path) -> BinaryIO:
    """Open a state file for reading: never through a symlink, never a FIFO or device.

    Another account may own the file (the pub snapshot): it gets no say in what root opens.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise StateError("no such state file", path) from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise StateError("is a symlink, not a state file (refusing to follow it)",
                             path) from None
        raise StateError(f"cannot read: {os.strerror(err.errno or 0)}", path) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StateError("is not a regular file, not a state file", path)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


class StateReader:
    """Read a state file strictly, streaming its entries.

    The trailer is checked after the last entry: a consumer must not act on what it read
    until the iteration has ended without an error.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = open_state(self.path)
        self._checksum = xxhash.xxh3_128()
        self.line = 0
        self.entries = 0  # entry lines read so far
        self.header = self._read_header()

    def __enter__(self) -> StateReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _error(self, message: str) -> StateError:
        return StateError(message, self.path, self.line or None)

    def _next_line(self) -> str | None:
        raw = self._file.readline()
        if not raw:
            return None
        self.line += 1
        if not raw.endswith(b"\n"):
            raise self._error("truncated (last line incomplete)")
        try:
            text = raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise self._error("not UTF-8 text: corrupt") from None
        if not text.startswith("#end\t"):
            self._checksum.update(raw)
        return text

    def _read_header(self) -> Header:
        first = self._next_line()
        if first is None or not first.startswith(MAGIC + "\t"):
            raise self._error("not a systraq state file")
        version = first.split("\t", 1)[1]
        if version not in {str(v) for v in READABLE_VERSIONS}:
            raise self._error(f"state format version {version} is not understood by this "
                              f"systraq (it reads versions "
                              f"{', '.join(map(str, READABLE_VERSIONS))})")
        self.version = int(version)
        keys = _HEADER_KEYS[self.version]
        values: dict[str, list[str]] = {}
        while "columns" not in values:
            text = self._next_line()
            if text is None:
                raise self._error("truncated (header incomplete)")
            key, *rest = text[1:].split("\t")
            if not text.startswith("#") or key not in keys or key in values:
                raise self._error(f"unexpected header line {text[:40]!r}")
            values[key] = rest
        if tuple(values["columns"]) != _COLUMNS[self.version]:
            raise self._error("unexpected column list")
        try:
            return Header(
                host=unescape(values["host"][0]).decode("utf-8", "replace"),
                mode=values["mode"][0], created_ns=int(values["created"][0]),
                hash=values["hash"][0],
                full_rehash_ns=int(values["full_rehash"][0]) if self.version == 1 else 0,
                rehash_interval_ns=int(values["rehash"][0]) if self.version > 1 else 0,
                lists=tuple(unescape(v) for v in values["lists"]), version=self.version)
        except (KeyError, IndexError, ValueError):
            raise self._error("incomplete or malformed header") from None

    def __iter__(self) -> Iterator[Entry]:
        for _, line in self.raw():
            yield self.parse(line)

    def parse(self, line: bytes) -> Entry:
        """An entry line from ``raw()`` as an Entry (errors name this file)."""
        try:
            return parse_entry(line[:-1].decode("utf-8"), self.version)
        except UnicodeDecodeError:
            raise self._error("not UTF-8 text: corrupt") from None
        except ValueError as err:
            # raw() pauses right after yielding a line: self.line is that line's number.
            raise self._error(f"bad entry: {err}") from None

    def raw(self) -> Iterator[tuple[bytes, bytes]]:
        """Yield (order key, entry line) without parsing the entries; checked all the same."""
        last_key: bytes | None = None
        count = 0
        readline = self._file.readline
        checksum = self._checksum.update
        try:
            while True:
                line = readline()
                self.line += 1
                if not line.startswith(b"/"):
                    break
                if not line.endswith(b"\n"):
                    raise self._error("truncated (last line incomplete)")
                checksum(line)
                try:
                    key = line_key(line)
                except (ValueError, UnicodeDecodeError, EscapeError):
                    raise self._error("bad entry: malformed path") from None
                if last_key is not None and key <= last_key:
                    raise self._error("entries out of order or repeated")
                last_key = key
                count += 1
                self.entries = count
                yield key, line
            if not line:
                raise self._error("truncated (no #end trailer)")
            if not line.startswith(b"#end\t"):
                if not line.endswith(b"\n"):
                    raise self._error("truncated (last line incomplete)")
                raise self._error("bad entry: path is not absolute")
            if not line.endswith(b"\n"):
                raise self._error("truncated (last line incomplete)")
            self._check_trailer(line[:-1].decode("utf-8", "replace"), count)
            if self._file.read(1):
                self.line += 1
                raise self._error("data after the #end trailer")
        finally:
            self.close()

    def _check_trailer(self, text: str, count: int) -> None:
        fields = dict(f.split("=", 1) for f in text.split("\t")[1:] if "=" in f)
        if fields.get("entries") != str(count):
            raise self._error(f"trailer says {fields.get('entries')} entries, file holds "
                              f"{count}: truncated or edited")
        if fields.get("xxh3_128") != self._checksum.hexdigest():
            raise self._error("checksum mismatch: the file was edited or is corrupt")


def verify(path: Path) -> tuple[Header, int]:
    """Check a state file's header and trailer (count, checksum) without parsing entries;
    return its header and number of entries."""
    reader = StateReader(path)
    try:
        header_lines = reader.line
        handle = reader._file
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - 4096))
        tail = handle.read()
        end = tail.rfind(b"\n#end\t")
        if end < 0 or not tail.endswith(b"\n"):
            raise StateError("truncated (no #end trailer)", path)
        trailer_at = size - len(tail) + end + 1
        trailer = tail[end + 1:-1].decode("ascii", "replace")
        handle.seek(0)
        checksum, newlines, done = xxhash.xxh3_128(), 0, 0
        while done < trailer_at:
            block = handle.read(min(1 << 20, trailer_at - done))
            if not block:
                raise StateError("truncated while reading", path)
            checksum.update(block)
            newlines += block.count(b"\n")
            done += len(block)
    finally:
        reader.close()
    fields = dict(f.split("=", 1) for f in trailer.split("\t")[1:] if "=" in f)
    if fields.get("entries") != str(newlines - header_lines) or \
            fields.get("xxh3_128") != checksum.hexdigest():
        raise StateError("trailer does not match the content: truncated or edited", path)
    return reader.header, newlines - header_lines


def read_state(path: Path) -> tuple[Header, list[Entry]]:
    """Read a whole state file (small files, tests); verify it completely."""
    reader = StateReader(path)
    entries = list(reader)
    return reader.header, entries
