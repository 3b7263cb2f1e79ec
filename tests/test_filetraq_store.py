"""The backup store: every version kept, whatever the timing; crashes lose nothing."""

from __future__ import annotations

import errno
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from systraq.filetraq import store as store_module
from systraq.filetraq.store import Store, dated_name, dated_time
from systraq.fs.privilege import PrivilegeError

from .filetraq_support import dated_copies, run_in_process, store_of, stored, write_list

MINUTE = time.mktime((2026, 11, 23, 15, 4, 0, 0, 0, -1))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from([b"a\n", b"b\n", b"a\nb\n", b"", b"\0bin"]),
                                st.integers(min_value=0, max_value=2)),
                      min_size=1, max_size=8))
def test_every_version_is_kept_whatever_the_timing(ws, steps):
    """Each content a run saw ends up as orig or as exactly one dated copy."""
    path = ws.tree / "f"
    for name in os.listdir(ws.tree):
        os.unlink(ws.tree / name)
    store = ws.root / f"store-{time.monotonic_ns()}"
    store.mkdir()
    write_list(ws, str(path))
    seen = []
    for content, minute in steps:
        path.write_bytes(content)
        if not seen or seen[-1] != content:
            seen.append(content)
        report, _ = run_in_process(ws, clock=MINUTE + 60 * minute, backupdir=store)
        assert report.problems == []
    directory = store / str(path).lstrip("/")
    assert (directory / "orig").read_bytes() == seen[-1]
    copies = [n for n in os.listdir(directory) if dated_time(n.encode()) is not None]
    assert sorted((directory / n).read_bytes() for n in copies) == sorted(seen[:-1])


def test_crash_between_keeping_the_old_version_and_writing_the_new_loses_nothing(
        ws, monkeypatch):
    path = ws.tree / "f"
    path.write_text("one\n")
    write_list(ws, str(path))
    run_in_process(ws, clock=MINUTE)
    path.write_text("two\n")

    def crash(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Store, "_write_temp", crash)
    with pytest.raises(Exception, match="No space left on device"):
        run_in_process(ws, clock=MINUTE)
    assert stored(ws, path).read_text() == "one\n"
    assert stored(ws, path, "orig.11.23.26__15.04").read_text() == "one\n"
    monkeypatch.undo()
    report, text = run_in_process(ws, clock=MINUTE)
    assert "Changes in" in text, "reported again, since the store still holds the old one"
    assert stored(ws, path).read_text() == "two\n"
    assert dated_copies(ws, path) == ["orig-2.11.23.26__15.04", "orig.11.23.26__15.04"]
    assert not [n for n in os.listdir(stored(ws, path).parent) if n.endswith(".tmp")]


def test_crash_between_staging_and_renaming_loses_nothing_and_leaves_no_temporary_file(
        ws, monkeypatch):
    path = ws.tree / "f"
    path.write_text("one\n")
    write_list(ws, str(path))
    run_in_process(ws, clock=MINUTE)
    path.write_text("two\n")

    def crash(self):
        raise KeyboardInterrupt  # the power goes: nothing after this runs

    monkeypatch.setattr(Store, "sync", crash)
    # Run by root, the job runs as the pub account: its crash is reported, not re-raised.
    with pytest.raises((KeyboardInterrupt, PrivilegeError)):
        run_in_process(ws, clock=MINUTE)
    directory = stored(ws, path).parent
    assert [n for n in os.listdir(directory) if n.endswith(".tmp")] != []
    assert stored(ws, path).read_text() == "one\n"
    monkeypatch.undo()
    assert "Changes in" in run_in_process(ws, clock=MINUTE)[1]
    assert stored(ws, path).read_text() == "two\n"
    assert [n for n in os.listdir(directory) if n.endswith(".tmp")] == []
    kept = sorted(stored(ws, path, n).read_text() for n in dated_copies(ws, path))
    assert kept == ["one\n", "one\n"]


def test_dated_copy_is_copied_when_hard_links_are_refused(ws, monkeypatch):
    path = ws.tree / "f"
    path.write_text("one\n")
    path.chmod(0o640 | 0o004)
    write_list(ws, str(path))
    run_in_process(ws, clock=MINUTE)
    path.write_text("two\n")

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(store_module.os, "link", refuse)
    run_in_process(ws, clock=MINUTE)
    kept = stored(ws, path, "orig.11.23.26__15.04")
    assert kept.read_text() == "one\n"
    assert kept.stat().st_mode & 0o777 == 0o644
    assert stored(ws, path).read_text() == "two\n"


def test_dated_names_are_filetraqs_and_their_time_is_read_back():
    when = time.localtime(MINUTE)
    assert dated_name(when) == b"orig.11.23.26__15.04"
    assert dated_name(when, 3) == b"orig-3.11.23.26__15.04"
    assert dated_time(b"orig.11.23.26__15.04") == MINUTE
    assert dated_time(b"orig-3.11.23.26__15.04") == MINUTE
    assert dated_time(b"orig.12.31.99__23.59", now=MINUTE) == \
        time.mktime((1999, 12, 31, 23, 59, 0, 0, 0, -1))
    for name in (b"orig", b"orig.11.23.26__15.04.bak", b"x.11.23.26__15.04", b"orig-0.1"):
        assert dated_time(name) is None


def test_prune_leaves_everything_but_old_dated_copies(ws):
    store = store_of(ws)
    directory = store / "etc" / "hosts"
    directory.mkdir(parents=True)
    (store / ".systraq").mkdir()
    old = dated_name(time.localtime(MINUTE - 100 * 86400)).decode()
    for name in ("orig", old, "notes"):
        (directory / name).write_text("x\n")
    (store / ".systraq" / old).write_text("systraq's own\n")
    os.symlink("/etc/passwd", directory / dated_name(time.localtime(MINUTE - 200 * 86400),
                                                     2).decode())
    with Store(store) as opened:
        result = opened.prune(60, now=MINUTE)
    assert result.removed == [os.fsencode(directory / old)]
    assert sorted(os.listdir(directory)) == sorted(
        ["orig", "notes", dated_name(time.localtime(MINUTE - 200 * 86400), 2).decode()])
    assert (store / ".systraq" / old).exists()
