"""Hashing: values equal to sha256sum's for ordinary files; sparse files cost their data only.

A file with few holes hashes as the bytes it reads as. One with more holes than
``HOLES_MAX`` is hashed by its data extents (the ``sparse:`` value, defined in
systraq-state(5)); the tests build files whose extents are known (whole blocks of data
written far apart) and compute that value from the definition, without SEEK_DATA.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from systraq.snapshot import hashing

TIB = 1 << 40


def digest_of(path: Path, limit: int = hashing.DEFAULT_LIMIT) -> hashing.Digest:
    fd = os.open(path, os.O_RDONLY)
    try:
        return hashing.hash_fd(fd, hashlib.sha256, os.fstat(fd), limit)
    finally:
        os.close(fd)


def block_size(path: Path) -> int:
    return os.statvfs(path).f_bsize


def sparse_file(path: Path, size: int, extents: dict[int, bytes]) -> None:
    """A file of apparent ``size`` holding data only at the given block-aligned offsets."""
    with open(path, "wb") as handle:
        for offset, data in extents.items():
            handle.seek(offset)
            handle.write(data)
        handle.truncate(size)


def sparse_value(size: int, extents: dict[int, bytes]) -> str:
    """The documented ``sparse:`` value, computed from the definition."""
    hasher = hashlib.sha256(b"systraq-sparse-1 %d\n" % size)
    for offset in sorted(extents):
        hasher.update(b"%d %d\n" % (offset, len(extents[offset])))
        hasher.update(extents[offset])
    return "sparse:" + hasher.hexdigest()


@given(writes=st.lists(st.tuples(st.integers(0, 3 << 20), st.binary(min_size=1, max_size=5000)),
                       max_size=6),
       size=st.integers(0, 20 << 20))
@settings(max_examples=40, deadline=None)
def test_files_with_few_holes_hash_as_sha256sum_does(tmp_path_factory, writes, size) -> None:
    path = tmp_path_factory.mktemp("holes") / "f"
    with open(path, "wb") as handle:
        for offset, data in writes:
            handle.seek(offset)
            handle.write(data)
        handle.truncate(size)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest_of(path) == hashing.Digest(expected, True, digest_of(path).read)


def test_sparse_file_of_many_tebibytes_is_hashed_by_its_data(tmp_path: Path) -> None:
    block = block_size(tmp_path)
    extents = {5 * TIB: b"a" * block, 10 * TIB: os.urandom(2 * block)}
    path = tmp_path / "huge"
    sparse_file(path, 15 * TIB, extents)
    digest = digest_of(path)
    assert digest.value == sparse_value(15 * TIB, extents)
    assert digest.complete and digest.read == 3 * block


def test_any_change_to_a_sparse_files_data_place_or_size_changes_its_value(tmp_path: Path
                                                                           ) -> None:
    block = block_size(tmp_path)
    path = tmp_path / "huge"
    sparse_file(path, 2 * TIB, {TIB: b"x" * block})
    before = digest_of(path).value
    sparse_file(path, 2 * TIB, {TIB: b"x" * (block - 1) + b"y"})
    changed_data = digest_of(path).value
    path.unlink()
    sparse_file(path, 2 * TIB, {TIB + block * 2: b"x" * block})
    moved = digest_of(path).value
    path.unlink()
    sparse_file(path, 2 * TIB + 1, {TIB: b"x" * block})
    grown = digest_of(path).value
    assert len({before, changed_data, moved, grown}) == 4


def test_sparse_file_with_no_data_at_all_has_a_value(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    sparse_file(path, 3 * TIB, {})
    assert digest_of(path) == hashing.Digest(sparse_value(3 * TIB, {}), True, 0)


def test_data_past_the_cap_is_not_read_and_the_value_says_how_much_was(tmp_path: Path
                                                                       ) -> None:
    data = os.urandom(3 << 20)
    path = tmp_path / "big"
    path.write_bytes(data)
    digest = digest_of(path, limit=1 << 20)
    assert digest == hashing.Digest(
        f"first={1 << 20}:{hashlib.sha256(data[:1 << 20]).hexdigest()}", False, 1 << 20)
    assert digest_of(path, limit=0).value == hashlib.sha256(data).hexdigest()
    assert digest_of(path, limit=len(data)).complete


def test_sparse_file_over_the_cap_is_cut_inside_its_data(tmp_path: Path) -> None:
    block = block_size(tmp_path)
    first, second = os.urandom(2 * block), os.urandom(block)
    path = tmp_path / "huge"
    sparse_file(path, 4 * TIB, {TIB: first, 2 * TIB: second})
    digest = digest_of(path, limit=block)
    expected = hashlib.sha256(b"systraq-sparse-1 %d\n%d %d\n" % (4 * TIB, TIB, block)
                              + first[:block]).hexdigest()
    assert digest == hashing.Digest(f"sparse:first={block}:{expected}", False, block)
    # A cap that takes all the data hashes the whole file.
    assert digest_of(path, limit=3 * block) == hashing.Digest(
        sparse_value(4 * TIB, {TIB: first, 2 * TIB: second}), True, 3 * block)
