"""Reusing the previous snapshot's hashes without ever hiding a change for long.

A regular file keeps its previous hash only when its whole stat record (type, perms,
owner, size, mtime, ctime, device, inode, link count) is unchanged and it is not *racy*:
its mtime and ctime are safely older than the previous snapshot's start. A same-size
rewrite in the same tick as the previous read would otherwise leave stat data unchanged
while the content differs (git's racy-entry rule); ctime matters most, since ``utime()``
can fake mtime but not ctime. A previous file that fails its checksum is not used.

Some writes move neither (a write through a shared mapping to a page already dirty), so
every file is also read again once per ``snapshot.full_rehash_hours``, a slice at a time:
each file has a fixed *phase* in that interval (from a hash of its path), and a snapshot
rehashes the files whose phase passed since the previous snapshot started. Consecutive
snapshots' windows tile time, so each file is rehashed once per interval, files verified
longest ago first, and an hourly run reads about 1/``full_rehash_hours`` of the files. The
choice depends on the path and the two snapshots' times only: however the scan spreads the
work, it makes the same choice.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import xxhash

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
class RehashWindow:
    """The files due for the rolling rehash: those whose phase lies in (low, high] (mod 2^64)."""

    low: int
    high: int
    everything: bool = False

    @classmethod
    def between(cls, start_ns: int, end_ns: int, interval_ns: int) -> RehashWindow:
        """Files whose phase point passed in (start, end], with phases spread over the interval."""
        if interval_ns <= 0 or end_ns - start_ns >= interval_ns:
            return cls(0, 0, everything=True)
        if end_ns <= start_ns:  # the clock went back: nothing is due (the next window
            return cls(0, 0)    # starts here, so nothing is skipped either)
        return cls(_phase(start_ns, interval_ns), _phase(end_ns, interval_ns))

    def due(self, path_field: bytes) -> bool:
        """Whether the file at this escaped path is to be read again now."""
        if self.everything:
            return True
        place = xxhash.xxh3_64_intdigest(path_field)
        if self.low <= self.high:
            return self.low < place <= self.high
        return place > self.low or place <= self.high


def _phase(ns: int, interval_ns: int) -> int:
    """Where a moment falls in the interval, scaled to the 64-bit range of path hashes."""
    return ((ns % interval_ns) << 64) // interval_ns


@dataclass(frozen=True)
class ReusePolicy:
    """What the worker needs to decide on reuse: lines that start with the same record."""

    racy_after_ns: int  # an mtime or ctime at or after this is racy
    rehash: RehashWindow = RehashWindow(0, 0)  # files read again even when unchanged
    upgrade: bool = False  # previous lines lack columns of this format (state.kept_line)
    reuse: bool = True  # False: lines are there for growing files' chains, not for reuse


class PreviousSnapshot:
    """The previous snapshot's entry lines, walked in step with the scan (merge by path)."""

    def __init__(self, path: Path, header: Header, policy: ReusePolicy, entries: int = 0,
                 offset: int = 0) -> None:
        self.path = path
        self.header = header
        self.entries = entries
        self.policy = policy
        self._file = open_state(path)
        self._file.seek(offset)
        self._current: tuple[bytes, bytes, bytes] | None = None  # key, path field, line
        self._advance()

    @classmethod
    def open(cls, path: Path, algorithm: str, full_rehash_hours: float,
             now_ns: int | None = None, *, reuse: bool = True, chains: bool = False,
             on_corrupt: Callable[[StateError], None] | None = None
             ) -> PreviousSnapshot | None:
        """The previous snapshot if its hashes may be reused (None: hash everything).

        ``now_ns`` is the new snapshot's start: files whose phase passed since the previous
        one started are read again. With ``chains`` (growing files are listed), a snapshot
        whose hashes may not be reused (``reuse`` off, or every file due) is still opened,
        for those files' previous lengths and hashes (``ReusePolicy.reuse`` off).
        ``on_corrupt`` hears of a previous snapshot that is there but fails its checks.
        """
        now_ns = now_ns or time.time_ns()
        try:
            # The trailer must match before a single line is trusted.
            header, entries = verify(path)
        except StateError as err:
            log.debug("hashcache: not reusing %s: %s", path, err)
            if on_corrupt is not None and os.path.lexists(path):
                on_corrupt(err)
            return None
        if header.hash != algorithm:
            log.debug("hashcache: previous snapshot used %s, not %s", header.hash, algorithm)
            return None
        interval_ns = int(full_rehash_hours * 3600e9)
        # Each file was read since its last phase point before the previous snapshot's
        # start, unless the previous snapshot used another interval (phases differ) or
        # was of the format that rehashed everything at once, at its #full_rehash time.
        if header.rehash_interval_ns == interval_ns:
            since = header.created_ns
        elif header.full_rehash_ns:
            since = header.full_rehash_ns
        else:
            since = now_ns - interval_ns
        window = RehashWindow.between(since, now_ns, interval_ns)
        if window.everything or not reuse:
            log.debug("hashcache: every file is due for its rehash")
            if not chains:
                return None
            return cls(path, header, ReusePolicy(racy_after_ns=0, reuse=False), entries)
        policy = ReusePolicy(racy_after_ns=header.created_ns - RACY_MARGIN_NS, rehash=window,
                             upgrade=not header.records_attributes)
        return cls(path, header, policy, entries)

    @classmethod
    def at(cls, path: Path, header: Header, policy: ReusePolicy, key: bytes
           ) -> PreviousSnapshot:
        """The same (already verified) snapshot, from its first line at or after ``key``."""
        with open_state(path) as handle:
            offset = _first_line_at_or_after(handle, key)
        return cls(path, header, policy, offset=offset)

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
