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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from systraq.errors import StateError
from systraq.listfiles import order_key
from systraq.state import Header, line_key, verify

log = logging.getLogger("systraq.hashcache")

# Timestamps within this much of the previous snapshot's start are not trusted: kernel
# clocks for file times are coarse, and some file systems store whole seconds.
RACY_MARGIN_NS = 2_000_000_000


@dataclass(frozen=True)
class ReusePolicy:
    """What the worker needs to decide on reuse: lines that start with the same record."""

    racy_after_ns: int  # an mtime or ctime at or after this is racy


class PreviousSnapshot:
    """The previous snapshot's entry lines, walked in step with the scan (merge by path)."""

    def __init__(self, path: Path, header: Header) -> None:
        self.path = path
        self.header = header
        self.policy = ReusePolicy(racy_after_ns=header.created_ns - RACY_MARGIN_NS)
        self._lines = self._read_lines()
        self._current: tuple[bytes, bytes] | None = None
        self._advance()

    @classmethod
    def open(cls, path: Path, algorithm: str, full_rehash_hours: float,
             now_ns: int | None = None) -> PreviousSnapshot | None:
        """The previous snapshot if its hashes may be reused, else None (full rehash)."""
        now_ns = now_ns or time.time_ns()
        try:
            header = verify(path)  # the trailer must match before a single line is trusted
        except StateError as err:
            log.debug("hashcache: not reusing %s: %s", path, err)
            return None
        if header.hash != algorithm:
            log.debug("hashcache: previous snapshot used %s, not %s", header.hash, algorithm)
            return None
        if now_ns - header.full_rehash_ns >= full_rehash_hours * 3600e9:
            log.debug("hashcache: last full rehash too old, rehashing everything")
            return None
        return cls(path, header)

    def _read_lines(self) -> Iterator[bytes]:
        with open(self.path, "rb") as lines:
            for line in lines:
                if not line.startswith(b"#"):
                    yield line

    def _advance(self) -> None:
        line = next(self._lines, None)
        self._current = None if line is None else (line_key(line), line)

    def take_through(self, last: bytes) -> dict[str, bytes]:
        """The previous lines up to and including path ``last``, by escaped path."""
        found: dict[str, bytes] = {}
        key = order_key(last)
        while self._current is not None and self._current[0] <= key:
            line = self._current[1]
            found[line[: line.index(b"\t")].decode()] = line
            self._advance()
        return found
