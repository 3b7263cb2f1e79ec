"""One path, one report: what both the pub and the root lists cover is root's alone."""

from __future__ import annotations

import json

from .conftest import Workspace, entries_of, needs_root
from .homekit import make_homes


def _paths(ws: Workspace, mode: str) -> set[str]:
    return {line.split("\t")[0]
            for line in entries_of(ws.state / mode / f"snapshot_{mode}.stat")}


def _tree(ws: Workspace) -> None:
    make_homes(ws)
    etc = ws.tree / "etc"
    etc.mkdir()
    for name in ("hosts", "mtab", "motd"):
        (etc / name).write_text(f"{name}\n")
    (ws.tree / "other").write_text("x\n")


def test_etc_in_both_lists_is_scanned_and_reported_once(ws: Workspace) -> None:
    needs_root()
    _tree(ws)
    etc = ws.tree / "etc"
    ws.write_list("pub", str(ws.tree))
    ws.write_list("root", str(etc))
    first = ws.run("check")
    assert first.returncode == 1, first.stderr
    assert not {p for p in _paths(ws, "pub") if p.startswith(str(etc))}
    assert str(etc / "hosts") in _paths(ws, "root")
    (etc / "hosts").write_text("changed\n")
    done = ws.run("check")
    assert done.returncode == 1
    assert done.stdout.count(str(etc / "hosts")) == 1
    assert "root: " in done.stdout and "pub: " not in done.stdout
    (etc / "motd").write_text("changed\n")
    report = json.loads(ws.run("check", "--format", "json").stdout)
    assert [(c["mode"], c["path"]) for c in report["changes"]] == [("root", str(etc / "motd"))]


def test_the_overlapping_lines_are_said_once(ws: Workspace) -> None:
    needs_root()
    _tree(ws)
    ws.write_list("pub", "# comment", str(ws.tree), str(ws.tree / "other"))
    ws.write_list("root", str(ws.tree / "etc"))
    first = ws.run("snapshot")
    assert first.returncode == 0
    assert first.stderr == (
        f"systraq: warning: snapshot_pub.list:2 ({ws.tree}) and snapshot_root.list:1 "
        f"({ws.tree}/etc) cover the same paths: those are scanned and reported in root "
        "mode only\n")
    again = ws.run("snapshot")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    # Another overlap is news again.
    ws.write_list("root", str(ws.tree / "etc"), str(ws.tree / "other"))
    third = ws.run("snapshot")
    assert third.stderr.count("warning:") == 3
    assert "snapshot_pub.list:3" in third.stderr


def test_what_the_root_lists_exclude_stays_with_the_pub_scan(ws: Workspace) -> None:
    needs_root()
    _tree(ws)
    etc = ws.tree / "etc"
    ws.write_list("pub", str(etc))
    ws.write_list("root", str(etc), f"!{etc}/mtab")
    assert ws.run("snapshot").returncode == 0
    assert _paths(ws, "pub") == {str(etc / "mtab")}
    assert str(etc / "mtab") not in _paths(ws, "root")
    assert ws.run("snapshot").stderr == ""  # no overlap to speak of


def test_snapshot_takes_every_mode_as_root_and_the_pub_mode_otherwise(ws: Workspace) -> None:
    needs_root()
    _tree(ws)
    ws.write_list("pub", str(ws.tree / "other"))
    ws.write_list("root", str(ws.tree / "etc"))
    assert ws.run("snapshot").returncode == 0
    assert (ws.state / "pub" / "snapshot_pub.stat").exists()
    assert (ws.state / "root" / "snapshot_root.stat").exists()
    ws.write_list("pub", str(ws.tree / "other"), str(ws.tree / "etc" / "motd"))
    as_nobody = ws.run("snapshot", user="nobody")
    assert (as_nobody.returncode, as_nobody.stdout) == (0, "")
    assert _paths(ws, "pub") == {str(ws.tree / "other")}  # motd is root's
    (ws.config / "snapshot_pub.list").unlink()
    alone = ws.run("snapshot", user="nobody")
    assert alone.returncode == 2
    assert "run it as root" in alone.stderr


def test_paths_root_takes_over_are_not_reported_as_removed(ws: Workspace) -> None:
    needs_root()
    _tree(ws)
    ws.write_list("pub", str(ws.tree))
    assert ws.run("check").returncode == 1
    ws.write_list("root", str(ws.tree / "etc"))
    done = ws.run("check")
    assert done.returncode == 1
    assert "removed" not in done.stdout
    assert "note: 4 entries the root lists cover too left this snapshot: they are scanned " \
        "and reported in root mode only" in done.stdout
    assert "root: snapshot of" in done.stdout  # root's first report


def test_a_root_list_the_pub_account_cannot_read_still_gives_one_report(
        ws: Workspace) -> None:
    needs_root()
    _tree(ws)
    ws.write_list("pub", str(ws.tree))
    ws.write_list("root", str(ws.tree / "etc")).chmod(0o600)
    snap = ws.run("snapshot", "--mode", "pub", user="nobody")
    assert snap.returncode == 0
    assert "snapshot_root.list: not readable by this account: what both modes list is " \
        "scanned in both" in snap.stderr
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    assert ws.run("diff").returncode == 1
    (ws.tree / "etc" / "hosts").write_text("changed\n")
    assert ws.run("snapshot", "--mode", "pub", user="nobody").returncode == 0
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    done = ws.run("diff")
    assert done.stdout.count(str(ws.tree / "etc" / "hosts")) == 1
    assert "root: " in done.stdout


def test_a_list_line_over_homes_overlaps_a_homelist_line_only_where_files_are(
        ws: Workspace) -> None:
    needs_root()
    homes = make_homes(ws, ("alice", 4242, 0o755), ("daemon", 4243, 0o755))
    (homes["alice"] / ".bashrc").write_text("x\n")
    ws.write_list("pub", str(homes["daemon"]))  # a system account's home, as /usr/sbin is
    ws.write_list("root", ".bashrc", kind="homelist")
    quiet = ws.run("snapshot")
    assert (quiet.returncode, quiet.stderr) == (0, "")
    ws.write_list("pub", str(homes["daemon"]), str(ws.root / "home"))
    said = ws.run("snapshot")
    assert said.stderr == (
        f"systraq: warning: snapshot_pub.list:2 ({ws.root}/home) and "
        "snapshot_root.homelist:1 (.bashrc) cover the same paths: those are scanned and "
        "reported in root mode only\n")
    assert str(homes["alice"] / ".bashrc") not in _paths(ws, "pub")
    assert str(homes["alice"] / ".bashrc") in _paths(ws, "root")
