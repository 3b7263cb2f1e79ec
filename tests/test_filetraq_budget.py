"""The backup store cannot be made to fill the disk: one file under many names is stored
once, and the store has a size budget past which contents are tracked by hash only."""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import Workspace
from .filetraq_support import store_of, stored, write_conf, write_list

MB = 1_000_000


def filetraq(ws: Workspace, *args: str):
    return ws.run("filetraq", *args)


def store_bytes(ws: Workspace) -> int:
    """What the store holds on disk, each inode once (as du counts it)."""
    seen, total = set(), 0
    for directory, _, names in os.walk(store_of(ws)):
        for name in names:
            st = os.lstat(os.path.join(directory, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def test_two_hundred_hard_links_to_one_file_are_stored_once(ws: Workspace) -> None:
    keys = ws.tree / "keys"
    keys.mkdir()
    first = keys / "authorized_keys"
    first.write_bytes(b"ssh-ed25519 AAAA" * (MB // 16))
    for n in range(1, 200):
        os.link(first, keys / f"authorized_keys{n}")
    write_list(ws, str(keys))
    run = filetraq(ws)
    assert run.returncode == 1, run.stderr
    assert run.stdout.count("Creating first backup of") == 200
    assert store_bytes(ws) < 2 * MB  # not 200 MB
    origs = {stored(ws, keys / name).stat().st_ino for name in os.listdir(keys)}
    assert len(origs) == 1
    assert stored(ws, keys / "authorized_keys150").read_bytes() == first.read_bytes()

    # A change to the one file: every name reports it, the new content is stored once,
    # and each name keeps its previous version.
    with open(first, "r+b") as handle:
        handle.write(b"ssh-rsa ")
    changed = filetraq(ws)
    assert changed.returncode == 1, changed.stderr
    assert changed.stdout.count("changed") + changed.stdout.count("Changes in") == 200
    assert store_bytes(ws) < 3 * MB
    assert stored(ws, keys / "authorized_keys7").read_bytes() == first.read_bytes()
    assert len({stored(ws, keys / n).stat().st_ino for n in os.listdir(keys)}) == 1

    # A name added later is a hard link to what the store already holds.
    os.link(first, keys / "authorized_keys_late")
    late = filetraq(ws)
    assert late.stdout == f"Creating first backup of {keys}/authorized_keys_late.\n"
    assert stored(ws, keys / "authorized_keys_late").stat().st_ino == \
        stored(ws, first).stat().st_ino
    assert store_bytes(ws) < 3 * MB


def _budget(ws: Workspace, size: int) -> None:
    write_conf(ws, f"[filetraq]\nstore_budget = {size}\n")


def test_a_run_past_the_budget_stores_nothing_more_says_so_once_and_tracks_hashes(
        ws: Workspace) -> None:
    etc = ws.tree / "etc"
    etc.mkdir()
    small, large, later = etc / "a.conf", etc / "b.conf", etc / "c.conf"
    small.write_text("small\n")
    large.write_bytes(b"x\n" * 150_000)
    later.write_text("also small\n")
    write_list(ws, str(etc))
    _budget(ws, 100_000)
    run = filetraq(ws)
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"Creating first backup of {small}."
    assert lines[1].startswith(f"First backup of {large} not stored: the backup store holds ")
    assert "100,000-byte budget (filetraq.store_budget)" in lines[1]
    assert "tracked by size and sha256" in lines[1]
    assert lines[2] == "  now 300000 bytes, sha256 " + \
        __import__("hashlib").sha256(large.read_bytes()).hexdigest()
    # Nothing more is stored in that run, not even a small file after the large one.
    assert any(line.startswith(f"First backup of {later} not stored") for line in lines)
    assert stored(ws, small).exists()
    assert not stored(ws, large).exists() and not stored(ws, later).exists()
    assert store_bytes(ws) <= 100_000

    quiet = filetraq(ws)  # said once
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")

    large.write_bytes(b"y\n" * 150_000)  # still tracked: its change is reported
    changed = filetraq(ws)
    assert changed.returncode == 1
    assert changed.stdout.startswith(f"File {large} changed not stored: ")
    assert "  was 300000 bytes" in changed.stdout and "  now 300000 bytes" in changed.stdout
    _budget(ws, 4096)  # below what the store holds: no new content fits at all
    small.write_text("small, edited\n")  # a stored file's change: diffed, not stored
    edited = filetraq(ws)
    assert edited.stdout.startswith(f"Changes in {small} (new version not stored: ")
    assert "+small, edited" in edited.stdout
    assert stored(ws, small).read_text() == "small\n"
    assert filetraq(ws).stdout == ""

    _budget(ws, 10_000_000)  # room again: what waited is stored, without a word
    stored_now = filetraq(ws)
    assert (stored_now.returncode, stored_now.stdout) == (0, ""), stored_now.stderr
    assert stored(ws, large).read_bytes() == large.read_bytes()
    assert stored(ws, later).read_text() == "also small\n"
    assert stored(ws, small).read_text() == "small, edited\n"
    assert len(os.listdir(stored(ws, small).parent)) == 2  # orig and the dated copy
    later.write_text("also small, edited\n")
    assert "+also small, edited" in filetraq(ws).stdout


def test_the_store_budget_is_checked_when_the_config_is_loaded(ws: Workspace) -> None:
    write_list(ws, str(ws.tree))
    for value in ("-1", "1e300", "\"big\"", str(1 << 51)):
        _budget(ws, value)  # type: ignore[arg-type]
        run = filetraq(ws)
        assert run.returncode == 2 and run.stdout == ""
        assert run.stderr.startswith(f"systraq: {ws.config}/systraq.conf:2: "), run.stderr
        assert "store_budget" in run.stderr and "Traceback" not in run.stderr


def test_prune_of_a_1200_level_store_succeeds(ws: Workspace) -> None:
    deep = store_of(ws)
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1200):  # one component at a time: the path outgrows PATH_MAX
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    for name in ("orig", "orig.01.02.20__03.04"):
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    old = os.open("orig.01.02.20__03.04", os.O_RDONLY, dir_fd=fd)
    os.close(fd)
    for _ in range(2):  # and again: a prune that failed once must not fail for ever
        run = filetraq(ws, "--prune")
        assert run.returncode == 0, run.stderr[-500:]
        assert "Traceback" not in run.stderr
    assert os.fstat(old).st_nlink == 0  # the old dated copy is gone
    os.close(old)
    assert Path(deep, *["d"] * 20).is_dir()
