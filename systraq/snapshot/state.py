"""State files, format version 1: a header, one entry per line sorted by path, a trailer.

Written to a temporary file in the same directory, fsynced and renamed into place, so a
crash or a full disk leaves the previous file intact. Read strictly: a file that is
truncated, edited or of another version is refused with its name and line.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import time
from collections.abc import Iterator
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
    STATUSES,
    TYPE_LETTERS,
    TYPE_NAMES,
    Entry,
    group_name,
    user_name,
)

VERSION = 1
MAGIC = "#systraq-state"
COLUMNS = ("path", "type", "perms", "uid", "user", "gid", "group", "size", "mtime_ns",
           "ctime_ns", "dev", "ino", "nlink", "status", "hash", "target")
_HEADER_KEYS = ("host", "mode", "created", "hash", "full_rehash", "lists", "columns")


@dataclass(frozen=True)
class Header:
    host: str
    mode: str
    created_ns: int
    hash: str
    full_rehash_ns: int = 0
    lists: tuple[bytes, ...] = field(default_factory=tuple)


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


def format_header(header: Header) -> bytes:
    lines = [
        f"{MAGIC}\t{VERSION}",
        f"#host\t{escape(header.host.encode())}",
        f"#mode\t{header.mode}",
        f"#created\t{header.created_ns}\t{_iso(header.created_ns)}",
        f"#hash\t{header.hash}",
        f"#full_rehash\t{header.full_rehash_ns}\t{_iso(header.full_rehash_ns)}",
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


def entry_line(path_field: str, columns: str, status: str = OK, digest: str = "",
               target_field: str = "") -> bytes:
    return f"{path_field}\t{columns}\t{status}\t{digest}\t{target_field}\n".encode()


def format_entry(entry: Entry) -> bytes:
    columns = "\t".join((
        entry.type, f"{entry.perms:04o}", str(entry.uid), escape(os.fsencode(entry.user)),
        str(entry.gid), escape(os.fsencode(entry.group)), str(entry.size), str(entry.mtime_ns),
        str(entry.ctime_ns), str(entry.dev), str(entry.ino), str(entry.nlink)))
    return entry_line(escape(entry.path), columns, entry.status, entry.hash,
                      "" if entry.target is None else escape(entry.target))


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


def same_record(line: bytes, path_field: str, columns: str) -> bool:
    """Whether an entry line records this path with these stat columns, scanned cleanly:
    the line may then stand for the file as it is (the caller decides about racy times)."""
    return line.startswith(f"{path_field}\t{columns}\t{OK}\t".encode())


def parse_entry(line: str) -> Entry:
    """Parse one entry line (without its newline); raise ValueError when it is malformed."""
    fields = line.split("\t")
    if len(fields) != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} tab-separated fields, found {len(fields)}")
    (path, type_, perms, uid, user, gid, group, size, mtime, ctime, dev, ino, nlink,
     status, digest, target) = fields
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
                     hash=digest, target=unescape(target) if target else None)
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
        if version != str(VERSION):
            raise self._error(f"state format version {version} is not understood by this "
                              f"systraq (it reads version {VERSION})")
        values: dict[str, list[str]] = {}
        while "columns" not in values:
            text = self._next_line()
            if text is None:
                raise self._error("truncated (header incomplete)")
            key, *rest = text[1:].split("\t")
            if not text.startswith("#") or key not in _HEADER_KEYS or key in values:
                raise self._error(f"unexpected header line {text[:40]!r}")
            values[key] = rest
        if tuple(values["columns"]) != COLUMNS:
            raise self._error("unexpected column list")
        try:
            return Header(
                host=unescape(values["host"][0]).decode("utf-8", "replace"),
                mode=values["mode"][0], created_ns=int(values["created"][0]),
                hash=values["hash"][0], full_rehash_ns=int(values["full_rehash"][0]),
                lists=tuple(unescape(v) for v in values["lists"]))
        except (KeyError, IndexError, ValueError):
            raise self._error("incomplete or malformed header") from None

    def __iter__(self) -> Iterator[Entry]:
        for _, line in self.raw():
            yield self.parse(line)

    def parse(self, line: bytes) -> Entry:
        """An entry line from ``raw()`` as an Entry (errors name this file)."""
        try:
            return parse_entry(line[:-1].decode("utf-8"))
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
