"""Files whose apparent size is not their data: time follows the data, every change shows.

A user can make a file of many TiB that costs no disk (``truncate -s 15T``) and put it where
systraq looks (``~/.ssh/authorized_keys2``). Run through the CLI, as root (root mode) and
as ``nobody`` (pub mode, through setpriv). The subprocess timeouts only keep a regression
from hanging the suite for hours; speed is measured in bench/.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from systraq.snapshot.state import read_state

from .conftest import Workspace, needs_root

TIB = 1 << 40
MIB = 1 << 20
GUARD = 300  # seconds: hashing 15 TiB of holes would take many hours


def mode_for(user: str) -> str:
    if user == "root":
        needs_root()
        return "root"
    return "pub"


def run(ws: Workspace, user: str, *args: str) -> subprocess.CompletedProcess:
    mode = mode_for(user)
    return ws.run(*args, "--mode", mode, user=None if user == "root" else user, timeout=GUARD)


def snapshot(ws: Workspace, user: str) -> dict[bytes, object]:
    done = run(ws, user, "snapshot")
    assert done.returncode == 0, done.stderr
    mode = mode_for(user)
    mine = os.fsencode(ws.tree)
    return {e.path: e for e in read_state(ws.state / mode / f"snapshot_{mode}.stat")[1]
            if e.path.startswith(mine)}


def write_at(path: Path, offset: int, data: bytes) -> None:
    """Write in place, then put mtime back (as a careful intruder would)."""
    st = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def sparse_keys(ws: Workspace) -> Path:
    home_ssh = ws.tree / "home" / ".ssh"
    home_ssh.mkdir(parents=True)
    huge = home_ssh / "authorized_keys2"
    with open(huge, "wb") as handle:
        handle.write(b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 user@host\n")
        handle.seek(7 * TIB)
        handle.write(b"more data far away\n")
        handle.truncate(15 * TIB)
    huge.chmod(0o644)
    return huge


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_sparse_file_of_15_tib_is_hashed_by_its_data_and_a_change_is_reported(
        ws: Workspace, user: str) -> None:
    huge = sparse_keys(ws)
    ws.write_list(mode_for(user), str(ws.tree))
    entry = snapshot(ws, user)[os.fsencode(huge)]
    assert entry.status == "ok" and entry.size == 15 * TIB
    assert entry.hash.startswith("sparse:") and len(entry.hash) == len("sparse:") + 64
    assert run(ws, user, "diff").returncode == 1  # the first report
    write_at(huge, 7 * TIB + 5, b"DATA")
    snapshot(ws, user)
    report = run(ws, user, "diff", "--format", "json")
    assert report.returncode == 1, report.stderr
    change, = json.loads(report.stdout)["changes"]
    assert change["path"] == str(huge) and change["kind"] == "changed"
    assert change["fields"]["hash"]["old"] == entry.hash
    assert change["fields"]["hash"]["new"].startswith("sparse:")
    assert run(ws, user, "diff").stdout == ""


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_ordinary_files_keep_the_value_sha256sum_prints(ws: Workspace, user: str) -> None:
    plain = ws.tree / "plain"
    plain.write_bytes(os.urandom(3 * MIB + 17))
    holey = ws.tree / "few-holes"
    with open(holey, "wb") as handle:
        handle.write(b"head")
        handle.seek(20 * MIB)
        handle.write(b"tail")
    ws.write_list(mode_for(user), str(ws.tree))
    entries = snapshot(ws, user)
    for path in (plain, holey):
        shown = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True,
                               check=True).stdout.split()[0]
        assert entries[os.fsencode(path)].hash == shown


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_file_over_the_hash_limit_says_so_in_state_report_and_json(ws: Workspace,
                                                                   user: str) -> None:
    ws.write_config(f"[snapshot]\nhash_limit = {MIB}\n")
    ws.write_list(mode_for(user), str(ws.tree))
    (ws.tree / "small").write_bytes(b"x")
    snapshot(ws, user)
    assert run(ws, user, "diff").returncode == 1  # the first report
    big = ws.tree / "big"
    big.write_bytes(os.urandom(3 * MIB))
    big.chmod(0o644)
    entry = snapshot(ws, user)[os.fsencode(big)]
    head = subprocess.run(f"head -c {MIB} {big} | sha256sum", shell=True, capture_output=True,
                          text=True, check=True).stdout.split()[0]
    assert (entry.status, entry.hash) == ("partial", f"first={MIB}:{head}")

    text = run(ws, user, "diff", "--no-record")
    assert f"  {big}  (file 0644" in text.stdout
    assert "content hashed only in part (over snapshot.hash_limit)" in text.stdout
    added = json.loads(run(ws, user, "diff", "--format", "json").stdout)["changes"][0]
    assert added["kind"] == "added"
    assert added["fields"]["status"]["new"] == "partial"
    assert added["fields"]["hash"]["new"] == f"first={MIB}:{head}"

    # Within the hashed part: the hash shows it.
    write_at(big, 10, b"CHANGED")
    snapshot(ws, user)
    changed = run(ws, user, "diff").stdout
    assert f"  {big}\n      content changed (same size, {3 * MIB})" in changed
    # Past it, with mtime put back: ctime still shows it.
    write_at(big, 2 * MIB, b"CHANGED")
    snapshot(ws, user)
    past = run(ws, user, "diff", "--format", "json")
    assert past.returncode == 1
    change, = json.loads(past.stdout)["changes"]
    assert change["path"] == str(big) and set(change["fields"]) == {"ctime"}


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_file_that_grows_past_the_hash_limit_is_reported_once(ws: Workspace,
                                                             user: str) -> None:
    ws.write_config(f"[snapshot]\nhash_limit = {MIB}\n")
    log = ws.tree / "log"
    log.write_bytes(b"a" * 1000)
    log.chmod(0o644)
    ws.write_list(mode_for(user), str(ws.tree))
    snapshot(ws, user)
    run(ws, user, "diff")
    with open(log, "ab") as handle:
        handle.write(b"b" * 2 * MIB)
    snapshot(ws, user)
    report = run(ws, user, "diff").stdout
    assert "content hashed only in part (over snapshot.hash_limit) from now on" in report
    assert f"size 1000 → {1000 + 2 * MIB}" in report
    snapshot(ws, user)
    assert run(ws, user, "diff").stdout == ""
