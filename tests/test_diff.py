"""systraq diff and check, run for real: every change reported once, silence otherwise."""

from __future__ import annotations

import json
import os

import pytest

from systraq.config import load_settings

from .conftest import Workspace, needs_root
from .diffkit import json_changes, settle, snapshot_and_diff, write_config
from .runner import lock_held_by_its_owner, wait_until_all_have_open


def test_first_diff_says_how_many_entries_were_recorded_then_nothing(ws: Workspace) -> None:
    (ws.tree / "a").write_text("one\n")
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0
    first = ws.run("diff")
    assert first.returncode == 1
    assert "first report:" in first.stdout and "entries recorded" in first.stdout
    assert (ws.state / "root" / "reported_pub.stat").exists()
    again = ws.run("diff")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def _change_content(ws: Workspace) -> None:
    (ws.tree / "f").write_text("PermitRootLogin yes\n")


def _chmod(ws: Workspace) -> None:
    # Not to 0666: a world-writable bit is a privilege change, with a group of its own; and
    # readable by everyone still, or the pub scan could no longer look into it.
    (ws.tree / "f").chmod(0o604)


def _chown(ws: Workspace) -> None:
    needs_root()
    os.chown(ws.tree / "f", 65534, -1)


def _add(ws: Workspace) -> None:
    (ws.tree / "new").write_text("new\n")


def _remove(ws: Workspace) -> None:
    (ws.tree / "f").unlink()


def _file_to_symlink(ws: Workspace) -> None:
    (ws.tree / "f").unlink()
    (ws.tree / "f").symlink_to("elsewhere")


CASES = {
    "content": (_change_content, "f", "changed", ["content changed (size 19 → 20)"]),
    "chmod": (_chmod, "f", "changed", ["perms 0644 → 0604"]),
    "chown": (_chown, "f", "changed", ["owner root → nobody"]),
    "added": (_add, "new", "added", ["(file 0644 root:root, 4 bytes)"]),
    "removed": (_remove, "f", "removed", ["(file 0644 root:root, 19 bytes)"]),
    "file→symlink": (_file_to_symlink, "f", "changed",
                     ["type file → symlink", "target (none) → elsewhere"]),
}


@pytest.mark.parametrize("case", CASES)
def test_each_change_appears_once_and_the_next_run_prints_nothing(ws: Workspace,
                                                                  case: str) -> None:
    mutate, name, kind, words = CASES[case]
    path = ws.tree / "f"
    path.write_text("PermitRootLogin no\n")
    path.chmod(0o644)
    settle(ws)
    mutate(ws)
    report = snapshot_and_diff(ws)
    assert report.returncode == 1, report.stderr
    assert report.stderr == ""
    text = report.stdout
    assert text.count(str(ws.tree / name)) == 1
    assert f"{kind} (1):" in text
    for phrase in words:
        assert phrase in text
    assert "total: 1 " + kind in text
    # The same snapshot again, then a fresh one: nothing new to say, no output at all.
    for run in (ws.run("diff"), snapshot_and_diff(ws)):
        assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_touch_alone_is_not_an_alert(ws: Workspace) -> None:
    (ws.tree / "f").write_text("same\n")
    settle(ws)
    os.utime(ws.tree / "f", (1_000_000_000, 1_000_000_000))
    os.utime(ws.tree, None)
    run = snapshot_and_diff(ws)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_same_size_rewrite_is_reported_as_a_content_change(ws: Workspace) -> None:
    (ws.tree / "f").write_text("aaaa\n")
    settle(ws)
    (ws.tree / "f").write_text("bbbb\n")
    run = snapshot_and_diff(ws)
    assert run.returncode == 1
    assert "content changed (same size, 5)" in run.stdout


def test_report_never_contains_file_content(ws: Workspace) -> None:
    (ws.tree / "secret").write_text("hunter2-old\n")
    settle(ws)
    (ws.tree / "secret").write_text("hunter2-new-password\n")
    (ws.tree / "added").write_text("hunter2-added\n")
    for fmt in ("text", "json"):
        ws.run("snapshot")
        run = ws.run("diff", "--no-record", "--format", fmt)
        assert run.returncode == 1
        assert "hunter2" not in run.stdout


