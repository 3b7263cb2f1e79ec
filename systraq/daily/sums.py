"""Local checksums: ``STATE/systraq.sums`` for trees no package covers (``/usr/local``).

The file is in ``sha256sum -c`` format (``DIGEST  NAME``, ``DIGEST *NAME``, a leading
backslash for an escaped name); each line's algorithm is told by its digest's length, so
the original systraq's ``systraq.md5sums`` (md5sum format) is read as it is. Verifying
reports what ``sha256sum -c`` would: ``NAME: FAILED`` and ``NAME: FAILED open or read``.
``update`` regenerates the file from directory trees, sorted, replaced atomically.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from systraq.daily.context import DailyContext, capped, printable
from systraq.daily.report import Section
from systraq.fs.atomic import write_atomic

ALGORITHMS = {32: "md5", 40: "sha1", 56: "sha224", 64: "sha256", 96: "sha384", 128: "sha512"}
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_HEX = frozenset(b"0123456789abcdefABCDEF")


@dataclass
class SumLine:
    number: int
    algorithm: str
    digest: str
    name: bytes


@dataclass
class Verification:
    sources: list[Path] = field(default_factory=list)
    checked: int = 0
    failed: list[bytes] = field(default_factory=list)  # content differs
    unreadable: list[bytes] = field(default_factory=list)  # missing, not a file, no access
    malformed: list[str] = field(default_factory=list)  # FILE:LINE
    errors: list[str] = field(default_factory=list)  # a sums file that cannot be read

    @property
    def problems(self) -> int:
        return len(self.failed) + len(self.unreadable)

    def lines(self) -> list[str]:
        """What ``sha256sum -c --quiet`` prints, and its warnings."""
        out = list(self.errors)
        out += [f"{show(name)}: FAILED" for name in self.failed]
        out += [f"{show(name)}: FAILED open or read" for name in self.unreadable]
        if self.failed:
            out.append(f"WARNING: {len(self.failed)} computed checksum"
                       f"{'s' if len(self.failed) != 1 else ''} did NOT match")
        if self.unreadable:
            out.append(f"WARNING: {len(self.unreadable)} listed file"
                       f"{'s' if len(self.unreadable) != 1 else ''} could not be read")
        if self.malformed:
            out.append(f"WARNING: {len(self.malformed)} line"
                       f"{'s are' if len(self.malformed) != 1 else ' is'} improperly "
                       f"formatted ({', '.join(self.malformed[:3])})")
        return out


def show(name: bytes) -> str:
    return printable(os.fsdecode(name), 300)


def _unescape(name: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(name):
        if name[i:i + 1] == b"\\" and i + 1 < len(name):
            out += {b"n": b"\n", b"r": b"\r", b"\\": b"\\"}.get(name[i + 1:i + 2],
                                                               name[i:i + 2])
            i += 2
        else:
            out += name[i:i + 1]
            i += 1
    return bytes(out)


def _escape(name: bytes) -> tuple[bool, bytes]:
    if not any(c in name for c in b"\\\n\r"):
        return False, name
    return True, name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def parse_line(raw: bytes, number: int) -> SumLine | None:
    """One line of a ``-c`` file; None when it is not one."""
    escaped = raw.startswith(b"\\")
    line = raw[1:] if escaped else raw
    digest, _, rest = line.partition(b" ")
    if len(digest) not in ALGORITHMS or not set(digest) <= _HEX or rest[:1] not in (b" ", b"*"):
        return None
    name = rest[1:]
    if not name:
        return None
    return SumLine(number, ALGORITHMS[len(digest)], digest.decode().lower(),
                   _unescape(name) if escaped else name)


def hash_file(path: bytes | Path, algorithm: str) -> str:
    """The digest of a regular file (never through a final symlink, never blocking)."""
    fd = os.open(path, _FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(0, "not a regular file")
        with os.fdopen(os.dup(fd), "rb") as stream:
            return hashlib.file_digest(stream, algorithm).hexdigest()
    finally:
        os.close(fd)


def verify(sources: Iterable[Path], root: Path = Path("/")) -> Verification:
    """Check every line of the given ``-c`` files; names are taken below ``root``."""
    result = Verification()
    for source in sources:
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as err:
            result.errors.append(f"{source}: {err.strerror}")
            continue
        result.sources.append(source)
        for number, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip() or raw.startswith(b"#"):
                continue
            line = parse_line(raw.rstrip(b"\r"), number)
            if line is None:
                result.malformed.append(f"{source.name}:{number}")
                continue
            result.checked += 1
            target = os.fsencode(root) + line.name if line.name.startswith(b"/") \
                else line.name
            try:
                if hash_file(target, line.algorithm) != line.digest:
                    result.failed.append(line.name)
            except OSError:
                result.unreadable.append(line.name)
    return result


# --- update ---------------------------------------------------------------------------------

@dataclass
class UpdateResult:
    path: Path
    files: int
    skipped: list[str] = field(default_factory=list)  # could not be read: why


def _walk(top: bytes, skipped: list[str]) -> Iterable[bytes]:
    def on_error(err: OSError) -> None:
        skipped.append(f"{os.fsdecode(err.filename or top)}: {err.strerror}")

    for directory, _, names in os.walk(top, onerror=on_error):
        for name in names:
            yield os.path.join(directory, name)


def update(target: Path, directories: Iterable[str | Path]) -> UpdateResult:
    """Write ``target`` anew: the sha256 of every regular file below the directories."""
    skipped: list[str] = []
    lines: list[tuple[bytes, bytes]] = []
    for top in directories:
        top_bytes = os.path.abspath(os.fsencode(top))
        if not os.path.isdir(top_bytes):
            continue
        for path in _walk(top_bytes, skipped):
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                digest = hash_file(path, "sha256")
            except OSError as err:
                skipped.append(f"{os.fsdecode(path)}: {err.strerror or err}")
                continue
            escaped, name = _escape(path)
            lines.append((path, (b"\\" if escaped else b"") + digest.encode() + b"  " + name))
    lines.sort()
    data = b"".join(line + b"\n" for _, line in dict(lines).items())
    write_atomic(target, data, mode=0o644)
    return UpdateResult(target, len(dict(lines)), skipped)


# --- the part --------------------------------------------------------------------------------

def collect(ctx: DailyContext) -> Section:
    section = Section("sums", "Local checksums")
    sources = [ctx.layout.sums, ctx.layout.legacy_sums]
    if not any(p.exists() for p in sources):
        section.unavailable(f"{ctx.layout.sums}: not present (create it with 'systraq sums "
                            "--update')")
        return section
    result = verify(sources, ctx.root)
    lines = result.lines()
    names = ", ".join(p.name for p in result.sources)
    section.add("", [f"{result.checked} files checked ({names})"]
                + capped(lines, ctx.settings.daily.max_lines))
    if result.problems or result.errors:
        count = result.problems or len(result.errors)
        section.attend(f"{count} local checksum{'s' if count != 1 else ''} FAILED"
                       if result.problems else f"local checksums not checked: {lines[0]}")
    return section
