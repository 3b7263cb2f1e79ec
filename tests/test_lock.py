"""Locks: a lock file planted in the state directory is refused, never written through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from systraq.config import load_settings
from systraq.errors import SystraqError
from systraq.fs.lock import locked

from .conftest import Workspace

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
    victim = ws.root / "victim"
    victim.write_text(PRECIOUS)
    ws.write_list("pub", str(ws.tree))
    lock = load_settings(ws.config, ws.state).layout.snapshot_lock("pub")
    plant(kind, lock, victim)
    done = ws.run("snapshot")
    expected = ("lock file is not a plain file (refusing to use it)" if kind == "hard link"
                else "cannot open lock file: Too many levels of symbolic links")
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"systraq: {lock}: {expected}\n")
    assert victim.read_text() == PRECIOUS
    assert not (ws.state / "snapshot_pub.stat").exists()
