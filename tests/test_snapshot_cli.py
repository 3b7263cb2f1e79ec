"""The snapshot command as cron and an administrator meet it."""

from __future__ import annotations

import io
import os
import pwd
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from systraq.config import load_settings
from systraq.render import Terminal
from systraq.snapshot.job import take_snapshot

from .conftest import REPO, UNPRIVILEGED, Workspace, entries_of, needs_root
from .runner import run_in_process


def test_shipped_example_config_works_as_root_and_unprivileged(ws: Workspace) -> None:
    example = ws.root / "example"
    shutil.copytree(REPO / "etc", example)
    example.chmod(0o755)
    ws.write_config((example / "systraq.conf").read_text(), config_dir=example)
    for user in (None, "nobody"):
        done = ws.run("--config-dir", str(example), "snapshot", user=user)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        assert entries_of(ws.state / "pub" / "snapshot_pub.stat")


def test_rerun_on_unchanged_tree_gives_identical_entries(ws: Workspace) -> None:
    (ws.tree / "a").write_text("one")
    (ws.tree / "dir").mkdir()
    (ws.tree / "dir" / "b").write_text("two")
    ws.write_list("pub", str(ws.tree))
    ws.run("snapshot")
    first = (ws.state / "pub" / "snapshot_pub.stat").read_text().splitlines()
    ws.run("snapshot")
    second = (ws.state / "pub" / "snapshot_pub.stat").read_text().splitlines()
    differing = [a.split("\t")[0] for a, b in zip(first, second, strict=True) if a != b]
    assert differing == ["#created", "#end"]


def test_root_state_is_private_and_root_only(ws: Workspace) -> None:
    needs_root()
    (ws.tree / "shadow").write_text("x")
    ws.write_list("root", str(ws.tree / "shadow"))
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    assert (ws.state / "root" / "snapshot_root.stat").stat().st_mode & 0o777 == 0o600
    refused = ws.run("snapshot", "--mode", "root", user="nobody")
    assert refused.returncode == 2
    assert refused.stderr == ("systraq: the root snapshot reads files only root can read: "
                              "run it as root\n")


def test_mode_all_writes_both_snapshots(ws: Workspace) -> None:
    needs_root()
    ws.write_list("pub", str(ws.tree))
    ws.write_list("root", str(ws.tree))
    assert ws.run("snapshot", "--mode", "all").returncode == 0
    assert {p.name for p in ws.state.glob("*/*.stat")} == {"snapshot_pub.stat",
                                                         "snapshot_root.stat"}


