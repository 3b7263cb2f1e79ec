"""Bad input for diff and baseline: one clear line, exit 2, and every state file left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Workspace
from .diffkit import settle, write_config


def _files(state: Path) -> dict[str, bytes]:
    return {str(p.relative_to(state)): p.read_bytes() for p in sorted(state.glob("*/*.stat"))}


def _assert_trouble(run, *words: str) -> None:
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stdout == ""
    assert run.stderr.startswith("systraq: ") and run.stderr.count("\n") == 1, run.stderr
    assert "Traceback" not in run.stderr
    for word in words:
        assert word in run.stderr


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1])  # drop the trailer


# A corrupt reported copy or baseline is a finding instead (test_corrupt_state.py).
@pytest.mark.parametrize("which", ["pub/snapshot_pub.stat"])
def test_truncated_state_file_is_trouble_naming_it_and_is_left_as_it_was(
        ws: Workspace, which: str) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    (ws.tree / "g").write_text("y")
    assert ws.run("snapshot").returncode == 0
    _truncate(ws.state / which)
    before = _files(ws.state)
    run = ws.run("diff")
    _assert_trouble(run, f"{ws.state}/{which}:", "truncated (no #end trailer)")
    assert _files(ws.state) == before
    assert not [p for p in ws.state.glob("*/.*") if p.name.endswith(".tmp")]


def test_edited_state_file_is_refused_with_its_line(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    (ws.tree / "g").write_text("y")
    assert ws.run("snapshot").returncode == 0
    snapshot = ws.state / "pub" / "snapshot_pub.stat"
    snapshot.write_bytes(snapshot.read_bytes().replace(b"\t0644\t", b"\t0666\t", 1))
    before = _files(ws.state)
    _assert_trouble(ws.run("diff"), "snapshot_pub.stat:", "checksum mismatch")
    assert _files(ws.state) == before
    snapshot.write_bytes(snapshot.read_bytes().replace(b"\tf\t", b"\tQ\t", 1))
    _assert_trouble(ws.run("diff"), "snapshot_pub.stat:", "unknown type 'Q'")


def test_truncated_snapshot_is_never_made_the_baseline(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    assert ws.run("baseline").returncode == 0
    (ws.tree / "g").write_text("y")
    assert ws.run("snapshot").returncode == 0
    _truncate(ws.state / "pub" / "snapshot_pub.stat")
    before = _files(ws.state)
    for args in (("baseline",), ("baseline", str(ws.tree / "g"))):
        _assert_trouble(ws.run(*args), "snapshot_pub.stat:", "truncated")
        assert _files(ws.state) == before


def test_state_file_of_a_newer_format_is_refused(ws: Workspace) -> None:
    settle(ws)
    snapshot = ws.state / "pub" / "snapshot_pub.stat"
    snapshot.write_bytes(snapshot.read_bytes().replace(b"#systraq-state\t2", b"#systraq-state\t9"))
    _assert_trouble(ws.run("diff"), "snapshot_pub.stat:1:", "version 9 is not understood")


def test_reported_copy_of_another_mode_is_refused(ws: Workspace) -> None:
    settle(ws)
    reported = ws.state / "root" / "reported_pub.stat"
    text = reported.read_bytes()
    reported.write_bytes(text)  # no longer the snapshot's inode
    (ws.state / "root" / "reported_root.stat").write_bytes(text)
    ws.write_list("root", str(ws.tree))
    (ws.state / "root" / "snapshot_root.stat").write_bytes(text)
    _assert_trouble(ws.run("diff", "--mode", "root"), "snapshot_root.stat",
                    "holds a pub snapshot where a root one belongs")


def test_diff_before_any_snapshot_says_what_to_run(ws: Workspace) -> None:
    _assert_trouble(ws.run("diff"), str(ws.state), "no snapshot yet: run 'systraq snapshot'")
    _assert_trouble(ws.run("diff", "--mode", "root"), "snapshot_root.stat",
                    "no root snapshot yet")
    _assert_trouble(ws.run("baseline"), "no snapshot yet")


def test_unknown_mode_and_format_are_refused(ws: Workspace) -> None:
    for args in (("diff", "--mode", "everything"), ("diff", "--format", "xml"),
                 ("baseline", "--mode", "x")):
        run = ws.run(*args)
        assert run.returncode == 2 and "Invalid value" in run.stderr
        assert "Traceback" not in run.stderr


def test_bad_report_setting_names_the_file_and_line(ws: Workspace) -> None:
    settle(ws)
    config = write_config(ws, "[report]\nmail = false\nfields = [\"type\", \"colour\"]\n")
    _assert_trouble(ws.run("diff"), f"{config}:3:", "unknown field 'colour'")
    write_config(ws, "[mail]\ntransport = \"pigeon\"\n")
    _assert_trouble(ws.run("diff", "--mail"), "mail.transport must be one of")

