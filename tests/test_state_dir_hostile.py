"""The pub account and every other local user against the state directory.

Each attack runs as nobody through setpriv (nobody stands for the pub account here, and
for any other local user), against the real CLI run as root.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from systraq.changes import diff as diff_module
from systraq.config import load_settings
from systraq.snapshot.job import take_snapshot
from systraq.snapshot.state import read_state

from .conftest import UNPRIVILEGED, Workspace, needs_root
from .diffkit import settle


def as_nobody(*command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*UNPRIVILEGED, *command], capture_output=True, text=True,
                          timeout=timeout)


def _hold(path: Path) -> subprocess.Popen:
    """Try to hold ``path`` locked as nobody for a while; the process ends at once if it
    cannot even open the file."""
    return subprocess.Popen([*UNPRIVILEGED, "flock", "--nonblock", "--exclusive", str(path),
                             "sleep", "30"], stderr=subprocess.PIPE, text=True)


def test_no_other_account_can_take_roots_locks(ws: Workspace) -> None:
    needs_root()
    (ws.tree / "f").write_text("x")
    settle(ws)
    ws.write_list("root", str(ws.tree))
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    assert ws.run("diff").returncode == 1  # the root mode's first report
    locks = sorted((ws.state / "root").glob("*.lock"))
    assert {p.name for p in locks} == {"report.lock", "snapshot.lock"}
    holders = [_hold(lock) for lock in locks]
    try:
        for holder, lock in zip(holders, locks, strict=True):
            assert holder.wait(timeout=20) != 0, f"nobody could lock {lock}"
            assert "Permission denied" in holder.stderr.read()
            assert lock.stat().st_mode & 0o777 == 0o600
        ws.write_config("[snapshot]\nlock_timeout = 1\n")
        (ws.tree / "f").write_text("changed")
        assert ws.run("snapshot", "--mode", "all").returncode == 0
        done = ws.run("diff")
        assert done.returncode == 1 and "content changed" in done.stdout
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


def test_the_pub_accounts_own_lock_is_not_openable_by_others(ws: Workspace) -> None:
    needs_root()
    settle(ws)
    lock = ws.state / "pub" / "snapshot.lock"
    assert lock.stat().st_uid == 65534 and lock.stat().st_mode & 0o777 == 0o600
    other = subprocess.run(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups",
                            "flock", "--nonblock", str(lock), "true"],
                           capture_output=True, text=True, timeout=20)
    assert other.returncode != 0 and "Permission denied" in other.stderr


@pytest.mark.parametrize("plant", ["symlink to root's snapshot", "fifo"])
def test_roots_diff_never_opens_what_the_pub_account_plants(ws: Workspace, plant: str) -> None:
    needs_root()
    secret = ws.tree / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    settle(ws)
    ws.write_list("root", str(ws.tree))
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    root_state = ws.state / "root" / "snapshot_root.stat"
    pub_state = ws.state / "pub" / "snapshot_pub.stat"
    reported = ws.state / "root" / "reported_pub.stat"
    before = reported.read_bytes()
    command = (f"ln -sf {root_state} {pub_state}" if plant.startswith("symlink")
               else f"rm {pub_state} && mkfifo -m 644 {pub_state}")
    assert as_nobody("sh", "-c", command).returncode == 0
    # A run that opened the FIFO would block: the run's timeout fails the test then.
    done = ws.run("diff", "--mode", "pub", timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert "snapshot_pub.stat" in done.stderr and done.stderr.count("\n") == 1
    # Nothing of root's was copied anywhere: the reported copy is as it was.
    assert reported.read_bytes() == before
    assert read_state(reported)[0].mode == "pub"


def test_a_forged_host_cannot_forge_report_lines_or_mail_headers(ws: Workspace) -> None:
    needs_root()
    (ws.tree / "f").write_text("x")
    settle(ws)
    (ws.tree / "f").write_text("y")
    # The pub account writes its own snapshot with any header it likes (a valid trailer).
    forged = "evil\nchanged (1):\n  /etc/shadow\nSubject: x"
    script = ("import socket, sys\n"
              f"sys.path.insert(0, {str(ws.launcher.library)!r})\n"  # nobody can read it
              f"socket.gethostname = lambda: {forged!r}\n"
              "from systraq.cli import main\n"
              f"main(['--config-dir', {str(ws.config)!r}, '--state-dir', {str(ws.state)!r},"
              " 'snapshot'])\n")
    forging = as_nobody(ws.launcher.python, "-I", "-c", script)
    assert forging.returncode == 0, forging.stderr
    text = ws.run("diff", "--no-record")
    assert text.returncode == 1
    assert "/etc/shadow" not in text.stdout.splitlines()[2:]
    assert text.stdout.splitlines()[0] == ("systraq on evil\\nchanged (1):\\n  /etc/shadow"
                                           "\\nSubject: x: changes since the last report")
    document = json.loads(ws.run("diff", "--no-record", "--format", "json").stdout)
    assert "\n" not in document["host"]


def test_roots_copies_are_roots_own_files_the_pub_account_cannot_touch(ws: Workspace) -> None:
    needs_root()
    (ws.tree / "f").write_text("x")
    settle(ws)
    assert ws.run("baseline").returncode == 0
    for name in ("reported_pub.stat", "baseline_pub.stat"):
        copy = ws.state / "root" / name
        st = copy.stat()
        assert (st.st_uid, st.st_nlink) == (0, 1), name
        pub = (ws.state / "pub" / "snapshot_pub.stat").stat()
        assert st.st_ino != pub.st_ino
    attempt = as_nobody("sh", "-c", f"echo x >> {ws.state}/root/baseline_pub.stat")
    assert attempt.returncode != 0
    assert (ws.state / "root").stat().st_mode & 0o777 == 0o700


def test_a_snapshot_landing_during_the_diff_is_reported_once_later(
        ws: Workspace, monkeypatch) -> None:
    """The race between deciding what to compare and comparing it: made to happen."""
    (ws.tree / "f").write_text("one")
    settle(ws)
    (ws.tree / "f").write_text("two")
    assert ws.run("snapshot").returncode == 0
    settings = load_settings(ws.config, ws.state)
    real_compare = diff_module.compare_mode
    landed = []

    def compare_then_land(*args, **kwargs):
        section = real_compare(*args, **kwargs)
        (ws.tree / "g").write_text("new")  # a new snapshot lands now
        take_snapshot(settings, "pub")
        landed.append(True)
        return section

    monkeypatch.setattr(diff_module, "compare_mode", compare_then_land)
    shown = []
    first = diff_module.run_diff(settings, ("pub",), show=shown.append)
    monkeypatch.undo()
    assert landed == [True], "the race did not happen"
    assert [c.path for c in first.report.modes[0].changes] == [os.fsencode(ws.tree / "f")]
    second = ws.run("diff")
    assert second.returncode == 1
    assert f"{ws.tree}/g" in second.stdout and f"{ws.tree}/f\n" not in second.stdout
    assert ws.run("diff").stdout == ""


def test_a_state_dir_of_the_flat_layout_moves_into_place(ws: Workspace) -> None:
    needs_root()
    (ws.tree / "f").write_text("x")
    settle(ws)
    assert ws.run("baseline").returncode == 0
    # The flat layout earlier versions wrote: everything in STATE itself.
    for name in ("reported_pub.stat", "baseline_pub.stat"):
        os.rename(ws.state / "root" / name, ws.state / name)
    os.rename(ws.state / "pub" / "snapshot_pub.stat", ws.state / "snapshot_pub.stat")
    os.chown(ws.state / "snapshot_pub.stat", 65534, 65534)
    (ws.state / "report.lock").write_text("")
    (ws.state / ".reported_pub.stat.abc.pin").write_text("left by a killed run")
    (ws.tree / "f").write_text("y")
    done = ws.run("diff")  # root's first run moves the files, then reports as ever
    assert done.returncode == 0, done.stderr  # no new snapshot yet: nothing new
    assert sorted(p.name for p in ws.state.iterdir() if p.is_file()) == []
    assert (ws.state / "root" / "baseline_pub.stat").stat().st_uid == 0
    assert (ws.state / "pub" / "snapshot_pub.stat").stat().st_uid == 65534
    assert ws.run("snapshot").returncode == 0
    report = ws.run("diff")
    assert report.returncode == 1 and "content changed" in report.stdout
