"""The rolling rehash: every file is read again once per interval, a slice per snapshot.

A write through a shared mapping to a page that is already dirty changes a file's content
without moving its mtime or ctime, so hash reuse alone would hide it for good. Each
snapshot therefore reads again the files whose turn came since the previous one. The clock
is the test's: snapshots are taken "hours" apart by moving time.time_ns ahead (every file
then looks old, so only the rolling rehash can read an unchanged one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import mmap
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from systraq.config import SnapshotSettings, load_settings
from systraq.snapshot import job as snapshot_module
from systraq.snapshot.hashcache import RACY_MARGIN_NS, PreviousSnapshot, RehashWindow, ReusePolicy
from systraq.snapshot.listfiles import Root
from systraq.snapshot.scan import Scanner
from systraq.snapshot.state import Header, StateReader, StateWriter, read_state

from .conftest import Workspace
from .statekit import as_v1, write_v1

HOUR_NS = 3600 * 1_000_000_000
FORGED = "f" * 64
FILES = 120


def take(ws: Workspace, monkeypatch, at_ns: int, hours: float = 24.0, **kwargs):
    """A pub snapshot as if the clock read ``at_ns``."""
    monkeypatch.setattr(snapshot_module.time, "time_ns", lambda: at_ns)
    try:
        base = load_settings(ws.config, ws.state)
        settings_ = dataclasses.replace(
            base, snapshot=SnapshotSettings(full_rehash_hours=hours, workers=1))
        return snapshot_module.take_snapshot(settings_, "pub", **kwargs)
    finally:
        monkeypatch.undo()


def state(ws: Workspace) -> Path:
    return ws.state / "pub" / "snapshot_pub.stat"


def forge_all(ws: Workspace) -> None:
    """Replace every recorded hash, keeping the file valid (a change stat cannot see)."""
    reader = StateReader(state(ws))
    entries = list(reader)
    with StateWriter(state(ws), reader.header) as writer:
        for entry in entries:
            writer.add(dataclasses.replace(entry, hash=FORGED) if entry.type == "f" else entry)


def forged(ws: Workspace) -> set[bytes]:
    return {e.path for e in read_state(state(ws))[1] if e.hash == FORGED}


@pytest.fixture
def tree(ws: Workspace) -> Workspace:
    for i in range(FILES):
        (ws.tree / f"f{i:03}").write_bytes(b"%d" % i)
    ws.write_list("pub", str(ws.tree))
    return ws


def test_hourly_snapshots_read_every_file_again_exactly_once_a_day(tree: Workspace,
                                                                   monkeypatch) -> None:
    start = time.time_ns() + HOUR_NS
    take(tree, monkeypatch, start)
    forge_all(tree)
    assert len(forged(tree)) == FILES
    read_again = []
    for hour in range(1, 25):
        before = forged(tree)
        result = take(tree, monkeypatch, start + hour * HOUR_NS)
        fixed = before - forged(tree)
        assert result.stats.rehashed == len(fixed)  # what was read again came out true
        read_again.append(len(fixed))
    assert forged(tree) == set()  # every file verified within the interval
    assert sum(read_again) == FILES  # each exactly once
    assert max(read_again) < FILES // 4  # no run pays for all of them
    assert sum(1 for count in read_again if count) > 12  # spread over the day


def test_a_run_after_a_long_pause_reads_what_came_due_meanwhile(tree: Workspace,
                                                                monkeypatch) -> None:
    start = time.time_ns() + HOUR_NS
    take(tree, monkeypatch, start)
    forge_all(tree)
    half_day = take(tree, monkeypatch, start + 12 * HOUR_NS).stats.rehashed
    assert FILES // 4 < half_day < FILES * 3 // 4
    assert take(tree, monkeypatch, start + 36 * HOUR_NS).stats.files_hashed == FILES


def test_changing_the_interval_reads_every_file_once(tree: Workspace, monkeypatch) -> None:
    start = time.time_ns() + HOUR_NS
    take(tree, monkeypatch, start)
    forge_all(tree)
    take(tree, monkeypatch, start + HOUR_NS, hours=6)
    assert forged(tree) == set()
    assert read_state(state(tree))[0].rehash_interval_ns == 6 * HOUR_NS


def test_write_through_a_dirty_shared_mapping_is_found_within_the_interval(
        tree: Workspace, monkeypatch) -> None:
    target = tree.tree / "mapped"
    target.write_bytes(b"a" * 8192)
    fd = os.open(target, os.O_RDWR)
    mapping = mmap.mmap(fd, 8192, mmap.MAP_SHARED)
    try:
        mapping[0:1] = b"b"  # the page is dirty now: mtime and ctime moved once
        start = time.time_ns() + HOUR_NS
        take(tree, monkeypatch, start)
        seen = os.stat(target)
        mapping[1:2] = b"c"  # same page, already dirty: neither moves again
        if (os.stat(target).st_mtime_ns, os.stat(target).st_ctime_ns) != \
                (seen.st_mtime_ns, seen.st_ctime_ns):
            pytest.skip("the kernel wrote the page back meanwhile: nothing hidden to find")
        truth = hashlib.sha256(target.read_bytes()).hexdigest()
        found_at = None
        for hour in range(1, 25):
            take(tree, monkeypatch, start + hour * HOUR_NS)
            recorded = {e.path: e.hash for e in read_state(state(tree))[1]}
            if recorded[os.fsencode(target)] == truth:
                found_at = hour
                break
        assert found_at is not None, "not found within full_rehash_hours"
    finally:
        mapping.close()
        os.close(fd)


def test_a_version_1_snapshot_is_followed_by_a_rolling_rehash(tree: Workspace,
                                                             monkeypatch) -> None:
    # Upgrading: the previous snapshot is of format 1, which rehashed every file at its
    # #full_rehash time; files whose turn came since then are read, the others reused.
    start = time.time_ns() + HOUR_NS
    take(tree, monkeypatch, start)
    lines = [ln for ln in state(tree).read_text().splitlines() if ln.startswith("/")]
    old = [as_v1(ln).replace(ln.split("\t")[14], FORGED) if "\tf\t" in ln else as_v1(ln)
           for ln in lines]
    write_v1(state(tree), old, created_ns=start, full_rehash_ns=start - 6 * HOUR_NS)
    result = take(tree, monkeypatch, start + HOUR_NS)
    assert 0 < result.stats.rehashed < FILES // 2
    assert len(forged(tree)) == FILES - result.stats.rehashed
    # Kept lines get the attribute columns format 1 lacked, read for them.
    header, entries = read_state(state(tree))
    assert header.version == 2 and all(e.caps == "" and e.acl == "" for e in entries)


@given(start=st.integers(0, 10**19), length=st.integers(0, 30 * HOUR_NS),
       interval=st.sampled_from([HOUR_NS, 24 * HOUR_NS, 7 * 24 * HOUR_NS]))
@settings(max_examples=300, deadline=None)
def test_consecutive_windows_choose_each_path_exactly_once_per_interval(start, length,
                                                                        interval) -> None:
    # Windows that tile exactly one interval, cut at arbitrary places.
    cuts = sorted({start, start + interval, start + length % interval,
                   start + (length * 7) % interval})
    windows = [RehashWindow.between(a, b, interval) for a, b in zip(cuts, cuts[1:],
                                                                    strict=False)]
    for i in range(200):
        path = b"/srv/file-%d" % i
        assert sum(window.due(path) for window in windows) == 1


@given(due_from=st.integers(0, 23), hours=st.integers(1, 8))
@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_one_process_or_many_the_same_files_are_read_again(ws: Workspace, due_from,
                                                           hours) -> None:
    root = ws.tree / "t"
    if not root.exists():
        for d in range(6):
            for f in range(20):
                (root / f"d{d}" / f"s{f % 3}").mkdir(parents=True, exist_ok=True)
                (root / f"d{d}" / f"s{f % 3}" / f"f{f}").write_bytes(b"%d" % f)
    truth = [line for chunk in Scanner("sha256", workers=1).chunks([Root(os.fsencode(root),
                                                                         True)])
             for line in chunk]
    # A previous snapshot whose every hash is wrong: only the files read again come out
    # right, so the output shows exactly which were chosen.
    prev = ws.state / "prev.stat"
    created = 4_000_000_000_000_000_000
    header = Header(host="h", mode="pub", created_ns=created, hash="sha256",
                    rehash_interval_ns=24 * HOUR_NS)
    with StateWriter(prev, header) as writer:
        writer.add_chunk([_forge_line(line) for line in truth])
    window = RehashWindow.between(created + due_from * HOUR_NS,
                                  created + (due_from + hours) * HOUR_NS, 24 * HOUR_NS)
    policy = ReusePolicy(racy_after_ns=created - RACY_MARGIN_NS, rehash=window)
    outputs = []
    for workers, parallel in ((1, False), (2, True)):
        previous = PreviousSnapshot(prev, header, policy, entries=len(truth))
        scanner = Scanner("sha256", workers=workers, previous=previous)
        scanner.parallel = parallel
        outputs.append([line for chunk in scanner.chunks([Root(os.fsencode(root), True)])
                        for line in chunk])
        previous.close()
        chosen = scanner.stats.rehashed
    assert outputs[0] == outputs[1]
    assert 0 < chosen < 120
    assert sum(1 for line in outputs[0] if line in truth and b"\tf\t" in line) == chosen


def _forge_line(line: bytes) -> bytes:
    fields = line.split(b"\t")
    if fields[1] == b"f":
        fields[14] = FORGED.encode()
    return b"\t".join(fields)
