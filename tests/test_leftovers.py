"""Runs killed mid-write leave temporary files; the next run holding the lock removes them.

Each kill is real: the CLI runs in a subprocess whose AtomicFile.publish sends itself
SIGKILL right before the rename that would have put a chosen file in place (a hook, since
a kill at exactly that instant cannot be timed from outside).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from systraq.fs.atomic import sweep_temporaries

from .conftest import REPO, Workspace, needs_root
from .diffkit import settle, write_config

_KILLED_AT = """
import os, re, signal, sys
from systraq.fs import atomic
wanted = re.compile(os.environb[b"KILL_AT"])
publish = atomic.AtomicFile.publish
def killing_publish(self):
    if wanted.fullmatch(self.name):
        os.kill(os.getpid(), signal.SIGKILL)
    return publish(self)
atomic.AtomicFile.publish = killing_publish
sys.argv[0] = "systraq"
from systraq.cli import main
main()
"""
TEMPORARY = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")


def run_killed(ws: Workspace, kill_at: str, *args: str) -> subprocess.CompletedProcess:
    """Run the CLI, killed just before it would rename a file whose name matches."""
    command = [sys.executable, "-c", _KILLED_AT, "--config-dir", str(ws.config),
               "--state-dir", str(ws.state), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ws.root,
                          env={**os.environ, "PYTHONPATH": str(REPO), "KILL_AT": kill_at})


def leftovers(directory: Path) -> list[str]:
    """The temporary files anywhere below ``directory``."""
    return sorted(str(Path(d, n).relative_to(directory)) for d, _, names in os.walk(directory)
                  for n in names if TEMPORARY.fullmatch(n))


def test_killed_pub_snapshot_leaves_a_staged_file_the_next_snapshot_removes(
        ws: Workspace) -> None:
    needs_root()  # the pub job runs in a child as nobody, which dies by the hook
    (ws.tree / "f").write_text("x")
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0
    killed = run_killed(ws, r"snapshot_pub\.stat", "snapshot")
    assert killed.returncode != 0
    assert [n.split(".")[1] for n in leftovers(ws.state)] == ["snapshot_pub"]
    assert ws.run("snapshot").returncode == 0
    assert leftovers(ws.state) == []


def test_killed_root_snapshot_and_its_note_are_swept(ws: Workspace) -> None:
    needs_root()
    (ws.tree / "f").write_text("x")
    ws.write_list("root", str(ws.tree))
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    assert run_killed(ws, r"snapshot_root\.stat", "snapshot", "--mode",
                      "root").returncode == -9
    assert [n.split(".")[1] for n in leftovers(ws.state)] == ["snapshot_root"]
    snapshot = ws.state / "root" / "snapshot_root.stat"
    snapshot.write_bytes(snapshot.read_bytes()[:-10])  # a corrupt previous: a note is due
    assert run_killed(ws, r"snapshot_root\.notes", "snapshot", "--mode",
                      "root").returncode == -9
    # The killed run swept the staged snapshot the first one left, then left its note.
    assert [n.split(".")[1] for n in leftovers(ws.state)] == ["snapshot_root"]
    assert leftovers(ws.state)[0].startswith("root/.snapshot_root.notes.")
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    assert leftovers(ws.state) == []


def test_killed_diff_leaves_its_pin_and_the_next_diff_removes_it(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    (ws.tree / "f").write_text("xx")
    assert ws.run("snapshot").returncode == 0
    killed = run_killed(ws, r"reported_pub\.stat", "diff")
    assert killed.returncode == -9
    assert len(leftovers(ws.state / "root")) == 1  # a whole copy of a state file
    again = ws.run("diff")
    assert again.returncode == 1 and f"{ws.tree}/f" in again.stdout  # not lost either
    assert leftovers(ws.state) == []


def test_killed_baseline_and_daily_pins_are_removed_under_the_report_lock(
        ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    assert run_killed(ws, r"baseline_pub\.stat", "baseline").returncode == -9
    assert [n.split(".")[1] for n in leftovers(ws.state)] == ["baseline_pub"]
    assert run_killed(ws, r"daily_pub\.stat", "daily").returncode == -9
    assert [n.split(".")[1] for n in leftovers(ws.state)] == ["daily_pub"]
    assert ws.run("diff").returncode == 0
    assert leftovers(ws.state) == []


def test_killed_spooling_leaves_nothing_after_the_next_mailing_run(ws: Workspace) -> None:
    settle(ws)
    write_config(ws, f'[mail]\nsendmail = "{ws.root}/no-such-sendmail -t"\n')
    (ws.tree / "f").write_text("x")
    assert ws.run("snapshot").returncode == 0
    assert run_killed(ws, r".*\.eml", "diff", "--mail").returncode == -9
    assert len(leftovers(ws.state / "root" / "spool")) == 1
    run = ws.run("diff", "--mail")
    assert run.returncode == 2 and "waits in the spool" in run.stderr
    assert leftovers(ws.state) == []


def test_killed_filetraq_leaves_nothing_after_the_next_run_or_prune(ws: Workspace) -> None:
    tracked = ws.tree / "hosts"
    tracked.write_text("127.0.0.1 localhost\n")
    (ws.config / "filetraq.conf").write_text(f"{tracked}\n")
    assert run_killed(ws, r"seen", "filetraq").returncode != 0
    store = ws.state / "filetraq"
    assert leftovers(store) == [".systraq/.seen." + leftovers(store)[0].split(".")[3]
                                + ".tmp"]
    assert ws.run("filetraq").returncode in (0, 1)
    assert leftovers(store) == []
    # A change killed before its new content became orig, then undone: that entry is
    # never staged again, so its temporary file waits for the prune.
    tracked.write_text("127.0.0.1 localhost changed\n")
    assert run_killed(ws, r"orig", "filetraq").returncode != 0
    tracked.write_text("127.0.0.1 localhost\n")
    assert ws.run("filetraq").returncode == 0
    assert len(leftovers(store)) == 1
    assert ws.run("filetraq", "--prune").returncode == 0
    assert leftovers(store) == []


# --- what the sweep never touches ---------------------------------------------------------

@pytest.fixture
def directory() -> Path:
    path = Path(tempfile.mkdtemp(prefix="systraq-sweep-", dir="/tmp"))
    yield path
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def test_sweep_removes_only_our_own_regular_temporary_files(directory: Path) -> None:
    target = directory / "reported_pub.stat"
    ours = directory / ".reported_pub.stat.0123456789ab.tmp"
    ours.write_text("pin")
    precious = directory / "precious"
    precious.write_text("keep me")
    link = directory / ".reported_pub.stat.aaaaaaaaaaaa.tmp"
    link.symlink_to(precious)
    (directory / ".reported_pub.stat.bbbbbbbbbbbb.tmp").mkdir()
    kept = [".other.0123456789ab.tmp", ".reported_pub.stat.0123.tmp",
            "reported_pub.stat.corrupt-20260101T000000", ".reported_pub.stat.tmp",
            ".reported_pub.stat.0123456789ab.tmp.x"]
    for name in kept:
        (directory / name).write_text("not ours")
    assert sweep_temporaries([target]) == [ours]
    assert not os.path.lexists(ours)
    assert link.is_symlink() and precious.read_text() == "keep me"
    assert (directory / ".reported_pub.stat.bbbbbbbbbbbb.tmp").is_dir()
    assert all((directory / name).exists() for name in kept)


def test_sweep_leaves_another_accounts_file_and_never_enters_a_symlink(
        directory: Path) -> None:
    needs_root()
    theirs = directory / ".reported_pub.stat.0123456789ab.tmp"
    theirs.write_text("nobody's")
    os.chown(theirs, 65534, 65534)
    assert sweep_temporaries([directory / "reported_pub.stat"]) == []
    assert theirs.exists()
    real = directory / "real"
    real.mkdir()
    (real / ".snapshot_pub.stat.0123456789ab.tmp").write_text("x")
    (directory / "link").symlink_to(real)
    assert sweep_temporaries([directory / "link" / "snapshot_pub.stat"]) == []
    assert (real / ".snapshot_pub.stat.0123456789ab.tmp").exists()