def test_second_snapshot_waits_then_names_the_lock_holder(ws: Workspace) -> None:
    ws.write_list("pub", str(ws.tree))
    ws.write_config("[snapshot]\nlock_timeout = 0.5\n")
    assert ws.run("snapshot", user="nobody").returncode == 0
    state = ws.state / "pub" / "snapshot_pub.stat"
    state.unlink()
    # The pub account's own run holds its lock (a process of that account, for real).
    holder = subprocess.Popen(
        [*UNPRIVILEGED, "flock", "--exclusive", str(ws.state / "pub" / "snapshot.lock"),
         "sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while "FLOCK" not in Path("/proc/locks").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        done = ws.run("snapshot", user="nobody")
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    # setpriv execs flock, which holds the lock: the kernel's word, not a pid in the file.
    assert f"(pid {holder.pid}) holds this lock" in done.stderr, done.stderr
    assert not state.exists()


def test_concurrent_snapshots_both_succeed_in_turn(ws: Workspace) -> None:
    for i in range(200):
        (ws.tree / f"f{i}").write_text(str(i))
    ws.write_list("pub", str(ws.tree))
    results = []
    threads = [threading.Thread(target=lambda: results.append(ws.run("snapshot", process=True)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.returncode for r in results] == [0, 0, 0]
    assert len([ln for ln in entries_of(ws.state / "pub" / "snapshot_pub.stat")
                if ln.startswith(str(ws.tree))]) == 201


def test_missing_lists_are_a_clear_error(ws: Workspace) -> None:
    done = ws.run("snapshot")
    assert done.returncode == 2
    assert done.stderr.startswith(f"systraq: {ws.config}: nothing to snapshot in pub mode")
    assert "Traceback" not in done.stderr


def test_bad_list_line_names_file_and_line(ws: Workspace) -> None:
    listfile = ws.write_list("pub", "# ok", "/etc/hosts", "etc/passwd")
    done = ws.run("snapshot")
    assert done.returncode == 2
    assert done.stderr.startswith(f"systraq: {listfile}:3: 'etc/passwd' is not an absolute")
    assert done.stderr.count("\n") == 1


def test_bad_config_names_file_and_line(ws: Workspace) -> None:
    ws.write_list("pub", str(ws.tree))
    conf = ws.config / "systraq.conf"
    for text, expected in [
        ("[snapshot]\nhash = 'crc32'\n", ":2: snapshot.hash must be one of"),
        ("[snapshot]\n\nlock_timeout = 'soon'\n", ":3: snapshot.lock_timeout must be a number"),
        ("[snapshots]\n", ":1: unknown section [snapshots]"),
        ("[snapshot]\nhash = \n", ": not valid TOML"),
    ]:
        ws.write_config(text)
        done = ws.run("snapshot")
        assert done.returncode == 2, text
        assert done.stderr.startswith(f"systraq: {conf}{expected}"), done.stderr
    assert not (ws.state / "pub" / "snapshot_pub.stat").exists()


def test_unreadable_config_is_a_clear_error(ws: Workspace) -> None:
    ws.write_list("pub", str(ws.tree))
    conf = ws.write_config("[snapshot]\n")
    conf.chmod(0o600)
    done = ws.run("snapshot", user="nobody")
    assert (done.returncode, done.stderr) == (2, f"systraq: {conf}: cannot read: "
                                                 "Permission denied\n")


def test_environment_variables_set_the_directories(ws: Workspace) -> None:
    ws.write_list("pub", str(ws.tree))
    other = ws.root / "elsewhere"
    done = ws.run("snapshot", env={"SYSTRAQ_STATE_DIR": str(other)})
    assert done.returncode == 0
    # The command-line option wins over the environment, as with every global option.
    assert (ws.state / "pub" / "snapshot_pub.stat").exists() and not other.exists()
    done = run_in_process(["snapshot"], cwd=ws.root, env={
        "SYSTRAQ_CONFIG_DIR": str(ws.config), "SYSTRAQ_STATE_DIR": str(other)})
    assert done.returncode == 0, done.stderr
    assert (other / "pub" / "snapshot_pub.stat").exists()
    assert "SYSTRAQ_STATE_DIR" not in os.environ, "the run's environment was its own"


def test_terminal_run_shows_a_one_line_summary(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    ws.write_list("pub", str(ws.tree), str(ws.tree / "nothing-*"))
    out = io.StringIO()
    terminal = Terminal(out=out, err=io.StringIO(), interactive=True)
    settings = load_settings(ws.config, ws.state)
    with terminal.scan_progress("snapshot pub") as progress:
        result = take_snapshot(settings, "pub", progress=progress)
    terminal.snapshot_summary(result)
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out.getvalue())
    summary = plain.strip().splitlines()[-1]
    assert summary.startswith("snapshot pub: ") and "entries" in summary
    assert "1 list lines matching nothing" in summary
    assert summary.endswith(str(ws.state / "pub" / "snapshot_pub.stat"))


def test_help_and_version(ws: Workspace) -> None:
    assert "snapshot" in ws.run("--help").stdout
    assert ws.run("--version").stdout.startswith("systraq, version ")
    assert "--mode [pub|root|all]" in ws.run("snapshot", "--help").stdout


def test_pub_snapshot_taken_by_root_can_be_replaced_by_the_pub_account(ws: Workspace) -> None:
    needs_root()
    # The recommended state dir: sticky, so the pub account cannot touch root's files.
    ws.state.chmod(0o1777)
    ws.write_list("pub", str(ws.tree))
    nobody = pwd.getpwnam("nobody").pw_uid
    assert ws.run("snapshot").returncode == 0
    assert (ws.state / "pub" / "snapshot_pub.stat").stat().st_uid == nobody
    before = (ws.state / "pub" / "snapshot_pub.stat").stat().st_ino
    done = ws.run("snapshot", user="nobody")
    assert (done.returncode, done.stderr) == (0, "")
    assert (ws.state / "pub" / "snapshot_pub.stat").stat().st_ino != before
    ws.write_list("root", str(ws.tree))
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    assert (ws.state / "root" / "snapshot_root.stat").stat().st_uid == 0


def test_state_dir_not_writable_is_a_clear_error(ws: Workspace) -> None:
    ws.write_list("pub", str(ws.tree))
    ws.state.chmod(0o755)  # root's, not writable by nobody
    done = ws.run("snapshot", user="nobody")
    assert done.returncode == 2
    assert done.stderr == (f"systraq: {ws.state}/pub: cannot create: Permission denied "
                           "(set the state directory up as root: systraq init)\n")
