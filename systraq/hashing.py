"""Content hashes: sha256 by default (matches sha256sum), xxh3-128 as the fast choice."""

from __future__ import annotations

import hashlib
import os
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


def new_hasher(algorithm: str) -> Callable[[], Hasher]:
    try:
        return ALGORITHMS[algorithm]
    except KeyError:
        raise SystraqError(f"unknown hash algorithm {algorithm!r} "
                           f"(known: {', '.join(ALGORITHMS)})") from None


def hash_fd(fd: int, factory: Callable[[], Hasher]) -> str:
    """Hash everything readable from fd (from its current offset) and return the hex digest."""
    hasher = factory()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while True:
        count = os.readv(fd, [buffer])
        if not count:
            break
        hasher.update(view[:count])
    return hasher.hexdigest()
