"""filetraq never reads a tracked file past filetraq.max_size, whatever its apparent size.

``read_limited`` is the one reader of tracked content (the job and the backup store both use
it). A pipe shows what it read: the bytes it left are still in the pipe. The filetraq runs
go through the CLI as root and as ``nobody`` (setpriv); their timeouts only keep a
regression from hanging the suite (reading 15 TiB of holes takes hours).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from systraq.fs.readlimit import read_limited

from .conftest import Workspace, needs_root
from .filetraq_support import stored, write_list

TIB = 1 << 40
MIB = 1 << 20


def test_read_limited_stops_at_the_limit_and_leaves_the_rest_unread() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"a" * 100)
        got = read_limited(read_end, size=10 * TIB, limit=10)
        assert (got.data, got.read) == (None, 10)
        assert got.sha256 == hashlib.sha256(b"a" * 10).hexdigest()
        assert os.read(read_end, 1000) == b"a" * 90
    finally:
        os.close(read_end)
        os.close(write_end)


def test_read_limited_returns_a_file_within_the_limit_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"content\n")
    fd = os.open(path, os.O_RDONLY)
    try:
        got = read_limited(fd, size=8, limit=8)
    finally:
        os.close(fd)
    assert got.complete and got.data == b"content\n"
    assert got.sha256 == hashlib.sha256(b"content\n").hexdigest()


def sparse_keys(ws: Workspace) -> Path:
    path = ws.tree / "authorized_keys2"
    with open(path, "wb") as handle:
        handle.write(b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 user@host\n")
        handle.seek(9 * TIB)
        handle.write(b"far away\n")
        handle.truncate(15 * TIB)
    path.chmod(0o644)
    return path


def first_mib_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read(MIB)).hexdigest()


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_filetraq_tracks_a_15_tib_sparse_file_by_size_and_first_bytes(ws: Workspace,
                                                                      user: str) -> None:
    if user == "root":
        needs_root()
    as_user = None if user == "root" else user
    keys = sparse_keys(ws)
    write_list(ws, str(keys))
    first = ws.run("filetraq", user=as_user, timeout=300)
    assert first.returncode == 1, first.stderr
    assert first.stdout == (
        f"{keys}: {15 * TIB} bytes, over the {MIB}-byte limit: content tracked by size and "
        f"the hash of its first {MIB} bytes only (sha256 of the first {MIB} bytes "
        f"{first_mib_sha256(keys)}).\n")
    assert not stored(ws, keys).exists()
    assert ws.run("filetraq", user=as_user, timeout=300).stdout == ""
    with open(keys, "r+b") as handle:
        handle.write(b"ssh-rsa")
    changed = ws.run("filetraq", user=as_user, timeout=300)
    assert changed.stdout.splitlines() == [
        f"Large file {keys} changed (tracked by size and the hash of its first bytes only):",
        f"  was {15 * TIB} bytes, sha256 of the first {MIB} bytes "
        f"{first.stdout.rsplit(' ', 1)[1][:-3]}",
        f"  now {15 * TIB} bytes, sha256 of the first {MIB} bytes {first_mib_sha256(keys)}",
    ]
