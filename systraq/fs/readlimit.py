"""Reading a file's content without ever reading past a size limit.

A listed file's bytes belong to whoever can write it: its apparent size (a sparse file of
terabytes costs no disk) must not decide how long a run reads. Every reader of tracked
content goes through ``read_limited``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

CHUNK = 1 << 20


@dataclass(frozen=True)
class LimitedRead:
    """What ``read_limited`` read: the content, or only a hash of its first bytes."""

    data: bytes | None  # the whole content; None when the file is over the limit
    sha256: str  # of the whole content, or of its first ``read`` bytes when data is None
    read: int  # bytes read (at most the limit)

    @property
    def complete(self) -> bool:
        return self.data is not None


def read_limited(fd: int, size: int, limit: int) -> LimitedRead:
    """Read the file open at ``fd`` (``size`` bytes as fstat saw it), ``limit`` bytes at most.

    A file within the limit comes back whole with its sha256; a larger one only has its
    first ``limit`` bytes hashed. A file that grew meanwhile is still cut at the limit: the
    caller's fstat after reading sees the new size.
    """
    hasher = hashlib.sha256()
    whole = size <= limit
    chunks: list[bytes] = []
    done = 0
    while done < limit:
        chunk = os.read(fd, min(CHUNK, limit - done))
        if not chunk:
            break
        hasher.update(chunk)
        if whole:
            chunks.append(chunk)
        done += len(chunk)
    return LimitedRead(b"".join(chunks) if whole else None, hasher.hexdigest(), done)
