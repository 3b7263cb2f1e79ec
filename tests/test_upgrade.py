"""Upgrading a state dir written by earlier systraq (format 1): no flood, one note.

Format 2 records extended attributes; format 1 did not. Where one side of a comparison did
not record an attribute, it is not compared, and the report says once that it is recorded
from now on. The format-1 files are written from that format's documented layout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from systraq.changes.compare import DEFAULT_FIELDS as DEFAULT_REPORT_FIELDS
from systraq.changes.compare import difference
from systraq.snapshot.entry import Entry
from systraq.snapshot.state import read_state

from .conftest import Workspace, needs_root
from .statekit import downgrade

NOTE = ("capabilities, ACLs and security labels are recorded from now on: the last "
        "report's snapshot did not record them, so they were not compared this time")


def upgraded_state_dir(ws: Workspace) -> None:
    """A root-mode state dir as earlier systraq left it: snapshot and reported copy."""
    needs_root()
    binary = ws.tree / "ping"
    shutil.copyfile("/bin/true", binary)
    subprocess.run(["setcap", "cap_net_raw+ep", str(binary)], check=True)
    shared = ws.tree / "shared"
    shared.write_text("x")
    subprocess.run(["setfacl", "-m", "u:nobody:r", str(shared)], check=True)
    (ws.tree / "sub").mkdir()
    (ws.tree / "sub" / "plain").write_text("y")
    (ws.tree / "link").symlink_to("shared")
    os.mkfifo(ws.tree / "fifo")
    ws.write_list("root", str(ws.tree))
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    assert ws.run("diff", "--mode", "root").returncode == 1  # the first report
    for name in ("snapshot_root.stat", "reported_root.stat"):
        downgrade(ws.state / "root" / name)
        assert (ws.state / "root" / name).read_text().startswith("#systraq-state\t1\n")


def test_first_diff_after_the_upgrade_says_only_the_one_note(ws: Workspace) -> None:
    upgraded_state_dir(ws)
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    header, entries = read_state(ws.state / "root" / "snapshot_root.stat")
    assert header.version == 2
    by_path = {e.path: e for e in entries}
    assert by_path[os.fsencode(ws.tree / "ping")].caps == "cap_net_raw=ep"
    assert by_path[os.fsencode(ws.tree / "shared")].acl.startswith("user::rw-,user:nobody:r--")
    for name in ("link", "fifo", "sub"):
        assert by_path[os.fsencode(ws.tree / name)].caps == "", name
    report = ws.run("diff", "--mode", "root", "--format", "json", "--no-record")
    assert report.returncode == 1
    document = json.loads(report.stdout)
    assert document["changes"] == []
    assert document["modes"][0]["notes"] == [NOTE]
    text = ws.run("diff", "--mode", "root")
    assert text.stdout.count("note:") == 1 and f"  note: {NOTE}\n" in text.stdout
    assert "changed" not in text.stdout and "added" not in text.stdout
    # From then on: quiet when nothing changed, and attribute changes are reported.
    ws.run("snapshot", "--mode", "root")
    assert ws.run("diff", "--mode", "root").stdout == ""
    subprocess.run(["setcap", "-r", str(ws.tree / "ping")], check=True)
    ws.run("snapshot", "--mode", "root")
    assert "capabilities cap_net_raw=ep → (none)" in ws.run("diff", "--mode", "root").stdout


def test_a_format_1_baseline_is_compared_without_a_flood(ws: Workspace) -> None:
    upgraded_state_dir(ws)
    assert ws.run("baseline", "--mode", "root").returncode == 0
    downgrade(ws.state / "root" / "baseline_root.stat")
    ws.run("snapshot", "--mode", "root")
    against = ws.run("diff", "--mode", "root", "--baseline")
    assert against.returncode == 1
    assert against.stdout.count("note:") == 1
    assert "the accepted baseline did not record them" in against.stdout
    assert "changed" not in against.stdout


def test_an_attribute_one_side_did_not_record_is_not_compared() -> None:
    old = Entry(b"/usr/bin/ping", "f", 0o755, 0, "root", 0, "root", 1, 2, 3, 4, 5, 1,
                hash="ab" * 32)
    new = Entry(b"/usr/bin/ping", "f", 0o755, 0, "root", 0, "root", 1, 2, 3, 4, 5, 1,
                hash="ab" * 32, caps="cap_net_raw=ep", acl="", label="", xattrs="")
    unrecorded: set[str] = set()
    assert difference(old, new, DEFAULT_REPORT_FIELDS, unrecorded=unrecorded) is None
    assert unrecorded == {"caps", "acl", "label"}
    # Recorded on both sides: compared.
    change = difference(new, Entry(*[getattr(new, f) for f in (
        "path", "type", "perms", "uid", "user", "gid", "group", "size", "mtime_ns",
        "ctime_ns", "dev", "ino", "nlink")], hash=new.hash, caps="", acl="", label="",
        xattrs=""), DEFAULT_REPORT_FIELDS)
    assert change is not None and change.fields == {"caps": ("cap_net_raw=ep", "")}