def test_no_record_reports_the_same_changes_again(ws: Workspace) -> None:
    settle(ws)
    (ws.tree / "new").write_text("x")
    first = snapshot_and_diff(ws, "--no-record")
    second = ws.run("diff", "--no-record")
    assert first.returncode == second.returncode == 1
    assert first.stdout == second.stdout
    recorded = ws.run("diff")
    assert recorded.stdout == first.stdout
    assert ws.run("diff").stdout == ""


def test_json_report_has_the_documented_shape(ws: Workspace) -> None:
    (ws.tree / "f").write_text("one\n")
    (ws.tree / "gone").write_text("bye\n")
    settle(ws)
    (ws.tree / "f").write_text("three\n")
    (ws.tree / "f").chmod(0o664)
    (ws.tree / "gone").unlink()
    (ws.tree / "link").symlink_to("f")
    run = snapshot_and_diff(ws, "--format", "json")
    assert run.returncode == 1, run.stderr
    document = json.loads(run.stdout)
    assert document["host"] and document["against"] == "reported"
    assert [m["mode"] for m in document["modes"]] == ["pub"]
    changes = json_changes(run.stdout)
    assert {p: c["kind"] for p, c in changes.items()} == {
        f"{ws.tree}/f": "changed", f"{ws.tree}/gone": "removed", f"{ws.tree}/link": "added"}
    changed = changes[f"{ws.tree}/f"]
    assert changed["mode"] == "pub"
    assert changed["fields"]["perms"] == {"old": "0644", "new": "0664"}
    assert changed["fields"]["size"] == {"old": 4, "new": 6}
    assert set(changed["fields"]["hash"]) == {"old", "new"}
    assert set(changed["fields"]) == {"perms", "size", "hash"}
    removed = changes[f"{ws.tree}/gone"]["fields"]
    assert removed["type"] == {"old": "file", "new": None}
    assert removed["uid"]["old"] == os.getuid() and removed["uid"]["new"] is None
    added = changes[f"{ws.tree}/link"]["fields"]
    assert added["type"] == {"old": None, "new": "symlink"}
    assert added["target"] == {"old": None, "new": "f"}
    assert "perms" not in added and "hash" not in added


def test_json_with_nothing_to_report_prints_nothing(ws: Workspace) -> None:
    settle(ws)
    run = snapshot_and_diff(ws, "--format", "json")
    assert (run.returncode, run.stdout) == (0, "")


def test_names_with_newlines_cannot_forge_report_lines(ws: Workspace) -> None:
    settle(ws)
    evil = os.fsencode(ws.tree) + b"/x\nremoved (1):\n  passwd\xff"
    with open(evil, "wb") as out:
        out.write(b"boo")
    run = snapshot_and_diff(ws)
    assert run.returncode == 1
    line = [ln for ln in run.stdout.splitlines() if "/x" in ln]
    assert line == [f"  {ws.tree}/x\\nremoved (1):\\n  passwd\\xff  "
                    "(file 0644 root:root, 3 bytes)"]
    assert "removed (1):" not in run.stdout.replace("\\nremoved (1):", "")


def test_hash_algorithm_change_is_said_once_not_per_file(ws: Workspace) -> None:
    for name in "abc":
        (ws.tree / name).write_text(name)
    settle(ws)
    (ws.tree / "a").chmod(0o600)
    assert ws.run("snapshot", "--hash", "xxh3").returncode == 0
    run = ws.run("diff")
    assert run.returncode == 1
    assert run.stdout.count("note: content not compared") == 1
    assert "sha256" in run.stdout and "xxh3" in run.stdout
    assert "content changed" not in run.stdout
    assert "perms 0644 → 0600" in run.stdout
    # Now both sides are xxh3: content is compared again, and nothing more is said.
    assert ws.run("snapshot", "--hash", "xxh3").returncode == 0
    assert ws.run("diff").stdout == ""


