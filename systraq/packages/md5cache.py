"""The md5 of each package file, reused while its whole stat record stays the same.

``STATE/root/packages.cache`` holds, per checked path, the stat record it had when it was
hashed, its md5, when it was hashed and the package that owned it (which also lets a
later diff name the package a since-removed file came from). The snapshot's reuse rule
applies: an md5 is reused only when device, inode, mode, owner, group, links, size, mtime
and ctime are all unchanged, and an entry is stored only if the file had not been written
within ``RACY_MARGIN_NS`` before it was hashed (a same-size rewrite in the same clock tick
leaves every stat field as it was). A rolling re-verification rehashes, on each run, the
oldest entries in proportion to the time since the last run, and every entry older than
``reverify_days``: no md5 is trusted for longer than that. A cache that is unreadable,
corrupt or about another tree counts as empty.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from systraq.fs.atomic import AtomicFile
from systraq.pathcodec import EscapeError, escape, unescape
from systraq.snapshot.hashcache import RACY_MARGIN_NS

log = logging.getLogger("systraq.packages.md5cache")

MAGIC = b"#systraq-packages-cache\t1\n"
NO_MD5 = "-"  # a path checked for existence only (a directory, a symlink)
MAX_CACHE_BYTES = 512 << 20


def stat_key(st: os.stat_result) -> bytes:
    """The full stat record a cached md5 is tied to."""
    return (f"{st.st_dev}:{st.st_ino}:{st.st_mode:o}:{st.st_uid}:{st.st_gid}:{st.st_nlink}:"
            f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}").encode()


def racy(st: os.stat_result, hashed_ns: int) -> bool:
    """Whether the file was written too close to when it was hashed to trust the record."""
    return max(st.st_mtime_ns, st.st_ctime_ns) >= hashed_ns - RACY_MARGIN_NS


@dataclass(frozen=True)
class Cached:
    key: bytes
    md5: str
    checked_s: int
    package: str


def _identity(root: bytes, admindir: bytes) -> bytes:
    return b"#tree\t" + escape(root).encode() + b"\t" + escape(admindir).encode() + b"\n"


@dataclass
class Md5Cache:
    """The entries of the previous run, by path (raw lines, parsed on lookup)."""

    identity: bytes
    written_ns: int = 0
    lines: dict[bytes, bytes] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, root: bytes, admindir: bytes) -> Md5Cache:
        identity = _identity(root, admindir)
        empty = cls(identity)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            log.debug("md5cache: %s: not used: %s", path, err.strerror)
            return empty
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(fd)
            if st.st_size > MAX_CACHE_BYTES or st.st_uid != os.geteuid():
                log.debug("md5cache: %s: too large or not ours: not used", path)
                return empty
            data = handle.read(MAX_CACHE_BYTES + 1)
        body, _, trailer = data.rstrip(b"\n").rpartition(b"\n")
        body += b"\n"
        if not body.startswith(MAGIC) or trailer != \
                b"#end\t" + xxhash.xxh3_128_hexdigest(body).encode():
            log.debug("md5cache: %s: corrupt or truncated: rebuilt", path)
            return empty
        lines = body.split(b"\n")
        if lines[1] + b"\n" != identity or not lines[2].startswith(b"#written\t"):
            log.debug("md5cache: %s: about another tree: not used", path)
            return empty
        try:
            written = int(lines[2][9:])
        except ValueError:
            return empty
        entries = {}
        for line in lines[3:]:
            if line:
                name, _, rest = line.partition(b"\t")
                entries[name] = rest
        return cls(identity, written, entries)

    def get(self, path: bytes) -> Cached | None:
        rest = self.lines.get(escape(path).encode())
        if rest is None:
            return None
        try:
            key, md5, checked, package = rest.split(b"\t")
            return Cached(key, md5.decode(), int(checked), package.decode())
        except ValueError:
            return None

    def lookup(self, field: bytes, key: bytes) -> tuple[str, int] | None:
        """(md5, when it was hashed) of the escaped path ``field`` if its record is ``key``."""
        rest = self.lines.get(field)
        if rest is None or not rest.startswith(key) or rest[len(key): len(key) + 1] != b"\t":
            return None
        try:
            md5, checked, _ = rest[len(key) + 1:].split(b"\t", 2)
            if len(md5) != 32:
                return None
            return md5.decode(), int(checked)
        except ValueError:
            return None

    def owners(self) -> dict[bytes, str]:
        """The package each remembered path belonged to."""
        out = {}
        for name, rest in self.lines.items():
            try:
                out[unescape(name.decode())] = rest.rsplit(b"\t", 1)[1].decode()
            except (EscapeError, IndexError, UnicodeDecodeError):
                continue
        return out


class CacheWriter:
    """Writes the new cache as entries become known; committed only at the end."""

    def __init__(self, path: Path, root: bytes, admindir: bytes, started_ns: int) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.started_ns = started_ns
        self._hasher = xxhash.xxh3_128()
        self._file = AtomicFile(path, mode=0o600).open()
        self._put(MAGIC + _identity(root, admindir) + f"#written\t{started_ns}\n".encode())

    def _put(self, data: bytes) -> None:
        self._hasher.update(data)
        self._file.write(data)

    def add(self, field: bytes, st: os.stat_result, key: bytes, md5: str | None,
            checked_s: int, package: str) -> None:
        """Record a checked path (escaped); an md5 of a racily written file is not kept."""
        if md5 is not None and racy(st, self.started_ns):
            md5 = None
        self._put(b"%s\t%s\t%s\t%d\t%s\n" % (field, key, (md5 or NO_MD5).encode(),
                                              checked_s, package.encode()))

    def commit(self) -> None:
        self._file.write(b"#end\t" + self._hasher.hexdigest().encode() + b"\n")
        self._file.commit()

    def discard(self) -> None:
        self._file.discard()


def due_for_rehash(hits: list[tuple[int, int]], now_s: int, last_run_s: int,
                   reverify_days: float) -> set[int]:
    """Which cache hits (checked time, index) to hash again this run.

    Every entry older than ``reverify_days``, and the oldest others in proportion to the
    time since the last run, so the whole tree is rehashed over that period in slices.
    """
    period = reverify_days * 86400
    if period <= 0:
        return {index for _, index in hits}
    due = {index for checked, index in hits if now_s - checked >= period}
    share = min(1.0, max(0, now_s - last_run_s) / period)
    budget = round(len(hits) * share)
    for _, index in sorted(hits)[:budget]:
        due.add(index)
    return due


def now_s() -> int:
    return int(time.time())
