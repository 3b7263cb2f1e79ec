"""Reusing the previous snapshot's hashes without ever hiding a change.

A regular file keeps its previous hash only when its whole stat record (type, perms,
owner, size, mtime, ctime, device, inode, link count) is unchanged and it is not *racy*:
its mtime and ctime are safely older than the previous snapshot's start. A same-size
rewrite in the same tick as the previous read would otherwise leave stat data unchanged
while the content differs (git's racy-entry rule); ctime matters most, since ``utime()``
can fake mtime but not ctime. A previous file that fails its checksum is not used.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from systraq.errors import StateError
from systraq.patterns import order_key
from systraq.snapshot.state import Header, line_key, open_state, trusted_line_key, verify

log = logging.getLogger("systraq.snapshot.hashcache")

# Below this many bytes, the search for a path reads lines in order.
LINEAR_SCAN = 65536
# Timestamps within this much of the previous snapshot's start are not trusted: kernel
# clocks for file times are coarse, and some file systems store whole seconds.
RACY_MARGIN_NS = 2_000_000_000


@dataclass(frozen=True)
class ReusePolicy:
    """What the worker needs to decide on reuse: lines that start with the same record."""

    racy_after_ns: int  # an mtime or ctime at or after this is racy


class PreviousSnapshot:
    """The previous snapshot's entry lines, walked in step with the scan (merge by path)."""

    def __init__(self, path: Path, header: Header, entries: int = 0, offset: int = 0) -> None:
        self.path = path
        self.header = header
        self.entries = entries
        self.policy = ReusePolicy(racy_after_ns=header.created_ns - RACY_MARGIN_NS)
        self._file = open_state(path)
        self._file.seek(offset)
        self._current: tuple[bytes, bytes, bytes] | None = None  # key, path field, line
        self._advance()

    @classmethod
    def open(cls, path: Path, algorithm: str, full_rehash_hours: float,
             now_ns: int | None = None) -> PreviousSnapshot | None:
        """The previous snapshot if its hashes may be reused, else None (full rehash)."""
        now_ns = now_ns or time.time_ns()
        try:
            # The trailer must match before a single line is trusted.
            header, entries = verify(path)
        except StateError as err:
            log.debug("hashcache: not reusing %s: %s", path, err)
            return None
        if header.hash != algorithm:
            log.debug("hashcache: previous snapshot used %s, not %s", header.hash, algorithm)
            return None
        if now_ns - header.full_rehash_ns >= full_rehash_hours * 3600e9:
            log.debug("hashcache: last full rehash too old, rehashing everything")
            return None
        return cls(path, header, entries)

    @classmethod
    def at(cls, path: Path, header: Header, key: bytes) -> PreviousSnapshot:
        """The same (already verified) snapshot, from its first line at or after ``key``."""
        with open_state(path) as handle:
            offset = _first_line_at_or_after(handle, key)
        return cls(path, header, offset=offset)

    def close(self) -> None:
        self._file.close()

    def _advance(self) -> None:
        line = self._file.readline()
        while line.startswith(b"#"):  # the header; the trailer ends the entries
            line = b"" if line.startswith(b"#end\t") else self._file.readline()
        if not line:
            self._current = None
            return
        key, field = trusted_line_key(line)
        self._current = (key, field, line)

    def take_through(self, last: bytes) -> dict[bytes, bytes]:
        """The previous lines up to and including path ``last``, by escaped path."""
        found: dict[bytes, bytes] = {}
        key = order_key(last)
        while self._current is not None and self._current[0] <= key:
            found[self._current[1]] = self._current[2]
            self._advance()
        return found


def _at_or_after(line: bytes, key: bytes) -> bool:
    """Whether a line of a state file comes at or after ``key`` (header before, trailer after)."""
    if not line or line.startswith(b"#end\t"):
        return True
    if line.startswith(b"#"):
        return False
    return line_key(line) >= key


def _first_line_at_or_after(handle: BinaryIO, key: bytes) -> int:
    """Offset of the first line at or after ``key``: a binary search over the sorted file."""
    low, high = 0, os.fstat(handle.fileno()).st_size
    # low is a line start with every line before it earlier than key; the answer <= high.
    while high - low > LINEAR_SCAN:
        middle = (low + high) // 2
        handle.seek(middle)
        handle.readline()  # to the next line start
        start = handle.tell()
        if start >= high:
            break
        line = handle.readline()
        if _at_or_after(line, key):
            high = start
        else:
            low = start + len(line)
    handle.seek(low)
    while True:
        start = handle.tell()
        line = handle.readline()
        if _at_or_after(line, key):
            return start
