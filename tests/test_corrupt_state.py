"""A corrupt reported copy or baseline is a finding, said once, and never wedges the diff.

And the first report compares with the baseline when there is one: what changed between
``baseline`` and the first ``diff`` is reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import REPO, Workspace
from .diffkit import settle


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1])  # drop the trailer


def _edit_in_place(path: Path) -> None:
    """Change one byte in the middle: same size, same trailer, wrong checksum."""
    data = bytearray(path.read_bytes())
    at = data.index(b"\t0644\t")
    data[at + 4] = ord("6")
    path.write_bytes(bytes(data))


def _set_aside(directory: Path, name: str) -> list[Path]:
    return sorted(directory.glob(f"{name}.corrupt-*"))


def _quiet(run: subprocess.CompletedProcess) -> None:
    assert (run.returncode, run.stdout, run.stderr) == (0, "", ""), run


def test_truncated_reported_copy_is_said_loudly_set_aside_and_the_next_run_is_quiet(
        ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    (ws.tree / "g").write_text("y")
    assert ws.run("snapshot").returncode == 0
    reported = ws.state / "root" / "reported_pub.stat"
    _truncate(reported)
    bad = reported.read_bytes()
    run = ws.run("diff")
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[1].startswith("pub: CORRUPT STATE: the pub copy of the last report")
    assert "truncated (no #end trailer)" in lines[1]
    assert "reported as a first report" in lines[1]  # no baseline to fall back on
    assert "first report:" in run.stdout
    kept = _set_aside(ws.state / "root", "reported_pub.stat")
    assert len(kept) == 1 and kept[0].read_bytes() == bad
    assert kept[0].name in lines[1]
    _quiet(ws.run("diff"))
    assert ws.run("snapshot").returncode == 0
    _quiet(ws.run("diff"))


def test_corrupt_reported_copy_falls_back_on_the_baseline(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    assert ws.run("baseline").returncode == 0
    (ws.tree / "g").write_text("y")
    assert ws.run("snapshot").returncode == 0
    _edit_in_place(ws.state / "root" / "reported_pub.stat")
    run = ws.run("diff")
    assert run.returncode == 1, run.stderr
    assert "CORRUPT STATE" in run.stdout and "checksum mismatch" in run.stdout
    assert "compared with the accepted baseline instead" in run.stdout
    assert f"added (1):\n  {ws.tree}/g" in run.stdout
    assert "first report:" not in run.stdout
    _quiet(ws.run("diff"))


def test_a_diff_without_a_new_snapshot_still_checks_its_copy(ws: Workspace) -> None:
    # The reported copy holds the newest snapshot (same size, same trailer): no comparison
    # is needed, but the copy relied on is checked all the same, and a bad one is a finding.
    (ws.tree / "f").write_text("x")
    settle(ws)
    reported = ws.state / "root" / "reported_pub.stat"
    _edit_in_place(reported)
    run = ws.run("diff")
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "CORRUPT STATE" in run.stdout and "reported_pub.stat" in run.stdout
    assert _set_aside(ws.state / "root", "reported_pub.stat")
    _quiet(ws.run("diff"))


def test_corrupt_copy_in_json_and_the_mail_subject(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    _truncate(ws.state / "root" / "reported_pub.stat")
    run = ws.run("diff", "--format", "json")
    assert run.returncode == 1, run.stderr
    (mode,) = json.loads(run.stdout)["modes"]
    assert mode["first"] is True
    assert len(mode["faults"]) == 1 and "truncated" in mode["faults"][0]


def test_a_report_that_was_not_delivered_says_the_corruption_again(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    reported = ws.state / "root" / "reported_pub.stat"
    _truncate(reported)
    command = [sys.executable, "-m", "systraq", "--config-dir", str(ws.config),
               "--state-dir", str(ws.state), "diff"]
    closed = subprocess.run(command, capture_output=False, stdout=None, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                            preexec_fn=lambda: os.close(1), timeout=120)
    assert closed.returncode == 2
    assert not _set_aside(ws.state / "root", "reported_pub.stat")
    run = ws.run("diff")
    assert run.returncode == 1 and "CORRUPT STATE" in run.stdout


def test_corrupt_baseline_is_said_by_diff_baseline_and_set_aside_by_the_next_baseline(
        ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    assert ws.run("baseline").returncode == 0
    baseline = ws.state / "root" / "baseline_pub.stat"
    _truncate(baseline)
    looked = ws.run("diff", "--baseline")
    assert looked.returncode == 1, looked.stderr
    assert "CORRUPT STATE: the pub accepted baseline" in looked.stdout
    assert "left in place (this run records nothing)" in looked.stdout
    assert not _set_aside(ws.state / "root", "baseline_pub.stat")
    accepted = ws.run("baseline")
    assert accepted.returncode == 0, accepted.stderr
    assert "CORRUPT STATE" in accepted.stderr
    assert len(_set_aside(ws.state / "root", "baseline_pub.stat")) == 1
    _quiet(ws.run("diff", "--baseline"))


def test_corrupt_previous_snapshot_is_mentioned_once_by_the_next_report(
        ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    snapshot = ws.state / "pub" / "snapshot_pub.stat"
    _edit_in_place(snapshot)
    assert ws.run("snapshot").returncode == 0
    run = ws.run("diff")
    assert run.returncode == 1, run.stderr
    assert "note: the previous pub snapshot failed its check (trailer does not match" \
        in run.stdout
    assert "every file was hashed again" in run.stdout
    assert ws.run("snapshot").returncode == 0
    _quiet(ws.run("diff"))


def test_notes_file_cannot_forge_report_lines(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    _edit_in_place(ws.state / "pub" / "snapshot_pub.stat")
    assert ws.run("snapshot").returncode == 0
    notes = ws.state / "pub" / "snapshot_pub.notes"
    stamp = notes.read_text().split("\t")[0]
    notes.write_bytes(notes.read_bytes() + stamp.encode() + b"\tx\\nadded (1):\xe2\x80\xae\n")
    run = ws.run("diff")
    assert run.returncode == 1
    assert "  note: x\\nadded (1):\\xe2\\x80\\xae\n" in run.stdout
    assert "\u202e" not in run.stdout and "\nadded (1):" not in run.stdout


def test_first_report_compares_with_the_baseline(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0
    assert ws.run("baseline").returncode == 0
    (ws.tree / "f").chmod(0o600)
    (ws.tree / "late").write_text("made between baseline and the first diff")
    assert ws.run("snapshot").returncode == 0
    run = ws.run("diff")
    assert run.returncode == 1, run.stderr
    assert "first report: compared with the accepted baseline of" in run.stdout
    assert f"  {ws.tree}/late  (file" in run.stdout
    assert "perms 0644 → 0600" in run.stdout
    assert "entries recorded" not in run.stdout
    _quiet(ws.run("diff"))
    (ws.tree / "later").write_text("y")
    assert ws.run("snapshot").returncode == 0
    later = ws.run("diff")
    assert "later" in later.stdout and "late " not in later.stdout
    assert "baseline" not in later.stdout  # the reported copy has taken over


def test_first_report_without_a_baseline_counts_entries(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0
    run = ws.run("diff")
    assert run.returncode == 1 and "entries recorded" in run.stdout
    assert "baseline" not in run.stdout
