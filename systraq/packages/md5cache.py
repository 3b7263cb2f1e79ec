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

import heapq
import logging
import os
import stat
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, TypeVar

import xxhash

from systraq.fs.atomic import AtomicFile
from systraq.pathcodec import EscapeError, escape, unescape
from systraq.snapshot.hashcache import RACY_MARGIN_NS

log = logging.getLogger("systraq.packages.md5cache")

MAGIC = b"#systraq-packages-cache\t1\n"
NO_MD5 = "-"  # a path checked for existence only (a directory, a symlink)
MAX_CACHE_BYTES = 512 << 20
T = TypeVar("T")


def stat_key(st: os.stat_result) -> bytes:
    """The full stat record a cached md5 is tied to."""
    return (f"{st.st_dev}:{st.st_ino}:{st.st_mode:o}:{st.st_uid}:{st.st_gid}:{st.st_nlink}:"
            f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}").encode()


def _identity(root: bytes, admindir: bytes) -> bytes:
    return b"#tree\t" + escape(root).encode() + b"\t" + escape(admindir).encode() + b"\n"


@dataclass
class Md5Cache:
    """The md5s of the previous run, by the stat record they were computed for.

    Keyed by the record alone: it holds the device and inode, so no two files share one,
    and a path need not be escaped to be looked up.
    """

    identity: bytes
    written_ns: int = 0
    by_key: dict[bytes, bytes] = field(default_factory=dict)  # key -> b"md5\tchecked"
    body_digest: str = ""  # of the entry lines, to tell whether a rewrite changes them
    path: Path | None = None

    @classmethod
    def load(cls, path: Path, root: bytes, admindir: bytes) -> Md5Cache:
        """The cache at ``path``, read line by line (memory holds the entries, not the
        file); empty when it is absent, not root's, corrupt, truncated or another tree's."""
        identity = _identity(root, admindir)
        empty = cls(identity)
        handle = _open(path)
        if handle is None:
            return empty
        whole, body = xxhash.xxh3_128(), xxhash.xxh3_128()
        by_key: dict[bytes, bytes] = {}
        with handle:
            header = [handle.readline() for _ in range(3)]
            for line in header:
                whole.update(line)
            if header[0] != MAGIC or header[1] != identity or \
                    not header[2].startswith(b"#written\t"):
                log.debug("md5cache: %s: not a cache of this tree: not used", path)
                return empty
            trailer = b""
            for line in handle:
                if line.startswith(b"#end\t"):
                    trailer = line
                    break
                whole.update(line)
                body.update(line)
                parts = line.split(b"\t")
                if len(parts) != 5:
                    trailer = b""
                    break
                if parts[2] != NO_MD5.encode():
                    by_key[parts[1]] = parts[2] + b"\t" + parts[3]
            complete = trailer == b"#end\t" + whole.hexdigest().encode() + b"\n" and \
                not handle.read(1)
        try:
            written = int(header[2][9:])
        except ValueError:
            complete = False
        if not complete:
            log.debug("md5cache: %s: corrupt or truncated: rebuilt", path)
            return empty
        return cls(identity, written, by_key, body.hexdigest(), path)

    def lookup(self, key: bytes) -> tuple[str, int] | None:
        """(md5, when it was hashed) of a file whose stat record is ``key``."""
        value = self.by_key.get(key)
        if value is None:
            return None
        md5, _, checked = value.partition(b"\t")
        try:
            return md5.decode(), int(checked)
        except ValueError:
            return None

    def due(self, now_s: int, reverify_days: float) -> set[bytes]:
        """The records whose md5 is hashed again this run (rolling re-verification)."""
        return due_for_rehash(_CheckedView(self.by_key), now_s,
                              self.written_ns // 1_000_000_000, reverify_days)


def _checked(value: bytes) -> int:
    try:
        return int(value.partition(b"\t")[2])
    except ValueError:
        return 0


def _open(path: Path) -> BinaryIO | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        log.debug("md5cache: %s: not used: %s", path, err.strerror)
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_CACHE_BYTES or \
            st.st_uid != os.geteuid():
        log.debug("md5cache: %s: not a regular file of ours, or too large: not used", path)
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def remembered_owners(path: Path, root: bytes, admindir: bytes) -> dict[bytes, str]:
    """The package each path in the cache belonged to when it was written."""
    handle = _open(path)
    if handle is None:
        return {}
    out = {}
    with handle:
        header = [handle.readline() for _ in range(3)]
        if header[0] != MAGIC or header[1] != _identity(root, admindir):
            return {}
        for line in handle:
            if line.startswith(b"#"):
                break
            name, _, rest = line.rstrip(b"\n").partition(b"\t")
            try:
                out[unescape(name.decode())] = rest.rsplit(b"\t", 1)[1].decode()
            except (EscapeError, IndexError, UnicodeDecodeError):
                continue
    return out


class CacheWriter:
    """Writes the new cache as entries become known; committed only at the end, and only
    when its entries differ from the previous cache's."""

    def __init__(self, path: Path, root: bytes, admindir: bytes, started_ns: int) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.started_ns = started_ns
        self._hasher = xxhash.xxh3_128()
        self._body = xxhash.xxh3_128()
        self._file = AtomicFile(path, mode=0o600).open()
        header = MAGIC + _identity(root, admindir) + f"#written\t{started_ns}\n".encode()
        self._hasher.update(header)
        self._file.write(header)

    def add(self, field: bytes, key: bytes, md5: str | None, checked_s: int, package: str,
            newest_ns: int) -> None:
        """Record a checked path (escaped) with its stat record; ``newest_ns`` is the later
        of its mtime and ctime: an md5 of a file written that close to the run is not kept."""
        if md5 is not None and newest_ns >= self.started_ns - RACY_MARGIN_NS:
            md5 = None
        line = b"%s\t%s\t%s\t%d\t%s\n" % (field, key, (md5 or NO_MD5).encode(), checked_s,
                                          package.encode())
        self._hasher.update(line)
        self._body.update(line)
        self._file.write(line)

    def commit(self, previous: Md5Cache | None = None) -> bool:
        """Replace the cache, unless its entries are those of ``previous`` (then the old
        file stays, with its time: the rolling slice keeps growing until it is hashed)."""
        if previous is not None and previous.body_digest == self._body.hexdigest():
            self._file.discard()
            return False
        self._file.write(b"#end\t" + self._hasher.hexdigest().encode() + b"\n")
        self._file.commit()
        return True

    def discard(self) -> None:
        self._file.discard()


def due_for_rehash(hits: Collection[tuple[int, T]], now_s: int, last_run_s: int,
                   reverify_days: float) -> set[T]:
    """Which cache entries, given as (when hashed, id), to hash again this run.

    Every entry older than ``reverify_days``, and the oldest others in proportion to the
    time since the last run, so the whole tree is rehashed over that period in slices.
    ``hits`` is iterated more than once, never copied whole.
    """
    period = reverify_days * 86400
    total = len(hits)
    share = min(1.0, max(0, now_s - last_run_s) / period) if period > 0 else 1.0
    budget = round(total * share)
    if budget >= total:
        return {ident for _, ident in hits}
    due = {ident for checked, ident in hits if checked <= now_s - period}
    if budget > len(due):  # the oldest entries include every expired one
        due.update(ident for _, ident in heapq.nsmallest(budget, hits, key=itemgetter(0)))
    return due


class _CheckedView:
    """(when hashed, record) of every cached md5, re-iterable without a copy."""

    def __init__(self, by_key: dict[bytes, bytes]) -> None:
        self.by_key = by_key

    def __len__(self) -> int:
        return len(self.by_key)

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return ((_checked(value), key) for key, value in self.by_key.items())


def now_s() -> int:
    return int(time.time())
