"""Hashing: holes in sparse files hash exactly as the zeros they read as."""

from __future__ import annotations

import hashlib
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from systraq.snapshot import hashing


@given(writes=st.lists(st.tuples(st.integers(0, 3 << 20), st.binary(min_size=1, max_size=5000)),
                       max_size=6),
       size=st.integers(0, 4 << 20))
@settings(max_examples=40, deadline=None)
def test_sparse_files_hash_as_their_bytes(tmp_path_factory, writes, size) -> None:
    path = tmp_path_factory.mktemp("sparse") / "f"
    with open(path, "wb") as handle:
        for offset, data in writes:
            handle.seek(offset)
            handle.write(data)
        handle.truncate(size)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    fd = os.open(path, os.O_RDONLY)
    try:
        hasher = hashlib.sha256()
        buffer = bytearray(hashing.CHUNK)
        assert hashing._hash_sparse(fd, hasher, size, buffer, memoryview(buffer))
        assert hasher.hexdigest() == expected
        os.lseek(fd, 0, os.SEEK_SET)
        assert hashing.hash_fd(fd, hashlib.sha256, size) == expected
    finally:
        os.close(fd)
