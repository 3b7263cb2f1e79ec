"""Homes and the pub account: taken from systraq.conf, so a snapshot covers what it names.

The workspace's systraq.conf names its own passwd file (snapshot.passwd) and the pub
account; these tests change them on purpose.
"""

from __future__ import annotations

import os
import posixpath
import pwd

import pytest

from systraq.config import load_settings
from systraq.snapshot.listfiles import home_directories

from .conftest import Workspace, entries_of, needs_root


def paths_in(ws: Workspace) -> list[str]:
    return [line.split("\t")[0] for line in entries_of(ws.state / "pub" / "snapshot_pub.stat")]


@pytest.mark.parametrize("user", [None, "nobody"])
def test_homelist_covers_the_homes_of_the_configured_passwd_file(ws: Workspace,
                                                                 user: str | None) -> None:
    if user is not None:
        needs_root()  # setpriv; root itself reads the passwd file, then scans as nobody
    alice, bob = ws.add_home("alice"), ws.add_home("bob")
    (alice / ".ssh").mkdir()
    (alice / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA alice\n")
    ws.write_list("pub", ".ssh", kind="homelist")
    done = ws.run("snapshot", user=user)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    # Each home itself (not below it), and what the homelist names in it; no other home.
    assert paths_in(ws) == [str(alice), f"{alice}/.ssh", f"{alice}/.ssh/authorized_keys",
                            str(bob)]


def test_passwd_file_lines_give_each_absolute_home_once(ws: Workspace) -> None:
    home = ws.root / "home"
    ws.passwd.write_text(
        "# accounts\n\n"
        f"a:x:1000:1000:A:{home}/a:/bin/sh\n"
        f"b:x:1001:1001::{home}/b/../a/:/bin/sh\n"  # the same home, written otherwise
        "root:x:0:0:root:/:/bin/sh\n"  # '/' is nobody's home to watch
        "daemon:x:1:1:daemon:usr/sbin:/usr/sbin/nologin\n"  # relative: skipped
        f"c:x:1002:1002:C:{home}/c:/bin/sh\n")
    assert home_directories(ws.passwd) == [os.fsencode(home / "a"), os.fsencode(home / "c")]


def test_without_a_passwd_file_the_homes_are_the_systems_accounts() -> None:
    expected = {os.fsencode(posixpath.normpath(e.pw_dir)) for e in pwd.getpwall()
                if e.pw_dir.startswith("/") and posixpath.normpath(e.pw_dir) != "/"}
    assert set(home_directories()) == expected


def test_malformed_or_missing_passwd_file_is_one_line_naming_it(ws: Workspace) -> None:
    ws.write_list("pub", ".ssh", kind="homelist")
    ws.passwd.write_text("root:x:0:0:root:/root:/bin/sh\n\nroot:$6$hash:19000:0:99999:7:::\n")
    done = ws.run("snapshot")
    assert (done.returncode, done.stderr) == (2, f"systraq: {ws.passwd}:3: not a passwd(5) "
                                                 "line (name:password:uid:gid:gecos:home:shell)\n")
    ws.passwd.unlink()
    done = ws.run("snapshot")
    assert (done.returncode, done.stderr) == (2, f"systraq: {ws.passwd}: cannot read: No such "
                                                 "file or directory\n")
    assert not (ws.state / "pub" / "snapshot_pub.stat").exists()


def test_relative_passwd_file_setting_is_refused(ws: Workspace) -> None:
    ws.write_list("pub", str(ws.tree))
    conf = ws.write_config('[snapshot]\npasswd = "etc/passwd"\n')
    done = ws.run("snapshot")
    assert (done.returncode, done.stderr) == (
        2, f"systraq: {conf}:2: snapshot.passwd must be an absolute path, not 'etc/passwd'\n")


def test_pub_scan_runs_as_the_configured_account(ws: Workspace) -> None:
    needs_root()
    daemon = pwd.getpwnam("daemon")  # in every Debian's base-passwd
    ws.write_config('[snapshot]\npub_user = "daemon"\n')
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0
    # A pub snapshot root takes is given to the account that scanned it.
    assert (ws.state / "pub" / "snapshot_pub.stat").stat().st_uid == daemon.pw_uid


def test_pub_scan_falls_back_to_nobody_without_the_pub_account(ws: Workspace) -> None:
    needs_root()
    absent = "systraq-test-no-such-account"
    with pytest.raises(KeyError):
        pwd.getpwnam(absent)
    ws.write_config(f'[snapshot]\npub_user = "{absent}"\n')
    ws.write_list("pub", str(ws.tree))
    assert load_settings(ws.config, ws.state).snapshot.pub_user == absent
    assert ws.run("snapshot").returncode == 0
    assert (ws.state / "pub" / "snapshot_pub.stat").stat().st_uid == pwd.getpwnam("nobody").pw_uid
