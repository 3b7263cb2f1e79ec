"""The apt hook's `systraq after-dpkg` does what packages.after_dpkg says, and no more."""

from __future__ import annotations

import pytest

from tests.conftest import Workspace


def configure(ws: Workspace, what: str) -> None:
    (ws.tree / "f").write_text("x\n")
    ws.write_list("root", str(ws.tree))
    (ws.config / "systraq.conf").write_text(f'[packages]\nafter_dpkg = "{what}"\n')


def test_by_default_the_hook_does_nothing(ws: Workspace) -> None:
    ws.write_list("root", str(ws.tree))
    done = ws.run("after-dpkg")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not (ws.state / "root" / "snapshot_root.stat").exists()


def test_snapshot_setting_records_the_files_as_dpkg_left_them(ws: Workspace) -> None:
    configure(ws, "snapshot")
    done = ws.run("after-dpkg")
    assert done.returncode == 0, done.stderr
    assert (ws.state / "root" / "snapshot_root.stat").exists()
    assert not (ws.state / "root" / "reported_root.stat").exists()


def test_check_setting_reports_the_operation_at_once(ws: Workspace) -> None:
    configure(ws, "check")
    done = ws.run("after-dpkg")
    assert done.returncode == 1, done.stderr
    assert "first report" in done.stdout
    assert (ws.state / "root" / "reported_root.stat").exists()


@pytest.mark.parametrize("value", ['"sometimes"', "true"])
def test_a_bad_setting_names_file_and_line(ws: Workspace, value: str) -> None:
    (ws.config / "systraq.conf").write_text(f"[packages]\nafter_dpkg = {value}\n")
    done = ws.run("after-dpkg")
    assert done.returncode == 2
    assert done.stderr.startswith(f"systraq: {ws.config}/systraq.conf:2: packages.after_dpkg")
