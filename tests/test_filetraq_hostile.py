"""systraq filetraq against hostile file systems: no secret leaks, no hang, no injection."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from systraq.filetraq.listing import Lister

from .conftest import Workspace, needs_root
from .filetraq_support import (
    assert_secret_nowhere,
    run_in_process,
    store_of,
    stored,
    write_list,
)
from .runner import lock_held_by_its_owner, wait_until_all_have_open

SECRET = b"S3CRET-ssh-rsa-AAAAB3NzaC1yc2E-do-not-leak"


def filetraq(ws: Workspace, *args: str, **kwargs):
    return ws.run("filetraq", *args, **kwargs)


@pytest.fixture
def secret_file(ws: Workspace) -> Path:
    path = ws.tree / "id_rsa"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o600)
    return path


def test_listed_symlink_to_a_0600_file_is_not_followed_even_by_root(ws, secret_file):
    needs_root()
    link = ws.tree / "innocent.conf"
    link.symlink_to(secret_file)
    write_list(ws, str(link), str(ws.tree / "innocent*"))
    result = filetraq(ws)
    assert result.returncode == 1
    assert result.stdout == f"{link}: symlink to {secret_file}, not followed.\n"
    secret_file.chmod(0o644)  # even when it becomes readable, the link is not followed
    secret_file.write_bytes(SECRET + b" changed\n")
    assert filetraq(ws).stdout == ""
    secret_file.chmod(0o600)
    assert_secret_nowhere(SECRET, result, store_of(ws))


def test_world_readable_file_inside_a_private_directory_is_not_copied_even_by_root(ws):
    needs_root()
    private = ws.tree / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    inner = private / "notes.txt"
    inner.write_bytes(SECRET + b"\n")
    inner.chmod(0o644)
    write_list(ws, str(inner), str(private / "*"), str(private))
    result = filetraq(ws)
    assert result.returncode == 1
    # Root reads as the pub account: the glob cannot even be expanded, as for that account.
    assert result.stdout.splitlines() == [
        f"{private}: not readable by everyone (directory mode 0700: the files in it are not "
        "tracked): content not tracked.",
        f"{private}/*: not readable by everyone (directory {private} is not searchable by "
        "everyone): content not tracked.",
        f"{inner}: not readable by everyone (directory {private} is not searchable by "
        "everyone): content not tracked."]
    inner.write_bytes(SECRET + b" v2\n")
    again = filetraq(ws)
    assert (again.returncode, again.stdout) == (0, "")
    assert_secret_nowhere(SECRET, result, store_of(ws))
    assert_secret_nowhere(SECRET, again, store_of(ws))


def test_unprivileged_run_says_the_same_as_root_and_leaks_nothing(ws, secret_file):
    needs_root()
    private = ws.tree / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    (private / "inner").write_bytes(SECRET)
    (private / "inner").chmod(0o644)
    (ws.tree / "public").write_text("public\n")
    list_file = write_list(ws, str(secret_file), str(private / "inner"),
                           str(ws.tree / "public"))
    root_store = ws.root / "root-store"
    root_store.mkdir()
    as_root = filetraq(ws, str(list_file), str(root_store))
    store = store_of(ws)
    store.mkdir()
    os.chown(store, 65534, 65534)
    as_nobody = filetraq(ws, user="nobody")
    assert as_nobody.returncode == 1, as_nobody.stderr
    assert as_nobody.stdout == as_root.stdout
    assert f"{secret_file}: not readable by everyone (mode 0600)" in as_nobody.stdout
    for result, root in ((as_root, root_store), (as_nobody, store)):
        assert_secret_nowhere(SECRET, result, root)


def test_listed_fifo_is_noted_never_opened(ws):
    fifo = ws.tree / "pipe"
    os.mkfifo(fifo)
    write_list(ws, str(fifo), str(ws.tree / "*"))
    result = filetraq(ws, timeout=20)
    assert result.returncode == 1
    assert result.stdout == f"{fifo}: fifo, not a regular file: content not tracked.\n"
    assert filetraq(ws, timeout=20).stdout == ""


def _writable_by_the_pub_account(directory: Path) -> None:
    if os.geteuid() == 0:
        os.chown(directory, 65534, 65534)


def test_file_replaced_by_a_fifo_between_listing_and_reading_does_not_hang(ws, monkeypatch):
    _writable_by_the_pub_account(ws.tree)  # the race runs inside the job, as that account
    victim = ws.tree / "app.conf"
    victim.write_text("x\n")
    write_list(ws, str(victim))
    listed = Lister.list

    def then_swap(self, patterns):
        listing = listed(self, patterns)
        victim.unlink()
        os.mkfifo(victim)
        return listing

    monkeypatch.setattr(Lister, "list", then_swap)
    report, text = run_in_process(ws)
    assert text == f"{victim}: changed while being read; compared again next run.\n"
    assert not stored(ws, victim).exists()


def test_file_vanishing_between_listing_and_reading_is_told_not_a_crash(ws, monkeypatch):
    _writable_by_the_pub_account(ws.tree)  # the race runs inside the job, as that account
    known = ws.tree / "known.conf"
    fresh = ws.tree / "fresh.conf"
    for path in (known, fresh):
        path.write_text("x\n")
    write_list(ws, str(known))
    run_in_process(ws)
    write_list(ws, str(known), str(fresh))
    listed = Lister.list

    def then_delete(self, patterns):
        listing = listed(self, patterns)
        known.unlink()
        fresh.unlink()
        return listing

    monkeypatch.setattr(Lister, "list", then_delete)
    report, text = run_in_process(ws)
    assert report.status == 1 and report.problems == []
    assert text == f"{fresh}: vanished before it could be read.\n{known}: removed.\n"
    monkeypatch.undo()
    assert run_in_process(ws)[1] == f"No file matches {fresh} ({ws.config}/filetraq.conf, " \
        "line 2).\n", "the removed file's own line is not reported again"


def test_name_with_a_newline_cannot_forge_a_report_line(ws):
    odd = ws.tree / "a\nCreating first backup of shadow"
    odd.write_text("content\n")
    write_list(ws, str(ws.tree / "a*"))
    result = filetraq(ws)
    assert result.stdout == (f"Creating first backup of {ws.tree}/a\\nCreating first backup "
                             "of shadow.\n")
    assert stored(ws, odd).read_text() == "content\n"
    odd.write_text("changed\n")
    lines = filetraq(ws).stdout.splitlines()
    assert lines[0].startswith(f"Changes in {ws.tree}/a\\nCreating")
    assert lines[2] == f"+++ {ws.tree}/a\\nCreating first backup of shadow" + \
        lines[2][lines[2].index("\t"):]


def test_file_named_like_a_shell_command_runs_nothing(ws):
    ssh = ws.tree / ".ssh"
    ssh.mkdir()
    names = ["authorized_keys;touch pwned", "authorized_keys$(touch pwned2)",
             "authorized_keys`touch pwned3`"]
    for name in names:
        (ssh / name).write_text("ssh-ed25519 AAAA key\n")
    write_list(ws, str(ssh / "authorized_keys*"), str(ssh / names[0]))
    result = filetraq(ws)
    assert result.returncode == 1
    assert sorted(result.stdout.splitlines()) == sorted(
        f"Creating first backup of {ssh}/{name}." for name in names)
    for root in (ws.root, ws.tree, ssh, Path.cwd()):
        assert not any((root / p).exists() for p in ("pwned", "pwned2", "pwned3"))


def test_symlink_planted_in_the_store_is_refused_not_followed(ws):
    conf = ws.tree / "app.conf"
    conf.write_text("x\n")
    write_list(ws, str(conf))
    elsewhere = ws.root / "elsewhere"
    elsewhere.mkdir()
    store = store_of(ws)
    store.mkdir()
    (store / ws.root.relative_to("/").parts[0]).symlink_to(elsewhere)
    result = filetraq(ws)
    assert result.returncode == 2
    assert "is a symlink or not a directory in the backup store (refusing to follow it)" in \
        result.stderr
    assert list(elsewhere.iterdir()) == []


def test_concurrent_runs_on_one_store_report_each_change_once(ws):
    files = []
    for number in range(150):
        path = ws.tree / f"f{number:03}.conf"
        path.write_text(f"version 1 of {number}\n")
        files.append(path)
    write_list(ws, str(ws.tree / "*.conf"))
    ws.write_config("[snapshot]\nlock_timeout = 60\n")  # however slowly the runs start
    assert ws.run("filetraq", "--prune").returncode == 0  # makes the store and its lock
    store_lock = store_of(ws) / ".systraq" / "lock"

    def race() -> list[subprocess.CompletedProcess]:
        # The lock is held until all four runs wait at it: then they race for it.
        with lock_held_by_its_owner(store_lock):
            runs = [ws.spawn("filetraq") for _ in range(4)]
            wait_until_all_have_open(store_lock, runs)
        return [subprocess.CompletedProcess(r.args, r.wait(60), *r.communicate())
                for r in runs]

    first = race()
    assert all(r.returncode in (0, 1) and r.stderr == "" for r in first), first
    lines = [ln for r in first for ln in r.stdout.splitlines()]
    assert sorted(lines) == sorted(f"Creating first backup of {p}." for p in files)
    # The run that got the lock first did it all; the others found it done.
    assert sorted(len(r.stdout.splitlines()) for r in first) == [0, 0, 0, 150]
    for path in files[::10]:
        path.write_text("version 2\n")
    second = race()
    changes = [[ln for ln in r.stdout.splitlines() if ln.startswith("Changes")] for r in second]
    assert sorted(map(len, changes)) == [0, 0, 0, 15]
    for path in files:
        assert stored(ws, path).read_bytes() == path.read_bytes()


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(name=st.binary(min_size=1, max_size=40).filter(
    lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b"..")))
def test_any_file_name_round_trips_through_the_store_on_one_report_line(ws, name):
    directory = Path(tempfile.mkdtemp(dir=ws.tree))
    directory.chmod(0o755)
    store = Path(tempfile.mkdtemp(dir=ws.root))
    path = os.fsencode(directory) + b"/" + name
    Path(os.fsdecode(path)).write_bytes(name)
    write_list(ws, str(directory))
    report, text = run_in_process(ws, backupdir=store)
    assert report.problems == []
    assert text.count("\n") == 1 and text.startswith("Creating first backup of ")
    assert Path(os.fsdecode(os.fsencode(store) + path + b"/orig")).read_bytes() == name
    os.unlink(path)
    report, text = run_in_process(ws, backupdir=store)
    assert [item.event for item in report.items] == ["removed"] and text.count("\n") == 1
