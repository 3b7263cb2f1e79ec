"""What filetraq last saw at each listed path, so a notice is given once, not every run.

Kept in ``BACKUPDIR/.systraq/seen`` (a directory Debian's filetraq never looks at), one line
per path, replaced atomically and only when something changed::

    #systraq-filetraq-seen	1
    F	/etc/hosts	tracked	(empty detail)
    F	/etc/shadow	private	(empty detail)
    F	/srv/disk.img	large	4194304 1048576 9f86d0...
    F	/etc/localtime	symlink	/usr/share/zoneinfo/Etc/UTC
    F	/srv/big.conf	unstored	52428 0 5d41402a...
    U	/etc/nothing*
    #end	6

``F`` lines: path, kind, detail (escaped as in state files; often empty). ``U`` lines:
list patterns that matched nothing when last seen. A memory that cannot be read is not
fatal: it is reported as a warning and rebuilt, at the cost of repeating some notices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from systraq.fs.atomic import write_atomic
from systraq.pathcodec import EscapeError, escape, unescape

NAME = b"seen"
MAGIC = "#systraq-filetraq-seen\t1"

# Kinds of what a listed path is, as far as filetraq is concerned.
TRACKED = "tracked"  # world-readable regular file: content in the store
# world-readable, over the size limit (detail: size, N, the sha256 of the first N bytes)
LARGE = "large"
PRIVATE = "private"  # not readable by everyone (mode or a directory on the way)
SYMLINK = "symlink"  # never followed (detail: target)
SPECIAL = "special"  # fifo, socket, device (detail: type name)
UNREADABLE = "unreadable"  # world-readable, yet reading failed (detail: the error)
# tracked, but its content was not stored: the store was at its budget (detail: size, 0,
# the sha256 of the content the report last told of)
UNSTORED = "unstored"
KINDS = (TRACKED, LARGE, PRIVATE, SYMLINK, SPECIAL, UNREADABLE, UNSTORED)
_HASHED = (LARGE, UNSTORED)  # kinds whose detail is ``size first sha256``


@dataclass(frozen=True)
class Record:
    """What a path was when last seen: its kind, and what the notice said about it."""

    kind: str
    detail: str = ""  # symlink target, file type or error; empty for other kinds
    size: int = 0  # LARGE: the size, and the sha256 of the first ``first`` bytes, tracked
    sha256: str = ""  # instead of the content (first 0: a whole-file hash of earlier
    first: int = 0  # versions, which cannot be compared and is replaced without a notice)

    def field(self) -> str:
        """The detail column of the memory file (``size first sha256`` for a large file)."""
        return f"{self.size} {self.first} {self.sha256}" if self.kind in _HASHED \
            else self.detail


def _record(kind: str, field: str) -> Record:
    if kind in _HASHED:
        parts = field.split(" ")
        if len(parts) == 3:
            return Record(kind, size=int(parts[0]), first=int(parts[1]), sha256=parts[2])
        return Record(kind, size=int(parts[0]), sha256=parts[-1])
    return Record(kind, field)


@dataclass
class Memory:
    files: dict[bytes, Record] = field(default_factory=dict)
    unmatched: set[bytes] = field(default_factory=set)

    def copy(self) -> Memory:
        return Memory(dict(self.files), set(self.unmatched))


class CorruptMemory(ValueError):
    """A memory file this version does not understand (reported, then rebuilt)."""


def parse(data: bytes) -> Memory:
    """Parse a memory file; raise CorruptMemory naming the line when it is malformed."""
    memory = Memory()
    lines = data.split(b"\n")
    if lines[0] != MAGIC.encode():
        raise CorruptMemory("line 1: not a systraq filetraq memory (or another version)")
    if lines[-1] != b"":
        raise CorruptMemory("truncated (last line incomplete)")
    body, last = lines[1:-2], lines[-2]
    if len(lines) < 3 or last != f"#end\t{len(body)}".encode():
        raise CorruptMemory("truncated or edited (the #end line does not match)")
    for number, raw in enumerate(body, 2):
        try:
            kind, *fields = raw.decode("utf-8").split("\t")
            if kind == "F" and len(fields) == 3 and fields[1] in KINDS:
                memory.files[unescape(fields[0])] = _record(
                    fields[1], unescape(fields[2]).decode("utf-8"))
            elif kind == "U" and len(fields) == 1:
                memory.unmatched.add(unescape(fields[0]))
            else:
                raise ValueError
        except (EscapeError, ValueError):  # UnicodeDecodeError is a ValueError
            raise CorruptMemory(f"line {number}: malformed") from None
    return memory


def format_memory(memory: Memory) -> bytes:
    out = [MAGIC]
    for path in sorted(memory.files):
        record = memory.files[path]
        out.append(f"F\t{escape(path)}\t{record.kind}\t{escape(record.field().encode())}")
    out.extend(f"U\t{escape(pattern)}" for pattern in sorted(memory.unmatched))
    out.append(f"#end\t{len(memory.files) + len(memory.unmatched)}")
    return ("\n".join(out) + "\n").encode()


def load(dir_fd: int) -> tuple[Memory, str | None]:
    """Read the memory in the store's meta directory: (memory, warning or None)."""
    try:
        fd = os.open(NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return Memory(), None
    except OSError as err:
        return Memory(), f"cannot read: {os.strerror(err.errno or 0)}"
    try:
        with os.fdopen(fd, "rb") as stream:
            data = stream.read()
    except OSError as err:
        return Memory(), f"cannot read: {os.strerror(err.errno or 0)}"
    try:
        return parse(data), None
    except CorruptMemory as err:
        return Memory(), str(err)


def save(dir_fd: int, memory: Memory) -> None:
    """Replace the memory atomically: temporary file, fsync, rename."""
    write_atomic(NAME, format_memory(memory), mode=0o600, dir_fd=dir_fd)
