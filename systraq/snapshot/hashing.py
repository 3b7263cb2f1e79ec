"""Content hashes: sha256 by default (matches sha256sum), xxh3-128 as the fast choice."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Callable
from typing import Protocol

import xxhash

from systraq.errors import SystraqError


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


ALGORITHMS: dict[str, Callable[[], Hasher]] = {
    "sha256": hashlib.sha256,
    "xxh3": xxhash.xxh3_128,
    "blake2b": hashlib.blake2b,
    "sha512": hashlib.sha512,
    "md5": lambda: hashlib.md5(usedforsecurity=False),
}

CHUNK = 1 << 20
# Files at least this large are checked for holes: a hole is hashed as the zeros it reads as,
# without asking the kernel to produce them (a sparse 4 GiB file hashes ~3x faster).
SPARSE_MIN = 16 << 20
_ZEROS = memoryview(bytes(CHUNK))


_local = threading.local()


def _buffer() -> tuple[bytearray, memoryview]:
    # One read buffer per thread: allocating (and zeroing) 1 MiB per file costs more than
    # hashing a small file.
    try:
        return _local.buffer
    except AttributeError:
        buffer = bytearray(CHUNK)
        _local.buffer = (buffer, memoryview(buffer))
        return _local.buffer


def new_hasher(algorithm: str) -> Callable[[], Hasher]:
    try:
        return ALGORITHMS[algorithm]
    except KeyError:
        raise SystraqError(f"unknown hash algorithm {algorithm!r} "
                           f"(known: {', '.join(ALGORITHMS)})") from None


def hash_fd(fd: int, factory: Callable[[], Hasher], size: int) -> str:
    """Hash the file freshly opened at fd, ``size`` bytes long as fstat saw it; hex digest.

    Reads stop at ``size``: a file that grew meanwhile is caught by the caller's fstat
    after hashing, which sees another size.
    """
    hasher = factory()
    buffer, view = _buffer()
    if size >= SPARSE_MIN:
        if _hash_sparse(fd, hasher, size, buffer, view):
            return hasher.hexdigest()
        hasher = factory()  # the file system cannot tell holes: read it all
        os.lseek(fd, 0, os.SEEK_SET)
    done = 0
    while done < size:
        count = os.readv(fd, [buffer])
        if not count:
            break
        hasher.update(view[:count])
        done += count
    return hasher.hexdigest()


def _hash_sparse(fd: int, hasher: Hasher, size: int, buffer: bytearray,
                 view: memoryview) -> bool:
    """Hash data extents and holes up to ``size``; False if the file system cannot tell."""
    position = 0
    while position < size:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # only a hole left
                data = size
            elif err.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                return False
            else:
                raise
        data = min(data, size)
        while position < data:
            step = min(CHUNK, data - position)
            hasher.update(_ZEROS[:step])
            position += step
        if position >= size:
            break
        hole = min(os.lseek(fd, position, os.SEEK_HOLE), size)
        os.lseek(fd, position, os.SEEK_SET)
        while position < hole:
            count = os.readv(fd, [view[: min(CHUNK, hole - position)]])
            if not count:  # shrank meanwhile: the caller's fstat check marks it raced
                return True
            hasher.update(view[:count])
            position += count
    return True
