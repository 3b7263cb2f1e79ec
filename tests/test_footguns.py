"""Settings and arguments that would quietly do harm are refused with a clear line."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from systraq.config import Settings, SnapshotSettings, load_settings
from systraq.errors import SystraqError
from systraq.fs.privilege import pub_account
from systraq.layout import BASELINE

from .conftest import Workspace, needs_root
from .diffkit import settle
from .runner import run_in_process


def test_pub_user_root_is_refused_before_anything_is_scanned(ws: Workspace):
    conf = ws.config / "systraq.conf"
    conf.write_text('[snapshot]\nhash = "sha256"\npub_user = "root"\n')
    ws.write_list("pub", str(ws.tree))
    for command in ("snapshot", "diff", "filetraq-conf"):
        done = ws.run(command)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr == (
            f"systraq: {conf}:3: snapshot.pub_user must be an unprivileged account, not "
            "'root' (uid 0): the pub snapshot runs as this account so that it reads only "
            "what everyone may read\n")
    assert os.listdir(ws.state) == []


def test_a_uid_0_pub_user_is_refused_even_when_the_settings_do_not_come_from_a_file():
    needs_root()  # only root drops to the pub user
    settings = replace(Settings(), snapshot=SnapshotSettings(pub_user="root"))
    with pytest.raises(SystraqError, match="has uid 0"):
        pub_account(settings)


def _difference_under_tree(ws: Workspace) -> None:
    (ws.tree / "sshd_config").write_text("PermitRootLogin no\n")
    settle(ws)
    assert ws.run("baseline").returncode == 0
    (ws.tree / "sshd_config").chmod(0o666)
    assert ws.run("snapshot").returncode == 0


@pytest.mark.parametrize("argument", ["", ".", "sshd_config", "./sshd_config", "../tree",
                                      "*"])
def test_baseline_refuses_an_empty_or_relative_path(ws: Workspace, argument: str):
    _difference_under_tree(ws)
    baseline = load_settings(ws.config, ws.state).layout.copy(BASELINE, "pub")
    before = baseline.read_bytes()
    # Run from inside the tree: a relative PATH would have covered the difference.
    done = run_in_process(ws.argv("baseline", argument), cwd=ws.tree)
    assert done.returncode == 2
    assert done.stderr == (f"systraq: baseline: PATH '{argument}' is not an absolute path: "
                           "give paths or globs that start with / (a relative one would "
                           "accept differences below the current directory)\n")
    assert baseline.read_bytes() == before
    still = ws.run("diff", "--baseline")
    assert still.returncode == 1 and "perms 0644 → 0666" in still.stdout


def test_baseline_takes_an_absolute_path(ws: Workspace):
    _difference_under_tree(ws)
    done = ws.run("baseline", str(ws.tree / "sshd_config"))
    assert done.returncode == 0, done.stderr
    assert ws.run("diff", "--baseline").returncode == 0


def test_filetraq_conf_with_a_relative_config_dir_lists_absolute_paths(ws: Workspace):
    needs_root()  # the listing runs in a child that drops privileges (and leaves the cwd)
    (ws.tree / "a.conf").write_text("a\n")
    ws.write_config("[snapshot]\n")
    ws.write_list("pub", str(ws.tree))
    (ws.root / "out").mkdir()
    done = run_in_process(["--config-dir", "config", "--state-dir", "state", "filetraq-conf",
                           "--dir", "tree", "--output", "out/../filetraq.conf"], cwd=ws.root)
    assert done.returncode == 0, done.stderr
    listed = [line for line in (ws.root / "filetraq.conf").read_text().splitlines()
              if not line.startswith("#")]
    assert listed == [str(ws.tree / "a.conf"), str(ws.config / "snapshot_pub.list"),
                      str(ws.config / "systraq.conf"), str(ws.root / "filetraq.conf")]
    assert all(Path(line).is_absolute() and ".." not in line for line in listed)
