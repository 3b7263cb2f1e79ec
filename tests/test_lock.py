"""Locks: a lock file planted in the state directory is refused, never written through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from systraq.config import load_settings
from systraq.errors import SystraqError
from systraq.fs.lock import locked

from .conftest import Workspace, needs_root

PRECIOUS = "precious content, not a pid\n"


def plant(kind: str, lock: Path, victim: Path) -> None:
    if kind == "hard link":
        os.link(victim, lock)
    else:
        lock.symlink_to(victim)


def test_lock_file_with_a_second_name_is_refused_and_left_alone(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text(PRECIOUS)
    lock = tmp_path / "job.lock"
    os.link(victim, lock)
    assert lock.stat().st_nlink == 2
    with pytest.raises(SystraqError) as refused, locked(lock, 0):
        pytest.fail("the lock was taken")
    assert str(refused.value) == f"{lock}: lock file is not a plain file (refusing to use it)"
    assert victim.read_text() == PRECIOUS


@pytest.mark.parametrize("kind", ["hard link", "symlink"])
def test_snapshot_refuses_a_planted_lock_file_in_one_line(ws: Workspace, kind: str) -> None:
    needs_root()
    ws.write_list("root", str(ws.tree))
    assert ws.run("snapshot", "--mode", "root").returncode == 0  # makes its directory
    layout = load_settings(ws.config, ws.state).layout
    lock, snapshot = layout.snapshot_lock("root"), layout.snapshot("root")
    before = snapshot.read_bytes()
    victim = lock.parent / "victim"
    victim.write_text(PRECIOUS)
    lock.unlink()
    plant(kind, lock, victim)
    done = ws.run("snapshot", "--mode", "root")
    expected = "not a plain file" if kind == "hard link" else "a symlink"
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "", f"systraq: {lock}: lock file is {expected} (refusing to use it)\n")
    assert victim.read_text() == PRECIOUS
    assert snapshot.read_bytes() == before
