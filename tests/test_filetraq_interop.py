"""Debian's filetraq and systraq filetraq take turns on one store.

Neither reports a change the other already recorded, ``orig`` is byte for byte the file,
and dated copies carry filetraq's names. Debian's filetraq names a dated copy after the
minute, in the local time of its TZ; it runs here with another TZ than systraq, so that the
two never make a copy within the same minute name (where Debian's ``cp`` would overwrite
systraq's copy: a weakness of Debian's filetraq, not of the store layout).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path

import pytest

from systraq.filetraq.store import dated_name

from .conftest import Workspace
from .filetraq_support import (
    DEBIAN_FILETRAQ,
    dated_copies,
    store_of,
    stored,
    write_conf,
    write_list,
)


@pytest.fixture(autouse=True)
def debian_filetraq_installed() -> None:
    """Skip without Debian's filetraq, except in CI, which installs it (.ci/run)."""
    if DEBIAN_FILETRAQ.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{DEBIAN_FILETRAQ} is missing in CI: .ci/run installs filetraq")
    pytest.skip("Debian's filetraq is not installed (apt-get install filetraq)")

SYSTRAQ_TZ = "UTC"
DEBIAN_TZ = "UTC+5"  # POSIX TZ: five hours behind UTC


def debian(ws: Workspace, list_file: Path, tz: str = DEBIAN_TZ
           ) -> subprocess.CompletedProcess:
    store_of(ws).mkdir(exist_ok=True)
    return subprocess.run([str(DEBIAN_FILETRAQ), str(list_file), str(store_of(ws))],
                          capture_output=True, text=True, timeout=60, cwd=ws.root,
                          env={**os.environ, "TZ": tz, "LC_ALL": "C"})


def systraq(ws: Workspace) -> subprocess.CompletedProcess:
    return ws.run("filetraq", env={"TZ": SYSTRAQ_TZ})


def names_around(tz_offset_hours: int, action) -> tuple[set[str], object]:
    """The dated-copy names a run could give, in a TZ, and what the run returned."""
    before = time.time()
    result = action()
    after = time.time()
    return ({dated_name(time.gmtime(t - tz_offset_hours * 3600)).decode()
             for t in (before, after)}, result)


@pytest.fixture
def files(ws: Workspace) -> tuple[Path, list[Path]]:
    paths = [ws.tree / "sshd_config", ws.tree / "hosts", ws.tree / "blob.bin"]
    paths[0].write_text("Port 22\nPermitRootLogin no\nUsePAM yes\n")
    paths[1].write_text("127.0.0.1 localhost\n")
    paths[2].write_bytes(b"\0\1\2 binary\n")
    return write_list(ws, *map(str, paths)), paths


def test_store_made_by_debian_filetraq_carries_on_under_systraq(ws, files):
    list_file, paths = files
    first = debian(ws, list_file)
    assert sorted(first.stdout.splitlines()) == sorted(f"Creating first backup of {p}."
                                                       for p in paths)
    quiet = systraq(ws)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    paths[0].write_text("Port 22\nPermitRootLogin yes\nUsePAM yes\n")
    paths[2].write_bytes(b"\0\1\3 binary\n")
    names, changed = names_around(0, lambda: systraq(ws))
    assert changed.returncode == 1
    assert changed.stdout.count("previous version kept as") == 2
    for path in (paths[0], paths[2]):
        assert stored(ws, path).read_bytes() == path.read_bytes()
        [copy] = dated_copies(ws, path)
        assert copy in names
    after = debian(ws, list_file)
    assert (after.stdout, after.stderr) == ("", ""), "Debian repeats what systraq recorded"


def test_store_made_by_systraq_carries_on_under_debian_filetraq(ws, files):
    list_file, paths = files
    assert systraq(ws).returncode == 1
    assert debian(ws, list_file).stdout == ""
    paths[1].write_text("127.0.0.1 localhost\n10.1.1.1 gateway\n")
    names, changed = names_around(5, lambda: debian(ws, list_file))
    assert f"--- {store_of(ws)}/{paths[1]}/orig" in changed.stdout  # its context diff
    [copy] = dated_copies(ws, paths[1])
    assert copy in names
    assert stored(ws, paths[1]).read_bytes() == paths[1].read_bytes()
    quiet = systraq(ws)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


def test_alternating_changes_keep_every_version_under_filetraqs_names(ws, files):
    list_file, paths = files
    conf = paths[0]
    versions = [conf.read_bytes()]
    debian(ws, list_file)
    for turn in range(4):
        conf.write_text(f"Port 22\n# turn {turn}\n")
        versions.append(conf.read_bytes())
        if turn % 2:
            # Debian's own copies would collide within a minute: another hour each time.
            assert debian(ws, list_file, tz=f"UTC+{5 + turn}").stdout != ""
            assert systraq(ws).stdout == ""
        else:
            assert systraq(ws).returncode == 1
            assert debian(ws, list_file).stdout == ""
        assert stored(ws, conf).read_bytes() == conf.read_bytes()
    kept = sorted(stored(ws, conf, name).read_bytes() for name in dated_copies(ws, conf))
    assert kept == sorted(versions[:-1])
    found = subprocess.run(["find", str(store_of(ws)), "-type", "f", "-name", "*.??.??__??.??"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert sorted(Path(f).name for f in found if Path(f).parent == stored(ws, conf).parent) \
        == dated_copies(ws, conf), "Debian's prune job sees every dated copy"


def test_context_style_setting_prints_the_diff_debian_filetraq_prints(ws, files):
    list_file, paths = files
    write_conf(ws, '[filetraq]\ndiff_style = "context"\ndiff_order = "newold"\n')
    twin = dataclasses.replace(ws, state=ws.root / "twin-state")
    twin.state.mkdir()
    debian(twin, list_file)
    systraq(ws)
    paths[0].write_text("Port 2222\nPermitRootLogin no\nUsePAM yes\nX11Forwarding no\n")
    theirs = debian(twin, list_file).stdout.splitlines()
    ours = systraq(ws).stdout.splitlines()
    assert ours[0].startswith(f"Changes in {paths[0]}")
    assert ours[1].split("\t")[0] == theirs[0].split("\t")[0]  # *** NEW
    assert ours[3:] == theirs[2:], "the hunks are diff -p -C 1's"