def test_unreadable_file_is_reported_as_such_once(ws: Workspace) -> None:
    needs_root()  # the pub scan drops to nobody, who cannot read a 0600 root file
    (ws.tree / "f").write_text("x")
    settle(ws)
    (ws.tree / "f").chmod(0o600)
    run = snapshot_and_diff(ws)
    assert run.returncode == 1
    assert "could not be read (content not checked)" in run.stdout
    assert "perms 0644 → 0600" in run.stdout
    (ws.tree / "f").write_text("changed while unreadable")
    again = snapshot_and_diff(ws)
    # The size is still visible to an unprivileged scan; the content is not.
    assert "size 1 → 24" in again.stdout and "content changed" not in again.stdout
    assert snapshot_and_diff(ws).stdout == ""


def test_check_snapshots_then_reports(ws: Workspace) -> None:
    settle(ws)
    (ws.tree / "new").write_text("x")
    run = ws.run("check")
    assert run.returncode == 1, run.stderr
    assert f"{ws.tree}/new" in run.stdout
    quiet = ws.run("check")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


def test_diff_without_mode_covers_every_mode_with_a_snapshot(ws: Workspace) -> None:
    needs_root()
    secret = ws.tree / "root-only"
    secret.mkdir(mode=0o700)
    ws.write_list("root", str(secret))
    (ws.tree / "pub").mkdir()
    ws.write_list("pub", str(ws.tree / "pub"))
    assert ws.run("snapshot", "--mode", "all").returncode == 0
    first = ws.run("diff")
    assert first.returncode == 1
    assert "pub:" in first.stdout and "root:" in first.stdout
    assert (ws.state / "root" / "reported_root.stat").stat().st_mode & 0o777 == 0o600
    (secret / "key").write_text("k")
    (ws.tree / "pub" / "file").write_text("p")
    assert ws.run("snapshot", "--mode", "all").returncode == 0
    run = ws.run("diff", "--format", "json")
    modes = {c["path"]: c["mode"] for c in json.loads(run.stdout)["changes"]}
    assert modes == {f"{secret}/key": "root", f"{ws.tree}/pub/file": "pub"}
    assert ws.run("diff").stdout == ""


def test_two_diffs_at_once_report_a_change_only_once(ws: Workspace) -> None:
    settle(ws)
    (ws.tree / "new").write_text("x")
    assert ws.run("snapshot").returncode == 0
    ws.write_config("[snapshot]\nlock_timeout = 60\n")  # however slowly the runs start
    report_lock = load_settings(ws.config, ws.state).layout.report_lock()
    # The lock is held until all three runs wait at it: then they race for it.
    with lock_held_by_its_owner(report_lock):
        runs = [ws.spawn("diff") for _ in range(3)]
        wait_until_all_have_open(report_lock, runs)
    outputs = [run.communicate(timeout=60) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 0, 1], outputs
    assert sum(out.count(f"{ws.tree}/new") for out, _ in outputs) == 1


def test_a_diff_held_up_by_another_says_so(ws: Workspace) -> None:
    from systraq.fs.lock import locked

    settle(ws)
    ws.write_config("[snapshot]\nlock_timeout = 0.2\n")
    with locked(ws.state / "root" / "report.lock", 1):
        run = ws.run("diff")
    assert run.returncode == 2
    assert "report.lock" in run.stderr and "another systraq run" in run.stderr
    assert run.stderr.count("\n") == 1


def test_extra_report_fields_from_the_config_are_reported(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    write_config(ws, "[report]\nfields = [\"perms\", \"mtime\"]\n")
    os.utime(ws.tree / "f", (1_000_000_000, 1_000_000_000))
    assert ws.run("snapshot").returncode == 0
    run = ws.run("diff")
    assert run.returncode == 1 and "→ 2001-09-09" in run.stdout


def test_report_that_cannot_be_written_is_reported_again(ws: Workspace) -> None:
    settle(ws)
    (ws.tree / "new").write_text("x")
    assert ws.run("snapshot").returncode == 0
    with open("/dev/full", "w") as full:  # a real process: its stdout is /dev/full
        failed = ws.spawn("diff", stdout=full)
        _, error = failed.communicate(timeout=60)
    assert failed.returncode == 2 and "No space left on device" in error
    again = ws.run("diff")
    assert again.returncode == 1 and f"{ws.tree}/new" in again.stdout
