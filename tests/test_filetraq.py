"""systraq filetraq: what an administrator sees, run by run, on a real file system."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from pathlib import Path

import pytest

from systraq.config import load_settings
from systraq.filetraq.job import run_filetraq
from systraq.filetraq.store import dated_name
from systraq.render import Terminal

from .conftest import Workspace, needs_root
from .filetraq_support import (
    DATED,
    dated_copies,
    run_in_process,
    store_of,
    stored,
    write_conf,
    write_list,
)


def filetraq(ws: Workspace, *args: str, **kwargs):
    return ws.run("filetraq", *args, **kwargs)


@pytest.fixture
def hosts(ws: Workspace) -> Path:
    path = ws.tree / "hosts"
    path.write_text("127.0.0.1 localhost\n::1 localhost\n")
    write_list(ws, "# the files whose content matters", str(path))
    return path


def test_first_run_creates_backups_and_says_so_in_filetraqs_words(ws, hosts):
    result = filetraq(ws)
    assert result.returncode == 1, result.stderr
    assert result.stdout == f"Creating first backup of {hosts}.\n"
    assert result.stderr == ""
    assert stored(ws, hosts).read_bytes() == hosts.read_bytes()


def test_nothing_changed_prints_nothing_and_exits_0(ws, hosts):
    filetraq(ws)
    hosts.touch()  # a touch alone changes no content
    result = filetraq(ws)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_text_change_shows_a_unified_diff_old_to_new_and_keeps_the_old_version(ws, hosts):
    filetraq(ws)
    old = hosts.read_bytes()
    hosts.write_text("127.0.0.1 localhost\n10.0.0.7 db\n::1 localhost\n")
    before = time.time()
    result = filetraq(ws, env={"TZ": "UTC"})
    after = time.time()
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    kept = lines[0].split("kept as ")[1].rstrip("):")
    assert kept in {dated_name(time.gmtime(t)).decode() for t in (before, after)}
    assert lines[0] == f"Changes in {hosts} (previous version kept as {kept}):"
    assert lines[1].startswith(f"--- {stored(ws, hosts)}\t")
    assert lines[2].startswith(f"+++ {hosts}\t")
    assert lines[3:] == ["@@ -1,2 +1,3 @@", " 127.0.0.1 localhost", "+10.0.0.7 db",
                         " ::1 localhost"]
    assert stored(ws, hosts).read_bytes() == hosts.read_bytes()
    assert stored(ws, hosts, kept).read_bytes() == old
    assert filetraq(ws).returncode == 0


def test_second_change_in_the_same_minute_keeps_every_version(ws, hosts):
    minute = time.mktime((2026, 11, 23, 15, 4, 0, 0, 0, -1))
    versions = [hosts.read_bytes()]
    run_in_process(ws, clock=minute)
    for second, text in enumerate(["one\n", "two\n", "three\n"]):
        hosts.write_text(text)
        versions.append(hosts.read_bytes())
        report, shown = run_in_process(ws, clock=minute + second)
        assert report.status == 1
    assert dated_copies(ws, hosts) == ["orig-2.11.23.26__15.04", "orig-3.11.23.26__15.04",
                                       "orig.11.23.26__15.04"]
    kept = [stored(ws, hosts, name).read_bytes() for name in
            ("orig.11.23.26__15.04", "orig-2.11.23.26__15.04", "orig-3.11.23.26__15.04")]
    assert kept + [stored(ws, hosts).read_bytes()] == versions
    assert "kept as orig-3.11.23.26__15.04" in shown


def test_context_style_and_newold_order_are_settings_for_migrating_users(ws, hosts):
    write_conf(ws, '[filetraq]\ndiff_style = "context"\ndiff_order = "newold"\n')
    filetraq(ws)
    hosts.write_text("127.0.0.1 localhost\n::1 localhost6\n")
    lines = filetraq(ws).stdout.splitlines()
    # As `diff -p -C 1 NEW BACKUP`, Debian filetraq's defaults, prints it.
    assert lines[1].startswith(f"*** {hosts}\t")
    assert lines[2].startswith(f"--- {stored(ws, hosts)}\t")
    assert lines[3:] == ["***************", "*** 1,2 ****", "  127.0.0.1 localhost",
                         "! ::1 localhost6", "--- 1,2 ----", "  127.0.0.1 localhost",
                         "! ::1 localhost"]


def test_binary_change_is_told_by_sizes_and_hashes_never_by_its_bytes(ws):
    blob = ws.tree / "blob"
    blob.write_bytes(b"\0MAGIC-OLD-BYTES\0")
    write_list(ws, str(blob))
    filetraq(ws)
    blob.write_bytes(b"\0MAGIC-NEW-BYTES\0\0")
    result = filetraq(ws)
    assert result.returncode == 1
    assert "MAGIC" not in result.stdout
    assert result.stdout.splitlines()[0].startswith(f"Binary file {blob} changed")
    assert "  was 17 bytes, sha256 " in result.stdout
    assert "  now 18 bytes, sha256 " in result.stdout
    assert stored(ws, blob).read_bytes() == blob.read_bytes()


def test_file_over_the_size_limit_is_tracked_by_size_and_first_bytes(ws):
    write_conf(ws, "[filetraq]\nmax_size = 100\n")
    big = ws.tree / "big.log"
    big.write_bytes(b"A" * 101)
    write_list(ws, str(big))
    first = filetraq(ws)
    assert first.returncode == 1
    assert first.stdout.startswith(f"{big}: 101 bytes, over the 100-byte limit: content "
                                   "tracked by size and the hash of its first 100 bytes "
                                   "only (sha256 of the first 100 bytes ")
    assert not stored(ws, big).parent.exists()
    assert filetraq(ws).stdout == ""
    big.write_bytes(b"B" * 150)
    changed = filetraq(ws)
    assert changed.stdout.splitlines()[0] == (f"Large file {big} changed (tracked by size "
                                              "and the hash of its first bytes only):")
    assert "was 101 bytes" in changed.stdout and "now 150 bytes" in changed.stdout
    assert "BBB" not in changed.stdout
    assert filetraq(ws).stdout == ""


def test_file_not_readable_by_everyone_is_noted_once_then_tracked_when_it_becomes_so(ws):
    conf = ws.tree / "app.conf"
    conf.write_text("token = 1234\n")
    conf.chmod(0o640)
    write_list(ws, str(conf))
    first = filetraq(ws)
    assert first.stdout == (f"{conf}: not readable by everyone (mode 0640): content not "
                            "tracked.\n")
    assert filetraq(ws).stdout == ""
    conf.chmod(0o644)
    assert filetraq(ws).stdout == f"Creating first backup of {conf}.\n"
    conf.chmod(0o600)
    assert "not readable by everyone (mode 0600)" in filetraq(ws).stdout
    assert filetraq(ws).stdout == ""


def test_removed_file_is_reported_once(ws, hosts):
    filetraq(ws)
    hosts.unlink()
    result = filetraq(ws)
    assert (result.returncode, result.stdout) == (1, f"{hosts}: removed.\n")
    assert (filetraq(ws).returncode, filetraq(ws).stdout) == (0, "")
    assert stored(ws, hosts).exists(), "the last backup stays in the store"


def test_file_dropped_from_the_list_is_forgotten_silently(ws, hosts):
    filetraq(ws)
    write_list(ws, "# nothing any more")
    assert filetraq(ws).stdout == ""
    write_list(ws, str(hosts))
    assert filetraq(ws).stdout == ""


def test_list_line_that_matches_nothing_is_reported_once(ws, hosts):
    list_file = write_list(ws, str(hosts), str(ws.tree / "nothing*"))
    result = filetraq(ws)
    assert result.stdout.splitlines()[-1] == \
        f"No file matches {ws.tree}/nothing* ({list_file}, line 2)."
    assert filetraq(ws).stdout == ""
    (ws.tree / "nothing-1").write_text("now\n")
    assert filetraq(ws).stdout == f"Creating first backup of {ws.tree}/nothing-1.\n"
    (ws.tree / "nothing-1").unlink()
    assert filetraq(ws).stdout == f"{ws.tree}/nothing-1: removed.\n"
    assert filetraq(ws).stdout == ""


def test_listed_symlink_is_noted_not_followed_and_again_when_it_points_elsewhere(ws, hosts):
    link = ws.tree / "hosts.link"
    link.symlink_to(hosts)
    write_list(ws, str(link))
    assert filetraq(ws).stdout == f"{link}: symlink to {hosts}, not followed.\n"
    assert filetraq(ws).stdout == ""
    link.unlink()
    link.symlink_to("/etc/hostname")
    assert filetraq(ws).stdout == (f"{link}: symlink now points to /etc/hostname (was "
                                   f"{hosts}), not followed.\n")
    assert not stored(ws, link).parent.exists()


def test_listed_directory_means_every_file_below_it(ws):
    (ws.tree / "d" / "sub").mkdir(parents=True)
    (ws.tree / "d" / "a").write_text("a\n")
    (ws.tree / "d" / "sub" / "b").write_text("b\n")
    write_list(ws, str(ws.tree / "d"))
    assert filetraq(ws).stdout == (f"Creating first backup of {ws.tree}/d/a.\n"
                                   f"Creating first backup of {ws.tree}/d/sub/b.\n")


def test_json_report_carries_the_same_facts(ws, hosts):
    filetraq(ws)
    hosts.write_text("changed\n")
    result = filetraq(ws, "--format", "json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["status"] == 1 and data["problems"] == []
    [item] = data["items"]
    assert item["path"] == str(hosts) and item["event"] == "changed"
    assert DATED.fullmatch(item["kept_as"])
    assert "+changed\n" in item["diff"]
    assert item["new"] == {"size": 8, "sha256": hashlib.sha256(b"changed\n").hexdigest()}
    assert item["text"].startswith(f"Changes in {hosts}")
    quiet = filetraq(ws, "--format", "json")
    assert quiet.returncode == 0 and json.loads(quiet.stdout)["items"] == []


def test_prune_deletes_only_dated_copies_older_than_the_age(ws, hosts):
    filetraq(ws)
    directory = stored(ws, hosts).parent
    old = time.localtime(time.time() - 90 * 86400)
    recent = time.localtime(time.time() - 10 * 86400)
    for name in (dated_name(old), dated_name(old, 2), dated_name(recent)):
        (directory / name.decode()).write_text("kept before\n")
    (directory / "notes.txt").write_text("not a dated copy\n")
    result = filetraq(ws, "--prune")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert sorted(os.listdir(directory)) == sorted(["orig", dated_name(recent).decode(),
                                                    "notes.txt"])
    pruned = filetraq(ws, "--prune", "--older-than", "5", "--format", "json")
    assert json.loads(pruned.stdout)["removed"] == [f"{directory}/{dated_name(recent).decode()}"]
    assert sorted(os.listdir(directory)) == ["notes.txt", "orig"]


def test_store_is_no_wider_than_its_sources(ws):
    write_conf(ws, "[filetraq]\ndir_mode = 0o750\n")
    shared = ws.tree / "shared.conf"
    shared.write_text("anyone may write this\n")
    shared.chmod(0o666)
    script = ws.tree / "tool"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o4755)
    write_list(ws, str(shared), str(script))
    filetraq(ws)
    assert stored(ws, shared).stat().st_mode & 0o7777 == 0o664
    assert stored(ws, script).stat().st_mode & 0o7777 == 0o755
    created = stored(ws, shared).parent
    while created != store_of(ws):
        assert created.stat().st_mode & 0o777 == 0o750, created
        created = created.parent


def test_root_run_on_the_systraq_users_store_leaves_it_theirs(ws, hosts):
    needs_root()
    store = store_of(ws)
    store.mkdir()
    os.chown(store, 65534, 65534)
    result = filetraq(ws)
    assert result.returncode == 1, result.stderr
    owners = {(p.stat().st_uid) for p in store.rglob("*")}
    assert owners == {65534}
    nobody = ws.run("filetraq", user="nobody")
    assert (nobody.returncode, nobody.stdout, nobody.stderr) == (0, "", "")


def test_store_made_by_root_in_the_systraq_users_state_dir_is_theirs(ws, hosts):
    needs_root()
    os.chown(ws.state, 65534, 65534)
    assert filetraq(ws).returncode == 1
    assert {p.stat().st_uid for p in [store_of(ws), *store_of(ws).rglob("*")]} == {65534}


def test_private_file_with_an_earlier_copy_in_the_store_is_pointed_out(ws, hosts):
    filetraq(ws)  # the copy a tool made while the file was readable (or Debian's, as root)
    hosts.chmod(0o600)
    result = filetraq(ws)
    assert result.stdout == (f"{hosts}: not readable by everyone (mode 0600): content not "
                             "tracked (the backup store holds an earlier copy).\n")


def test_failed_delivery_records_nothing_so_the_next_run_reports_again(ws, hosts):
    def broken(report):
        raise OSError(5, "mail system down")

    with pytest.raises(OSError):
        run_filetraq(load_settings(ws.config, ws.state), show=broken)
    assert not stored(ws, hosts).exists()
    assert filetraq(ws).stdout == f"Creating first backup of {hosts}.\n"


def test_corrupt_memory_of_notices_is_a_warning_and_is_rebuilt(ws, hosts):
    filetraq(ws)
    (store_of(ws) / ".systraq" / "seen").write_text("garbage\n")
    result = filetraq(ws)
    assert result.returncode == 0
    assert result.stderr == (f"systraq: warning: {store_of(ws)}/.systraq/seen: line 1: not a "
                             "systraq filetraq memory (or another version); starting afresh "
                             "(some notices may repeat)\n")
    assert filetraq(ws).stderr == ""


@pytest.mark.parametrize("case", ["missing list", "missing given list", "backupdir is a file",
                                  "missing backupdir", "list with NUL", "relative path",
                                  "list is a directory", "unreadable list"])
def test_bad_input_gets_one_line_naming_the_file_and_exit_2(ws, case):
    args: list[str] = []
    user = None
    if case == "missing list":
        expected = f"systraq: {ws.config}/filetraq.conf: no such file: list the files "
    elif case == "missing given list":
        args = [str(ws.config / "typo.conf")]
        expected = f"systraq: {ws.config}/typo.conf: cannot read: No such file or directory"
    elif case == "backupdir is a file":
        args = [str(write_list(ws, "/etc/hosts")), str(ws.tree / "file")]
        (ws.tree / "file").write_text("")
        expected = f"systraq: {ws.tree}/file: backup directory: not a directory"
    elif case == "missing backupdir":
        args = [str(write_list(ws, "/etc/hosts")), str(ws.tree / "nope")]
        expected = f"systraq: {ws.tree}/nope: backup directory: no such directory"
    elif case == "list with NUL":
        args = [str(write_list(ws, "/etc/hosts", b"/etc/pass\0wd"))]
        expected = f"systraq: {ws.config}/filetraq.conf:2: a NUL byte cannot be part of a path"
    elif case == "relative path":
        args = [str(write_list(ws, "# comment", "etc/hosts"))]
        expected = f"systraq: {ws.config}/filetraq.conf:2: 'etc/hosts' is not an absolute path"
    elif case == "list is a directory":
        args = [str(ws.tree)]
        expected = "Error: Invalid value for '[FILELIST]'"
    else:
        needs_root()
        write_list(ws, "/etc/hosts").chmod(0o600)
        user = "nobody"
        expected = f"systraq: {ws.config}/filetraq.conf: cannot read: Permission denied"
    result = filetraq(ws, *args, user=user)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    assert len([ln for ln in result.stderr.splitlines() if ln.startswith(("systraq", "Err"))]) \
        == 1


def test_terminal_shows_content_literally_never_as_markup(ws):
    conf = ws.tree / "app.conf"
    conf.write_text("[bold]plain[/bold]\n")
    write_list(ws, str(conf))
    run_in_process(ws)
    conf.write_text("[red]x[/red] [link=http://evil]y[/link]\n")
    report, _ = run_in_process(ws)
    out = io.StringIO()
    Terminal(out=out, err=io.StringIO(), interactive=True).filetraq_report(report)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    assert "-[bold]plain[/bold]" in shown
    assert "+[red]x[/red] [link=http://evil]y[/link]" in shown
    assert "listed paths checked" in shown
