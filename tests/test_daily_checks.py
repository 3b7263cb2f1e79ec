"""systraq daily's checks: setuid/setgid and world-writable from the snapshots, shell
start-up files, local checksums (against sha256sum -c), local parts, the history chart,
what still differs from the baseline."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import pytest

from .conftest import Workspace, needs_root
from .dailykit import FakeSystem, block, daily_json, section


@pytest.fixture
def system(ws: Workspace) -> FakeSystem:
    return FakeSystem(ws.root / "sys")


def configure(ws: Workspace, text: str) -> None:
    ws.write_config(text)


def run_ok(ws: Workspace, *args: str) -> None:
    done = ws.run(*args)
    assert done.returncode in (0, 1), done.stderr


# --- setuid/setgid and world-writable, from the snapshots -------------------------------------

def test_setuid_changes_since_the_baseline_and_world_writable_entries(
        ws: Workspace, system: FakeSystem) -> None:
    tool, plain = ws.tree / "tool", ws.tree / "plain"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o4755)
    plain.write_text("x\n")
    plain.chmod(0o755)
    (ws.tree / "gone").write_text("y\n")
    (ws.tree / "gone").chmod(0o2755)
    ws.write_list("pub", str(ws.tree))
    run_ok(ws, "snapshot")
    run_ok(ws, "baseline")
    plain.chmod(0o4755)  # became setuid
    (ws.tree / "gone").unlink()
    new = ws.tree / "new"
    new.write_text("z\n")
    new.chmod(0o6755)
    tool.write_text("#!/bin/sh\necho replaced\n")  # a setuid file's content changed
    tool.chmod(0o4755)
    (ws.tree / "drop").mkdir()
    (ws.tree / "drop").chmod(0o777)
    (ws.tree / "tmp").mkdir()
    (ws.tree / "tmp").chmod(0o1777)
    (ws.tree / "open").write_text("w\n")
    (ws.tree / "open").chmod(0o666)
    run_ok(ws, "snapshot")
    document = daily_json(ws, system.root)
    changes = block(document, "security", "pub: setuid/setgid")["lines"]
    assert changes == [
        f"vanished: {ws.tree}/gone (was 2755 root:root)",
        f"appeared: {ws.tree}/new (6755 root:root)",
        f"became setuid/setgid: {ws.tree}/plain (4755 root:root)",
        f"changed (hash, size): {ws.tree}/tool (4755 root:root)",
    ] if os.geteuid() == 0 else changes
    writable = block(document, "security", "pub: world-writable")["lines"]
    assert [w.split(" (")[0] for w in writable] == [f"directory {ws.tree}/drop",
                                                    f"file {ws.tree}/open"]
    texts = [a["text"] for a in document["attention"]]
    assert "4 setuid/setgid changes since the pub baseline" in texts
    assert "2 world-writable entries in the pub snapshot" in texts


def test_without_a_baseline_or_a_snapshot_the_checks_say_why(ws: Workspace,
                                                             system: FakeSystem) -> None:
    found = section(daily_json(ws, system.root), "security")["blocks"][0]
    assert found["unavailable"] == "no snapshot yet: run 'systraq snapshot'"
    ws.write_list("pub", str(ws.tree))
    run_ok(ws, "snapshot")
    found = block(daily_json(ws, system.root), "security", "pub: setuid/setgid")
    assert found["unavailable"] == "no pub baseline yet (accept one with 'systraq baseline')"


def test_the_root_snapshot_unreadable_as_nobody_is_one_line(ws: Workspace,
                                                            system: FakeSystem) -> None:
    needs_root()
    ws.write_list("root", str(ws.tree))
    run_ok(ws, "snapshot", "--mode", "root")
    found = block(daily_json(ws, system.root, user="nobody"), "security", "root:")
    assert found["unavailable"] == "root snapshot: not readable by this user"


# --- shell start-up files ---------------------------------------------------------------------

def test_loose_umask_and_unsafe_path_in_startup_files(ws: Workspace, system: FakeSystem
                                                      ) -> None:
    system.add_account("alice", 1000, "/home/alice")
    system.add_account("bob", 1001, "/home/bob")
    system.add_account("eve", 1002, "/home/eve")
    system.write("etc/profile", 'PATH="/usr/local/bin:/usr/bin::/bin"\nexport PATH\n')
    system.write("etc/login.defs", "UMASK\t\t022\nENV_PATH\tPATH=/usr/bin:/bin\n")
    system.write("etc/profile.d/local.sh", "umask 002\n")
    system.write("etc/skel/.bashrc", 'PATH="$HOME/bin:$PATH"\numask 022\n# umask 000\n')
    system.write("home/alice/.bashrc", "umask 000\nexport PATH=.:$PATH\n")
    system.write("home/alice/.cshrc", "set path = ( /usr/bin bin )\n")
    system.write("home/bob/.profile", "umask 0002\n", mode=0o600)
    # A home that is a symlink is not followed (eve could point it anywhere).
    elsewhere = system.dir("elsewhere")
    (elsewhere / ".profile").write_text("umask 000\n")
    os.rmdir(system.root / "home/eve")
    os.symlink(elsewhere, system.root / "home/eve")
    document = daily_json(ws, system.root)
    found = block(document, "security", "shell start-up files")["lines"]
    assert found == [
        "/etc/profile:1: PATH with an empty entry: \"/usr/local/bin:/usr/bin::/bin\"",
        "/etc/profile.d/local.sh:1: umask looser than 022: 002",
        "/home/alice/.bashrc:1: umask looser than 022: 000",
        '/home/alice/.bashrc:2: PATH with ".": .:$PATH',
        "/home/alice/.cshrc:1: path with relative directory 'bin':  /usr/bin bin ",
        # Not readable by everyone: the value is not quoted.
        "/home/bob/.profile:1: umask looser than 022",
    ]
    assert "6 shell start-up lines with a loose umask or an unsafe PATH" in \
        [a["text"] for a in document["attention"]]


# --- local checksums ----------------------------------------------------------------------------

def _tree_with_files(ws: Workspace) -> dict[str, bytes]:
    files = {"bin/tool": b"#!/bin/sh\n", "lib/a b": b"space\n", "lib/new\nline": b"nl\n",
             "lib/back\\slash": b"bs\n", "share/doc": b"doc\n"}
    for name, data in files.items():
        path = ws.tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.symlink("/etc/shadow", ws.tree / "bin/link")  # not a regular file: not listed
    return files


def test_sums_update_writes_a_file_sha256sum_checks_clean(ws: Workspace) -> None:
    _tree_with_files(ws)
    done = ws.run("sums", "--update", str(ws.tree / "bin"), str(ws.tree / "lib"),
                  str(ws.tree / "share"))
    assert done.returncode == 0, done.stderr
    sums = ws.state / "systraq.sums"
    lines = sums.read_bytes().splitlines()
    assert len(lines) == 5
    names = [line.split(b"  ", 1)[1] for line in lines]
    assert names == sorted(names)
    assert oct(sums.stat().st_mode & 0o777) == "0o644"
    checked = subprocess.run(["sha256sum", "-c", str(sums)], capture_output=True, cwd="/")
    assert checked.returncode == 0, checked.stdout
    assert ws.run("sums").returncode == 0


def test_sums_reports_failed_and_missing_files_as_sha256sum_does(ws: Workspace) -> None:
    _tree_with_files(ws)
    run_ok(ws, "sums", "--update", str(ws.tree))
    (ws.tree / "bin/tool").write_bytes(b"#!/bin/sh\nevil\n")
    (ws.tree / "share/doc").unlink()
    ours = ws.run("sums")
    assert ours.returncode == 1
    theirs = subprocess.run(["sha256sum", "-c", "--quiet", str(ws.state / "systraq.sums")],
                            capture_output=True, text=True, cwd="/")
    assert ours.stdout.splitlines()[:2] == sorted(theirs.stdout.splitlines(),
                                                  key=lambda x: "open or read" in x)
    assert "WARNING: 1 computed checksum did NOT match" in ours.stdout


def test_the_daily_report_verifies_sums_and_reads_the_original_md5sums(
        ws: Workspace, system: FakeSystem) -> None:
    tool = system.write("usr/local/bin/tool", "#!/bin/sh\n")
    digest = hashlib.sha256(tool.read_bytes()).hexdigest()
    (ws.state / "systraq.sums").write_text(f"{digest}  /usr/local/bin/tool\n"
                                           f"{'0' * 64}  /usr/local/bin/gone\n")
    md5 = hashlib.md5(tool.read_bytes()).hexdigest()
    (ws.state / "systraq.md5sums").write_text(f"{md5} */usr/local/bin/tool\nnot a line\n")
    document = daily_json(ws, system.root)
    lines = section(document, "sums")["blocks"][0]["lines"]
    assert lines[0] == "3 files checked (systraq.sums, systraq.md5sums)"
    assert "/usr/local/bin/gone: FAILED open or read" in lines
    assert any(line.startswith("WARNING: 1 line is improperly formatted") for line in lines)
    assert "1 local checksum FAILED" in [a["text"] for a in document["attention"]]


# --- local parts (CONFIG/systraq.d) -------------------------------------------------------------

def _part(directory, name: str, script: str, owner: int = 0) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(path, owner, owner if owner == 0 else 65534)


def test_local_parts_run_in_order_and_a_failing_or_hanging_one_is_reported(
        ws: Workspace, system: FakeSystem) -> None:
    configure(ws, "[daily]\nextension_timeout = 1\n")
    parts = ws.config / "systraq.d"
    parts.mkdir(mode=0o755)
    _part(parts, "10-hello", "echo hello; echo from $SYSTRAQ_ROOT\n")
    _part(parts, "20-fail", "echo about to fail; exit 3\n")
    _part(parts, "30-hang", "sleep 30 & sleep 30\n")
    _part(parts, "40-after", "echo after\n")
    _part(parts, "50-skipped.sh", "echo never\n")  # not a run-parts name
    document = daily_json(ws, system.root)
    extensions = [s for s in document["sections"] if s["key"].startswith("extension:")]
    assert [s["title"] for s in extensions] == ["10-hello", "20-fail", "30-hang", "40-after"]
    assert extensions[0]["blocks"][0]["lines"] == ["hello", f"from {system.root}"]
    assert extensions[1]["blocks"][0]["lines"] == ["about to fail", "exited with status 3"]
    assert extensions[2]["blocks"][0]["lines"] == ["killed after 1s: it did not finish"]
    assert extensions[3]["blocks"][0]["lines"] == ["after"]
    texts = [a["text"] for a in document["attention"]]
    assert "local part 20-fail failed (status 3)" in texts
    assert "local part 30-hang did not finish within 1s" in texts


def test_a_part_not_owned_by_root_runs_unprivileged(ws: Workspace, system: FakeSystem) -> None:
    needs_root()
    parts = ws.config / "systraq.d"
    parts.mkdir(mode=0o755)
    _part(parts, "10-mine", "id -u\n")
    _part(parts, "20-theirs", "id -u\n", owner=65534)
    document = daily_json(ws, system.root)
    mine, theirs = [s for s in document["sections"] if s["key"].startswith("extension:")]
    assert mine["blocks"][0]["lines"] == ["0"]
    assert theirs["blocks"][0]["lines"] == ["(run as nobody: the file is not root's own)",
                                            "65534"]
    (ws.config / "systraq.d").chmod(0o777)  # a directory others can write: nothing trusted
    document = daily_json(ws, system.root)
    mine = next(s for s in document["sections"] if s["key"] == "extension:10-mine")
    assert mine["blocks"][0]["lines"][-1] == "65534"


# --- history and integrity -----------------------------------------------------------------------

def test_changes_per_day_are_counted_once_between_daily_runs(ws: Workspace,
                                                             system: FakeSystem) -> None:
    for name in "abc":
        (ws.tree / name).write_text(name)
    ws.write_list("pub", str(ws.tree))
    run_ok(ws, "snapshot")
    first = daily_json(ws, system.root)
    assert len(first["history"]) == 30 and first["history"][-1]["changes"] == 0
    (ws.tree / "a").write_text("changed")
    (ws.tree / "b").unlink()
    run_ok(ws, "snapshot")
    second = daily_json(ws, system.root)
    assert second["history"][-1]["changes"] == 2
    third = daily_json(ws, system.root)  # nothing new since: the day's count stays
    assert third["history"][-1]["changes"] == 2
    today = time.strftime("%Y-%m-%d")
    assert (ws.state / "root" / "daily.history").read_text().startswith(f"{today} 2 ")


def test_differences_from_the_baseline_are_counted_and_capped(ws: Workspace,
                                                              system: FakeSystem) -> None:
    configure(ws, "[daily]\nmax_lines = 2\n")
    ws.write_list("pub", str(ws.tree))
    run_ok(ws, "snapshot")
    run_ok(ws, "baseline")
    for name in "abcd":
        (ws.tree / name).write_text(name)
    run_ok(ws, "snapshot")
    lines = block(daily_json(ws, system.root), "health", "pub: differences")["lines"]
    assert lines[0].endswith(": 4 added")
    assert lines[1:] == [f"added: {ws.tree}/a", f"added: {ws.tree}/b", "and 2 more"]


def test_filetraq_activity_of_the_day_and_a_failed_run(ws: Workspace, system: FakeSystem
                                                       ) -> None:
    from systraq.config import load_settings
    from systraq.runlog import record

    hosts = ws.tree / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    other = ws.tree / "other"
    other.write_text("1\n")
    (ws.config / "filetraq.conf").write_text(f"{hosts}\n{other}\n")
    run_ok(ws, "filetraq")
    time.sleep(1.1)  # a dated copy per minute at most: the next one must not collide
    hosts.write_text("127.0.0.1 localhost\n10.0.0.1 new\n")
    run_ok(ws, "filetraq")
    found = block(daily_json(ws, system.root), "health", "filetraq in the last day")
    assert found["lines"][0].startswith("1 tracked files changed, 1 first backups; the store "
                                        "holds 3 files")
    record(load_settings(ws.config, ws.state).layout, "filetraq", None, False)
    texts = [a["text"] for a in daily_json(ws, system.root)["attention"]]
    assert any(t.startswith("the last filetraq run failed") for t in texts)
    assert not any("has not run" in t for t in texts)  # it succeeded minutes ago
