"""Privilege changes lead the report: setuid/setgid, capabilities, ACLs that let others write,
root-owned files in users' homes, world-writable files and sticky-less directories."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess

import pytest

from systraq.changes.attention import capability_flags
from systraq.changes.compare import CHANGED, Change
from systraq.changes.report import ModeReport, Report, render_text, subject
from systraq.render import Terminal
from systraq.snapshot.entry import Entry
from systraq.snapshot.state import Header

from .conftest import Workspace, needs_root
from .homekit import make_homes, write_as
from .test_mail import SMTPServer, smtp, smtp_config  # noqa: F401 (the fixture)

PRIVILEGE = "privilege changes ("


def _first_check(ws: Workspace) -> None:
    done = ws.run("check")
    assert done.returncode == 1, done.stderr
    assert "first report" in done.stdout


def _privileged(text: str) -> str:
    """The privilege group of a text report (empty when there is none)."""
    if PRIVILEGE not in text:
        return ""
    return text.split(PRIVILEGE, 1)[1].split("\n\n", 1)[0]


def _check_once(ws: Workspace) -> str:
    """One check that reports; the next one says nothing."""
    done = ws.run("check")
    assert done.returncode == 1, done.stderr
    again = ws.run("check")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    return done.stdout


@pytest.fixture
def root_tree(ws: Workspace) -> Workspace:
    needs_root()
    make_homes(ws)  # no accounts of the host's
    shutil.copyfile("/bin/true", ws.tree / "tool")
    (ws.tree / "tool").chmod(0o755)
    (ws.tree / "app.conf").write_text("x\n")
    ws.write_list("root", str(ws.tree))
    _first_check(ws)
    return ws


def test_setcap_is_reported_once_as_a_privilege_change(root_tree: Workspace) -> None:
    tool = root_tree.tree / "tool"
    subprocess.run(["setcap", "cap_setuid+ep", str(tool)], check=True)
    text = _check_once(root_tree)
    assert _privileged(text) == (f"1):\n  ! {tool}\n"
                                 "      capabilities added or widened: cap_setuid=ep\n"
                                 "      capabilities (none) → cap_setuid=ep")
    assert text.count(str(tool)) == 1
    assert "total: 1 privilege change; 1 changed" in text


def test_setfacl_write_for_another_user_is_a_privilege_change(root_tree: Workspace) -> None:
    conf = root_tree.tree / "app.conf"
    subprocess.run(["setfacl", "-m", "u:nobody:rw", str(conf)], check=True)
    group = _privileged(_check_once(root_tree))
    assert group.startswith(f"1):\n  ! {conf}\n      ACL lets user nobody write\n")
    # Read access alone is not one.
    subprocess.run(["setfacl", "-m", "u:daemon:r", str(conf)], check=True)
    text = _check_once(root_tree)
    assert PRIVILEGE not in text and f"changed (1):\n  {conf}\n" in text


def test_chmod_u_plus_s_is_a_privilege_change(root_tree: Workspace) -> None:
    tool = root_tree.tree / "tool"
    subprocess.run(["chmod", "u+s", str(tool)], check=True)
    assert _privileged(_check_once(root_tree)) == (
        f"1):\n  ! {tool}\n      setuid bit set\n      perms 0755 → 4755")


def test_a_setgid_file_that_arrives_is_a_privilege_change(root_tree: Workspace) -> None:
    new = root_tree.tree / "new-tool"
    shutil.copyfile("/bin/true", new)
    new.chmod(0o2755)
    assert _privileged(_check_once(root_tree)) == (
        f"1):\n  ! {new}  (added: file 2755 root:root, {new.stat().st_size} bytes)\n"
        "      arrives setgid")


def test_narrowing_a_capability_is_an_ordinary_change(root_tree: Workspace) -> None:
    tool = root_tree.tree / "tool"
    subprocess.run(["setcap", "cap_setuid,cap_net_raw+ep", str(tool)], check=True)
    assert PRIVILEGE in _check_once(root_tree)
    subprocess.run(["setcap", "cap_net_raw+ep", str(tool)], check=True)
    text = _check_once(root_tree)
    assert PRIVILEGE not in text
    assert "capabilities cap_setuid,cap_net_raw=ep → cap_net_raw=ep" in text


def test_a_rule_that_ignores_perms_gives_no_privilege_change(root_tree: Workspace) -> None:
    root_tree.write_list("root", f"{root_tree.tree}  content")
    assert root_tree.run("check").returncode in (0, 1)
    subprocess.run(["chmod", "u+s", str(root_tree.tree / "tool")], check=True)
    done = root_tree.run("check")
    assert (done.returncode, done.stdout) == (0, "")


def test_a_new_root_owned_file_in_a_home_is_a_privilege_change(ws: Workspace) -> None:
    needs_root()
    homes = make_homes(ws, ("alice", 4242, 0o700))
    ssh = homes["alice"] / ".ssh"
    ssh.mkdir()
    os.chown(ssh, 4242, 4242)
    write_as(ssh / "authorized_keys", "ssh-ed25519 AAAA alice\n", 4242)
    ws.write_list("root", ".ssh", kind="homelist")
    _first_check(ws)
    planted = ssh / "authorized_keys2"
    planted.write_text("ssh-ed25519 AAAA root-planted\n")  # root's, in alice's home
    text = _check_once(ws)
    assert _privileged(text) == (f"1):\n  ! {planted}  (added: file 0644 root:root, "
                                 "30 bytes)\n      owned by root in the home of alice")
    # A file of hers that becomes root's is one too.
    os.chown(ssh / "authorized_keys", 0, 0)
    assert "owned by root in the home of alice" in _privileged(_check_once(ws))
    # Her own new file is an ordinary addition.
    write_as(ssh / "config", "Host *\n", 4242)
    text = _check_once(ws)
    assert PRIVILEGE not in text and f"added (1):\n  {ssh}/config" in text


def test_world_writable_file_and_sticky_less_directory_seen_by_the_pub_scan(
        ws: Workspace) -> None:
    make_homes(ws)
    shared = ws.tree / "shared"
    shared.mkdir()
    (ws.tree / "conf").write_text("x\n")
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot", user="nobody").returncode == 0
    assert ws.run("diff", user="nobody").returncode == 1
    (ws.tree / "conf").chmod(0o666)
    shared.chmod(0o777)
    assert ws.run("snapshot", user="nobody").returncode == 0
    done = ws.run("diff", "--format", "json", user="nobody")
    report = json.loads(done.stdout)
    reasons = {c["path"]: c["reasons"] for c in report["changes"] if c["attention"]}
    assert reasons == {str(ws.tree / "conf"): ["now world-writable"],
                       str(shared): ["now world-writable directory without the sticky bit"]}
    # The sticky bit makes a world-writable directory what /tmp is: no privilege change.
    shared.chmod(0o1777)
    assert ws.run("snapshot", user="nobody").returncode == 0
    report = json.loads(ws.run("diff", "--format", "json", user="nobody").stdout)
    assert [(c["path"], c["attention"]) for c in report["changes"]] == [(str(shared), False)]


def test_privilege_changes_lead_the_json_report(root_tree: Workspace) -> None:
    (root_tree.tree / "app.conf").write_text("changed\n")
    (root_tree.tree / "zz-new").write_text("new\n")
    subprocess.run(["chmod", "u+s", str(root_tree.tree / "tool")], check=True)
    assert root_tree.run("snapshot", "--mode", "root").returncode == 0
    report = json.loads(root_tree.run("diff", "--format", "json").stdout)
    assert [(c["path"].rsplit("/", 1)[1], c["attention"]) for c in report["changes"]] == [
        ("tool", True), ("app.conf", False), ("zz-new", False)]
    assert report["changes"][0]["reasons"] == ["setuid bit set"]


def test_the_mail_subject_counts_privilege_changes(root_tree: Workspace,
                                                   smtp: SMTPServer) -> None:  # noqa: F811
    smtp.start()
    smtp_config(root_tree, smtp.port, f'\n[snapshot]\npasswd = "{root_tree.config}/passwd"\n')
    (root_tree.tree / "app.conf").write_text("changed\n")
    subprocess.run(["chmod", "u+s", str(root_tree.tree / "tool")], check=True)
    done = root_tree.run("check", "--mail")
    assert done.returncode == 1, done.stderr
    assert smtp.inbox.subjects[-1].endswith(": 1 privilege change, 1 other change")
    assert "  ! " in smtp.inbox.bodies()[-1]


# --- the words, the capabilities, the terminal -----------------------------------------------

def _entry(path: bytes, perms: int, caps: str = "") -> Entry:
    return Entry(path, "f", perms, 0, "root", 0, "root", 10, 1, 1, 1, 1, 1, caps=caps,
                 acl="", label="", xattrs="")


def _report(*changes: Change) -> Report:
    header = Header("host", "root", 1_700_000_000 * 10**9, "sha256")
    return Report("host", "reported", [ModeReport("root", header, header, list(changes))])


def test_capability_text_is_read_as_getcap_writes_it() -> None:
    assert capability_flags("cap_setuid=ep") == {"cap_setuid": {"e", "p"}}
    assert capability_flags("cap_net_raw,cap_setuid+ep cap_setuid-e") == {
        "cap_net_raw": {"e", "p"}, "cap_setuid": {"p"}}
    everything = capability_flags("=ep cap_sys_admin-ep")
    assert "cap_sys_admin" not in everything and everything["cap_chown"] == {"e", "p"}
    assert capability_flags("") == {}
    assert capability_flags("invalid:00ff") == {"invalid:00ff": {"e", "i", "p"}}


def test_subject_and_summary_without_privilege_changes_are_as_before() -> None:
    old, new = _entry(b"/x", 0o644), _entry(b"/x", 0o640)
    report = _report(Change(b"/x", CHANGED, {"perms": (0o644, 0o640)}, old, new))
    assert subject(report) == "[Systraq] host: 1 change"
    assert render_text(report).endswith("changed (1):\n  /x\n      perms 0644 → 0640\n\n"
                                        "total: 1 changed\n")


def test_a_terminal_shows_privilege_lines_in_their_own_style() -> None:
    old, new = _entry(b"/bin/x", 0o755), _entry(b"/bin/x", 0o4755)
    plain_old, plain_new = _entry(b"/etc/y", 0o644), _entry(b"/etc/y", 0o640)
    report = _report(Change(b"/bin/x", CHANGED, {"perms": (0o755, 0o4755)}, old, new,
                            reasons=("setuid bit set",)),
                     Change(b"/etc/y", CHANGED, {"perms": (0o644, 0o640)}, plain_old,
                            plain_new))
    out = io.StringIO()
    Terminal(out=out, interactive=True).report(report)
    lines = out.getvalue().splitlines()
    marked = next(line for line in lines if "! /bin/x" in line)
    plain = next(line for line in lines if "/etc/y" in line)
    assert "\x1b[" in marked and "31" in marked.split("!")[0]  # red
    assert marked.split("!")[0] != plain.split("/")[0]
    # The same lines as the plain text, only styled.
    assert [line for line in render_text(report).splitlines()] == [
        _strip(line) for line in lines]


def _strip(line: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", line)
