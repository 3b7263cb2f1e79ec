"""Content hashes: sha256 by default (matches sha256sum), xxh3-128 as the fast choice.

The time spent on a file follows the data it holds, never its apparent size, which its
owner chooses freely (a sparse file of terabytes costs no disk). What a recorded value
means (the ``hash`` column of systraq-state(5)):

``HEX``
    the whole content, as ``sha256sum`` (or ``xxhsum -H2``, ...) prints it. Holes of a file
    with at most ``HOLES_MAX`` bytes of them are hashed as the zeros they read as.
``sparse:HEX``
    a file with more holes than that: the hash of the text ``systraq-sparse-1 SIZE\n``
    (SIZE the apparent size), then, for each data extent in order (``SEEK_DATA`` and
    ``SEEK_HOLE``), ``OFFSET LENGTH\n`` followed by those LENGTH bytes. Holes cost
    nothing; any change to the data, its place or the size changes the value.
``first=N:HEX``, ``sparse:first=N:HEX``
    only the first N bytes of data were hashed (the per-file cap, ``snapshot.hash_limit``):
    the hash of those N bytes, or of the sparse text up to N bytes of data. The entry's
    status is then ``partial``.

A file under the ``growing`` rule is also hashed up to the length it had before (``prefix``),
in the same pass: its value is then marked (``systraq.snapshot.growing``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import xxhash

from systraq.errors import SystraqError


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...


ALGORITHMS: dict[str, Callable[[], Hasher]] = {
    "sha256": hashlib.sha256,
    "xxh3": xxhash.xxh3_128,
    "blake2b": hashlib.blake2b,
    "sha512": hashlib.sha512,
    "md5": lambda: hashlib.md5(usedforsecurity=False),
}

CHUNK = 1 << 20
# Files at least this large with holes have the holes hashed as the zeros they read as,
# without asking the kernel to produce them (a sparse 4 GiB file hashes ~3x faster).
SPARSE_MIN = 16 << 20
# A file with more bytes of holes than this is hashed by its data extents ("sparse:").
HOLES_MAX = 64 << 20
# Bytes of one file's data hashed at most by default (snapshot.hash_limit).
DEFAULT_LIMIT = 16 << 30
SPARSE = "sparse:"
SPARSE_HEADER = b"systraq-sparse-1 %d\n"
_ZEROS = memoryview(bytes(CHUNK))


@dataclass(frozen=True, slots=True)
class Digest:
    value: str  # what the state's hash column records
    complete: bool  # False: the cap stopped it (status partial)
    read: int  # bytes of data read
    prefix: str | None = None  # the hash of the first ``prefix`` bytes, when asked and read


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


def hash_fd(fd: int, factory: Callable[[], Hasher], st: os.stat_result,
            limit: int = DEFAULT_LIMIT, prefix: int | None = None) -> Digest:
    """Hash the file freshly opened at fd (``st`` its fstat), ``limit`` bytes of data at
    most (0: no cap); with ``prefix``, the hash of that many first bytes too, when the
    whole file is read plainly (not sparse, not over the cap).

    Reads stop at the size fstat saw: a file that grew or shrank meanwhile is caught by the
    caller's fstat after hashing.
    """
    size = st.st_size
    holes = size - st.st_blocks * 512
    plain_prefix = prefix is not None and 0 <= prefix <= size and holes <= HOLES_MAX \
        and (not limit or size <= limit)
    if plain_prefix:
        return _hash_with_prefix(fd, factory(), size, prefix or 0)
    if holes > HOLES_MAX:
        digest = _hash_extents(fd, factory, size, limit)
        if digest is not None:
            return digest
        os.lseek(fd, 0, os.SEEK_SET)  # the file system cannot tell holes: read it all
    cap = min(size, limit) if limit else size
    hasher = factory()
    buffer, view = _buffer()
    if cap >= SPARSE_MIN and holes > 0:
        if _hash_sparse(fd, hasher, cap, buffer, view):
            return _digest(hasher, "", cap, cap < size)
        hasher = factory()
        os.lseek(fd, 0, os.SEEK_SET)
    done = _read_through(fd, hasher, view, cap)
    return _digest(hasher, "", done, cap < size)


def _read_through(fd: int, hasher: Hasher, view: memoryview, size: int) -> int:
    """Feed ``size`` bytes from the file's offset to the hasher; the bytes read."""
    done = 0
    while done < size:
        count = os.readv(fd, [view[: min(CHUNK, size - done)]])
        if not count:
            break
        hasher.update(view[:count])
        done += count
    return done


def _hash_with_prefix(fd: int, hasher: Hasher, size: int, prefix: int) -> Digest:
    """The whole content's hash and, in the same pass, that of its first ``prefix`` bytes."""
    _, view = _buffer()
    done = 0
    prefix_value = hasher.hexdigest() if prefix == 0 else None
    while done < size:
        want = min(CHUNK, size - done)
        if prefix_value is None:
            want = min(want, prefix - done)
        count = os.readv(fd, [view[:want]])
        if not count:
            break
        hasher.update(view[:count])
        done += count
        if prefix_value is None and done == prefix:
            prefix_value = hasher.copy().hexdigest()
    return Digest(hasher.hexdigest(), True, done, prefix_value)


def plain_digest(fd: int, factory: Callable[[], Hasher], size: int) -> str:
    """The hex digest of the file's bytes as they read, ``size`` of them (what md5sum or
    sha256sum print: package checksums are of that), holes hashed as zeros unread."""
    hasher = factory()
    buffer, view = _buffer()
    if size >= SPARSE_MIN and _hash_sparse(fd, hasher, size, buffer, view):
        return hasher.hexdigest()
    hasher = factory()
    os.lseek(fd, 0, os.SEEK_SET)
    _read_through(fd, hasher, view, size)
    return hasher.hexdigest()


def _digest(hasher: Hasher, method: str, read: int, cut: bool) -> Digest:
    if cut:
        return Digest(f"{method}first={read}:{hasher.hexdigest()}", False, read)
    return Digest(method + hasher.hexdigest(), True, read)


def _hash_extents(fd: int, factory: Callable[[], Hasher], size: int, limit: int
                  ) -> Digest | None:
    """The ``sparse:`` value: data extents, their places and the size; None if the file
    system cannot tell holes."""
    hasher = factory()
    hasher.update(SPARSE_HEADER % size)
    _, view = _buffer()
    position = done = 0
    budget = limit or size
    while position < size and done < budget:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # only a hole left
                break
            if err.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                return None
            raise
        if data >= size:
            break
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        length = min(hole - data, budget - done)
        hasher.update(b"%d %d\n" % (data, length))
        os.lseek(fd, data, os.SEEK_SET)
        position, end = data, data + length
        while position < end:
            count = os.readv(fd, [view[: min(CHUNK, end - position)]])
            if not count:  # shrank meanwhile: the caller's fstat check marks it raced
                return _digest(hasher, SPARSE, done, False)
            hasher.update(view[:count])
            position += count
            done += count
    # Cut by the cap only when data was left unread.
    cut = done >= budget and _data_after(fd, position, size)
    return _digest(hasher, SPARSE, done, cut)


def _data_after(fd: int, position: int, size: int) -> bool:
    if position >= size:
        return False
    try:
        return os.lseek(fd, position, os.SEEK_DATA) < size
    except OSError:
        return False


def _hash_sparse(fd: int, hasher: Hasher, size: int, buffer: bytearray,
                 view: memoryview) -> bool:
    """Hash data extents and holes (as zeros) up to ``size``; False if the file system
    cannot tell."""
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
