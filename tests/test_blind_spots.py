"""No blind spots: what a list names and the scan cannot look into is a finding."""

from __future__ import annotations

import shutil

from .conftest import REPO, Workspace, entries_of, needs_root
from .homekit import make_homes, write_as


def _status(ws: Workspace, mode: str) -> dict[str, str]:
    return {fields[0]: fields[13] for fields in
            (line.split("\t") for line in entries_of(ws.state / mode / f"snapshot_{mode}.stat"))}


def _pub_check(ws: Workspace) -> str:
    """The hourly pub snapshot as the unprivileged account, then root's diff."""
    snap = ws.run("snapshot", "--mode", "pub", user="nobody")
    assert snap.returncode == 0, snap.stderr
    return ws.run("diff").stdout


def test_homes_the_pub_scan_cannot_enter_are_said_when_it_starts_and_ends(
        ws: Workspace) -> None:
    needs_root()
    homes = make_homes(ws, ("alice", 4242, 0o700), ("bob", 4243, 0o700),
                       ("carol", 4244, 0o755))
    for name, home in homes.items():
        write_as(home / ".profile", "umask 022\n", 4242 + list(homes).index(name))
    ws.write_list("pub", ".profile", kind="homelist")
    first = _pub_check(ws)
    assert _status(ws, "pub")[str(homes["alice"])] == "unreadable"
    assert str(homes["carol"] / ".profile") in _status(ws, "pub")
    assert (f"note: not watched: 2 entries the pub scan cannot look into: "
            f"{homes['alice']} (directory 0700 4242:4242); "
            f"{homes['bob']} (directory 0700 4243:4243)") in first
    assert _pub_check(ws) == ""  # said once
    homes["alice"].chmod(0o755)
    text = _pub_check(ws)
    assert f"watched again (1):\n  {homes['alice']}\n      can be looked into again\n" in text
    assert f"added (1):\n  {homes['alice']}/.profile" in text
    homes["carol"].chmod(0o700)
    text = _pub_check(ws)
    assert (f"not watched: the scan cannot look into these (1):\n  {homes['carol']}\n"
            "      cannot be looked into: what is below it is not watched\n"
            "      perms 0755 → 0700\n") in text
    assert "removed (" not in text  # her .profile is unseen, not gone
    assert f"1 entry below {homes['carol']} is not seen" in text
    assert _pub_check(ws) == ""


def test_a_directory_in_a_listed_tree_that_cannot_be_entered_is_a_blind_spot(
        ws: Workspace) -> None:
    make_homes(ws)
    closed = ws.tree / "private"
    closed.mkdir()
    (closed / "secret").write_text("x\n")
    closed.chmod(0o700)
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot", user="nobody").returncode == 0
    first = ws.run("diff", user="nobody")
    assert f"not watched: 1 entry the pub scan cannot look into: {closed} (directory 0700" \
        in first.stdout


def test_the_daily_report_lists_blind_spots_while_they_last(ws: Workspace) -> None:
    needs_root()
    homes = make_homes(ws, ("alice", 4242, 0o700))
    ws.write_list("pub", ".forward", kind="homelist")
    assert ws.run("snapshot", "--mode", "pub", user="nobody").returncode == 0
    daily = ws.run("daily", "--root", str(ws.root))
    assert "1 entry the pub scan cannot look into: not watched" in daily.stdout
    assert f"-- pub: not watched (the pub scan cannot look into these) --\n  " \
        f"{homes['alice']} (directory 0700 4242:4242)" in daily.stdout
    homes["alice"].chmod(0o755)
    assert ws.run("snapshot", "--mode", "pub", user="nobody").returncode == 0
    assert "not watched" not in ws.run("daily", "--root", str(ws.root)).stdout


def test_the_shipped_root_homelist_watches_start_up_and_mail_files_in_closed_homes(
        ws: Workspace) -> None:
    needs_root()
    shipped = (REPO / "etc" / "snapshot_root.homelist").read_text().split()
    for name in (".bashrc", ".profile", ".bash_profile", ".bash_login", ".bash_logout",
                 ".zshrc", ".cshrc", ".login", ".forward", ".procmailrc"):
        assert name in shipped
    homes = make_homes(ws, ("alice", 4242, 0o700))
    for name in (".bashrc", ".forward"):
        write_as(homes["alice"] / name, "x\n", 4242)
    shutil.copy(REPO / "etc" / "snapshot_root.homelist", ws.config)
    shutil.copy(REPO / "etc" / "snapshot_pub.homelist", ws.config)
    done = ws.run("snapshot")
    assert (done.returncode, done.stderr) == (0, "")  # the shipped lists do not overlap
    watched = _status(ws, "root")
    assert watched[str(homes["alice"] / ".bashrc")] == "ok"
    assert watched[str(homes["alice"] / ".forward")] == "ok"
    assert "unreadable" not in _status(ws, "pub").values()
