"""Incremental snapshots: reused hashes never hide a change.

A previous hash is reused only for a file whose whole stat record is unchanged and that is
not racy (mtime and ctime safely older than the previous snapshot's start). To see reuse
at all, tests move the clock an hour ahead when the previous snapshot is taken: every
file then looks old, and only the stat record (ctime above all) can reveal a change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from systraq.config import load_settings
from systraq.snapshot import job as snapshot_module
from systraq.snapshot.state import StateReader, StateWriter, read_state

from .conftest import Workspace

HOUR_NS = 3600 * 1_000_000_000
FORGED = "f" * 64


def settings_for(ws: Workspace, **snapshot):
    base = load_settings(ws.config, ws.state)  # keeps the workspace's accounts
    return dataclasses.replace(base, snapshot=dataclasses.replace(base.snapshot, **snapshot))


def take(ws: Workspace, monkeypatch=None, ahead_ns: int = 0, **kwargs):
    if monkeypatch is not None:
        real = time.time_ns
        monkeypatch.setattr(snapshot_module.time, "time_ns", lambda: real() + ahead_ns)
    try:
        return snapshot_module.take_snapshot(settings_for(ws), "pub", **kwargs)
    finally:
        if monkeypatch is not None:
            monkeypatch.undo()


def hashes(ws: Workspace) -> dict[bytes, str]:
    _, entries = read_state(ws.state / "pub" / "snapshot_pub.stat")
    return {e.path: e.hash for e in entries if e.type == "f"}


def forge(ws: Workspace, path: Path) -> None:
    """Replace one recorded hash, keeping the file valid (as a silent corruption would)."""
    state = ws.state / "pub" / "snapshot_pub.stat"
    reader = StateReader(state)
    entries = list(reader)
    with StateWriter(state, reader.header) as writer:
        for entry in entries:
            if entry.path == os.fsencode(path):
                entry = dataclasses.replace(entry, hash=FORGED)
            writer.add(entry)


def truth(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tree(ws: Workspace) -> Workspace:
    for i in range(5):
        (ws.tree / f"f{i}").write_bytes(b"%d" % i * 1000)
    ws.write_list("pub", str(ws.tree))
    return ws


def test_unchanged_old_files_reuse_their_hashes(tree: Workspace, monkeypatch) -> None:
    take(tree, monkeypatch, HOUR_NS)
    forge(tree, tree.tree / "f0")
    result = take(tree)
    assert result.stats.hashes_reused == 5
    # Reuse is real: the (forged) previous value was carried over, not recomputed.
    assert hashes(tree)[os.fsencode(tree.tree / "f0")] == FORGED


def test_racy_files_are_rehashed(tree: Workspace) -> None:
    take(tree)  # files were written a moment ago: within the racy margin
    forge(tree, tree.tree / "f0")
    result = take(tree)
    assert result.stats.hashes_reused == 0
    assert hashes(tree)[os.fsencode(tree.tree / "f0")] == truth(tree.tree / "f0")


def test_full_rehashes_everything(tree: Workspace, monkeypatch) -> None:
    take(tree, monkeypatch, HOUR_NS)
    forge(tree, tree.tree / "f0")
    result = take(tree, full=True)
    assert result.stats.hashes_reused == 0
    assert hashes(tree)[os.fsencode(tree.tree / "f0")] == truth(tree.tree / "f0")


def test_other_algorithm_is_never_reused(tree: Workspace, monkeypatch) -> None:
    take(tree, monkeypatch, HOUR_NS, algorithm="xxh3")
    assert take(tree).stats.hashes_reused == 0


def test_previous_snapshot_older_than_the_rehash_interval_means_every_file_is_read(
        tree: Workspace, monkeypatch) -> None:
    # The previous snapshot was taken 25 hours "ago" (default interval 24 h).
    take(tree, monkeypatch, -25 * HOUR_NS)
    forge(tree, tree.tree / "f0")
    result = take(tree)
    header = read_state(tree.state / "pub" / "snapshot_pub.stat")[0]
    assert result.stats.hashes_reused == 0
    assert header.rehash_interval_ns == 24 * HOUR_NS


def test_corrupt_previous_snapshot_means_a_full_rehash(tree: Workspace, monkeypatch) -> None:
    take(tree, monkeypatch, HOUR_NS)
    state = tree.state / "pub" / "snapshot_pub.stat"
    state.write_text(state.read_text().replace("0644", "0666", 1))
    result = take(tree)
    assert result.stats.hashes_reused == 0 and result.stats.files_hashed == 5


# Mutations that keep the size, and with utime() restoring mtime: only ctime can tell.
def rewrite_same_size(path: Path, data: bytes) -> None:
    st = path.stat()
    path.write_bytes(data[:1] * st.st_size if data else bytes(st.st_size))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def replace_same_size(path: Path, data: bytes) -> None:
    st = path.stat()
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes((data[:1] or b"x") * st.st_size)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)


def write_new(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def chmod_and_back(path: Path, data: bytes) -> None:
    path.chmod(0o600)
    path.chmod(0o644)


MUTATIONS = [rewrite_same_size, replace_same_size, write_new, chmod_and_back]


@given(steps=st.lists(st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 4),
                                         st.binary(min_size=1, max_size=64)), max_size=4),
                      min_size=1, max_size=4))
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_reused_hashes_never_hide_a_change(tree: Workspace, monkeypatch, steps) -> None:
    ahead = HOUR_NS
    take(tree, monkeypatch, ahead)
    for mutations in steps:
        for mutate, index, data in mutations:
            mutate(tree.tree / f"f{index}", data)
        # Every snapshot looks an hour later than the files: nothing is racy by time.
        ahead += HOUR_NS // 60
        take(tree, monkeypatch, ahead)
        recorded = hashes(tree)
        for i in range(5):
            path = tree.tree / f"f{i}"
            assert recorded[os.fsencode(path)] == truth(path), (i, mutations)
