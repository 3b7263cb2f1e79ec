"""Hostile trees: FIFOs, sockets, loops, links into secrets, odd names, huge files, races.

Every case must finish in seconds, leak no content, record what it met, and exit 0.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from systraq.pathcodec import unescape
from systraq.snapshot.listfiles import Root
from systraq.snapshot.scan import Scanner
from systraq.snapshot.state import read_state

from .conftest import Workspace, entries_of, needs_root

SECRET = b"TOP-SECRET-CONTENT-0123456789"


def snapshot(ws: Workspace, *args: str, user: str | None = None):
    done = ws.run("snapshot", *args, user=user, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == "", "cron-quiet: a good run prints nothing"
    entries = {e.path: e for e in read_state(ws.state / "pub" / "snapshot_pub.stat")[1]}
    # The homes a pub snapshot records are the workspace's own (none unless a test makes one).
    assert all(path.startswith(os.fsencode(ws.root) + b"/") for path in entries)
    return entries


def tree_lines(ws: Workspace) -> list[str]:
    return entries_of(ws.state / "pub" / "snapshot_pub.stat")


def test_fifo_and_socket_are_recorded_not_opened(ws: Workspace) -> None:
    os.mkfifo(ws.tree / "fifo")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(ws.tree / "sock"))
    try:
        ws.write_list("pub", str(ws.tree))
        entries = snapshot(ws)  # opening the FIFO would hang it until its timeout
    finally:
        server.close()
    tree = os.fsencode(ws.tree)
    assert entries[tree + b"/fifo"].type == "p" and entries[tree + b"/fifo"].hash == ""
    assert entries[tree + b"/sock"].type == "s"


def test_symlink_loops_are_recorded_as_links(ws: Workspace) -> None:
    (ws.tree / "a").symlink_to("b")
    (ws.tree / "b").symlink_to("a")
    (ws.tree / "sub").mkdir()
    (ws.tree / "sub" / "up").symlink_to("..")
    ws.write_list("pub", str(ws.tree), str(ws.tree / "sub" / "up" / "sub" / "up"))
    entries = snapshot(ws)
    tree = os.fsencode(ws.tree)
    assert entries[tree + b"/a"].target == b"b"
    assert entries[tree + b"/sub/up"].type == "l"
    assert len(entries) == 5  # tree, a, b, sub, sub/up: the loop is never entered


def test_link_in_a_home_to_a_root_only_file_is_never_opened(ws: Workspace) -> None:
    secret = ws.root / "shadow"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    home = ws.tree / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "authorized_keys").symlink_to(secret)
    (home / ".forward").symlink_to(secret)
    ws.write_list("pub", str(home))
    for user in (None, "nobody"):
        entries = snapshot(ws, user=user)
        link = entries[os.fsencode(home / ".ssh" / "authorized_keys")]
        assert (link.type, link.hash, link.target) == ("l", "", os.fsencode(secret))
        state = (ws.state / "pub" / "snapshot_pub.stat").read_bytes()
        assert hashlib.sha256(SECRET).hexdigest().encode() not in state
        assert SECRET not in state


def test_directory_symlinked_into_a_secret_dir_is_not_entered(ws: Workspace) -> None:
    secret_dir = ws.root / "rootssh"
    secret_dir.mkdir()
    (secret_dir / "id_rsa").write_bytes(SECRET)
    home = ws.tree / "mallory"
    home.mkdir()
    (home / ".ssh").symlink_to(secret_dir)
    ws.write_list("pub", str(home / ".ssh" / "id_rsa"), str(home / ".ssh" / "*"))
    entries = snapshot(ws)
    assert list(entries) == [os.fsencode(home / ".ssh")]
    assert entries[os.fsencode(home / ".ssh")].type == "l"


@pytest.mark.parametrize("name", [b"new\nline", b"tab\there", b"back\\slash", b"latin1-\xe9",
                                  b"\xff\xfe", b" lead space", b"#hash", b"-dash"])
def test_odd_names_round_trip_exactly(ws: Workspace, name: bytes) -> None:
    path = os.fsencode(ws.tree) + b"/" + name
    with open(path, "wb") as handle:
        handle.write(b"content")
    ws.write_list("pub", str(ws.tree))
    entries = snapshot(ws)
    assert entries[path].hash == hashlib.sha256(b"content").hexdigest()
    assert len(tree_lines(ws)) == 2


def test_hashes_match_sha256sum(ws: Workspace) -> None:
    (ws.tree / "empty").write_bytes(b"")
    (ws.tree / "text").write_text("PermitRootLogin no\n")
    (ws.tree / "big").write_bytes(os.urandom(3 << 20))
    ws.write_list("pub", str(ws.tree))
    entries = snapshot(ws)
    for name in ("empty", "text", "big"):
        sums = subprocess.run(["sha256sum", str(ws.tree / name)], capture_output=True,
                              text=True, check=True).stdout.split()[0]
        assert entries[os.fsencode(ws.tree / name)].hash == sums


def test_xxh3_hashes_match_xxhsum(ws: Workspace) -> None:
    if not Path("/usr/bin/xxhsum").exists():
        if os.environ.get("CI"):
            pytest.fail("CI installs xxhash (xxhsum)")
        pytest.skip("xxhsum not installed (apt-get install xxhash)")
    (ws.tree / "f").write_bytes(os.urandom(100_000))
    ws.write_list("pub", str(ws.tree))
    entries = snapshot(ws, "--hash", "xxh3")
    sums = subprocess.run(["xxhsum", "-H2", str(ws.tree / "f")], capture_output=True,
                          text=True, check=True).stdout.split()[0]
    assert entries[os.fsencode(ws.tree / "f")].hash == sums
    assert "#hash\txxh3" in (ws.state / "pub" / "snapshot_pub.stat").read_text()


def test_sparse_4gib_file_is_recorded_by_its_data_not_its_holes(ws: Workspace) -> None:
    big = ws.tree / "sparse"
    subprocess.run(["truncate", "-s", "4G", str(big)], check=True)
    ws.write_list("pub", str(big))
    entries = snapshot(ws)
    # No data at all: the sparse value is the hash of its header line alone.
    expected = hashlib.sha256(b"systraq-sparse-1 %d\n" % (4 << 30)).hexdigest()
    entry = entries[os.fsencode(big)]
    assert entry.size == 4 << 30 and entry.hash == f"sparse:{expected}"


def test_private_file_scanned_unprivileged_is_marked_unreadable(ws: Workspace) -> None:
    secret = ws.tree / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    ws.write_list("pub", str(ws.tree))
    as_nobody = snapshot(ws, user="nobody")[os.fsencode(secret)]
    assert (as_nobody.status, as_nobody.hash, as_nobody.perms) == ("unreadable", "", 0o600)
    assert as_nobody.size == len(SECRET)
    needs_root()
    # Root running the pub scan drops privileges: the same entry, byte for byte.
    lines_nobody = tree_lines(ws)
    as_root = snapshot(ws)[os.fsencode(secret)]
    assert as_root == as_nobody
    assert tree_lines(ws) == lines_nobody


def test_unsearchable_directory_is_recorded_and_scan_goes_on(ws: Workspace) -> None:
    locked = ws.tree / "locked"
    locked.mkdir()
    (locked / "inside").write_text("x")
    locked.chmod(0o700)
    (ws.tree / "z-after").write_text("y")
    ws.write_list("pub", str(ws.tree))
    entries = snapshot(ws, user="nobody")
    assert entries[os.fsencode(locked)].status == "unreadable"
    assert os.fsencode(ws.tree / "z-after") in entries
    assert os.fsencode(locked / "inside") not in entries


def test_deep_nesting_does_not_exhaust_recursion(ws: Workspace) -> None:
    fd = os.open(ws.tree, os.O_RDONLY)
    try:
        for _ in range(1500):
            os.mkdir("d", dir_fd=fd)
            new = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
    finally:
        os.close(fd)
    ws.write_list("pub", str(ws.tree))
    assert len(snapshot(ws)) == 1501


def test_pseudo_file_system_below_a_listed_directory_is_not_entered(ws: Workspace) -> None:
    needs_root()
    proc = ws.tree / "proc"
    proc.mkdir()
    if subprocess.run(["mount", "-t", "proc", "proc", str(proc)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a proc file system here")
    try:
        ws.write_list("pub", str(ws.tree))
        entries = snapshot(ws)
    finally:
        subprocess.run(["umount", str(proc)], check=True)
    assert os.fsencode(proc) in entries
    assert not [p for p in entries if p.startswith(os.fsencode(proc) + b"/")]


def test_files_replaced_during_the_scan_never_crash_or_lie(ws: Workspace) -> None:
    # A writer keeps replacing and rewriting files while the scanner reads them.
    for i in range(50):
        (ws.tree / f"f{i}").write_bytes(b"a" * 70_000)
    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            target = ws.tree / f"f{n % 50}"
            tmp = ws.tree / f".tmp{n % 50}"
            tmp.write_bytes(bytes([n % 256]) * 70_000)
            os.replace(tmp, target)
            if n % 7 == 0:
                target.unlink(missing_ok=True)

    known: dict[int, set[str]] = {}

    def consistent(size: int) -> set[str]:
        if size not in known:
            known[size] = {hashlib.sha256(bytes([b]) * size).hexdigest() for b in range(256)}
        return known[size]

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(5):
            scanner = Scanner("sha256", workers=2)
            for entry in scanner.entries([Root(os.fsencode(ws.tree), True)]):
                if entry.type == "f" and entry.status == "ok":
                    # What was hashed is one consistent version: one byte value, entry.size long.
                    assert entry.hash in consistent(entry.size)
    finally:
        stop.set()
        worker.join()


def test_escaped_paths_in_state_decode_to_real_names(ws: Workspace) -> None:
    names = [b"a\nb", b"c\\d", b"e\tf", b"\xe9t\xe9"]
    for name in names:
        with open(os.fsencode(ws.tree) + b"/" + name, "wb"):
            pass
    ws.write_list("pub", str(ws.tree))
    snapshot(ws)
    recorded = [unescape(line.split("\t")[0])
                for line in tree_lines(ws)]
    assert sorted(recorded[1:]) == sorted(os.fsencode(ws.tree) + b"/" + n for n in names)
