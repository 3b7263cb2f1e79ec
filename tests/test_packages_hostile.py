"""A dpkg database from a tree anyone may have made: errors name file and line, nothing
is read through a symlink, nothing is read without bound."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from systraq.packages.dpkgdb import Database, DatabaseError, parse_conffiles, parse_md5sums
from systraq.packages.verify import verify_packages
from tests.conftest import Workspace


def make_db(root: Path, status: str, **info: bytes) -> Path:
    admin = root / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "status").write_text(status)
    for name, data in info.items():
        (admin / "info" / name.replace("__", ":")).write_bytes(data)
    return root


STANZA = ("Package: demo\nStatus: install ok installed\nArchitecture: all\nVersion: 1.0\n"
          "Conffiles:\n /etc/demo.conf 00000000000000000000000000000000\n"
          " /etc/old.conf 11111111111111111111111111111111 obsolete\n"
          " /etc/gone.conf 22222222222222222222222222222222 remove-on-upgrade\n\n")


def test_status_is_parsed_with_obsolete_conffiles(tmp_path: Path) -> None:
    with Database.open(make_db(tmp_path, STANZA)) as db:
        [package] = db.packages
    assert (package.name, package.version, package.state) == ("demo", "1.0", "installed")
    assert [(c.path, c.obsolete) for c in package.conffiles] == [
        (b"/etc/demo.conf", False), (b"/etc/old.conf", True)]


def test_a_broken_status_line_names_file_and_line(ws: Workspace) -> None:
    root = make_db(ws.root / "bad", STANZA + "Package: x\nthis is not a field\n")
    done = ws.run("packages", "--root", str(root))
    assert done.returncode == 2
    assert done.stderr == f"systraq: {root}/var/lib/dpkg/status:11: not a 'Field: value' " \
        "line\n"


def test_a_broken_md5sums_line_is_reported_and_the_rest_still_checked(ws: Workspace) -> None:
    root = make_db(ws.root / "md5", STANZA.replace("Conffiles:", "X-Conffiles:"),
                   **{"demo.list": b"/.\n/usr\n", "demo.md5sums": b"zz  usr/x\n"})
    done = ws.run("packages", "--root", str(root))
    assert done.returncode == 2
    assert f"systraq: {root}/var/lib/dpkg/info/demo.md5sums:1: expected 'md5sum  path'" \
        in done.stderr


def test_md5sums_and_conffiles_parsers_refuse_what_is_not_theirs() -> None:
    with pytest.raises(DatabaseError, match="f:2"):
        parse_md5sums(b"d41d8cd98f00b204e9800998ecf8427e  ok\nnot a line\n", b"f")
    with pytest.raises(DatabaseError, match="status:7"):
        parse_conffiles(b"\n relative abc", b"status", 6)
    assert parse_md5sums(b"d41d8cd98f00b204e9800998ecf8427e  with space/in name\n", b"f") \
        == {b"/with space/in name": "d41d8cd98f00b204e9800998ecf8427e"}


def test_a_symlinked_info_file_is_not_read(tmp_path: Path) -> None:
    root = make_db(tmp_path, STANZA)
    secret = tmp_path / "secret"
    secret.write_text("/etc/shadow\n")
    os.symlink(secret, root / "var/lib/dpkg/info/demo.list")
    result = verify_packages(root)
    assert result.problems == [f"{root}/var/lib/dpkg/info/demo.list: is a symlink: not read"]


def test_a_symlinked_admindir_is_refused(tmp_path: Path) -> None:
    real = make_db(tmp_path / "real", STANZA)
    (tmp_path / "fake/var/lib").mkdir(parents=True)
    os.symlink(real / "var/lib/dpkg", tmp_path / "fake/var/lib/dpkg")
    with pytest.raises(DatabaseError, match="symlink or not a directory"):
        Database.open(tmp_path / "fake")


def test_an_oversized_sparse_info_file_is_not_read(tmp_path: Path) -> None:
    root = make_db(tmp_path, STANZA)
    with open(root / "var/lib/dpkg/info/demo.md5sums", "wb") as out:
        out.truncate(1 << 40)  # a terabyte of hole, a few blocks on disk
    result = verify_packages(root)
    assert any("larger than" in p for p in result.problems)


def test_a_fifo_for_status_does_not_hang(tmp_path: Path) -> None:
    root = tmp_path
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    os.mkfifo(root / "var/lib/dpkg/status")
    with pytest.raises(DatabaseError, match="not a regular file"):
        Database.open(root)


def test_package_without_any_files_on_disk_is_not_flagged_for_md5sums(tmp_path: Path) -> None:
    root = make_db(tmp_path, STANZA.replace("Conffiles:", "X-Conffiles:"),
                   **{"demo.list": b"/.\n/usr\n"})
    (root / "usr").mkdir()
    result = verify_packages(root)
    assert (result.findings, result.without_md5sums) == ([], [])
