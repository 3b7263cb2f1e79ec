"""systraq baseline and diff --baseline: differences stand until the administrator accepts them."""

from __future__ import annotations

from .conftest import Workspace, needs_root
from .diffkit import json_changes, settle


def _baselined(ws: Workspace) -> None:
    settle(ws)
    accepted = ws.run("baseline")
    assert accepted.returncode == 0, accepted.stderr
    assert "as the first baseline" in accepted.stdout


def test_diff_baseline_keeps_showing_a_difference_until_it_is_accepted(ws: Workspace) -> None:
    (ws.tree / "sshd_config").write_text("PermitRootLogin no\n")
    _baselined(ws)
    (ws.tree / "sshd_config").chmod(0o666)
    assert ws.run("snapshot").returncode == 0
    assert ws.run("diff").returncode == 1  # reported once against the last report...
    assert ws.run("diff").stdout == ""
    for _ in range(2):  # ...but it stays a difference from the baseline
        run = ws.run("diff", "--baseline")
        assert run.returncode == 1
        assert "changes since the accepted baseline" in run.stdout
        assert "perms 0644 → 0666" in run.stdout
    accepted = ws.run("baseline")
    assert accepted.returncode == 0
    assert "1 differed from the previous baseline" in accepted.stdout
    run = ws.run("diff", "--baseline")
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_diff_baseline_records_nothing(ws: Workspace) -> None:
    _baselined(ws)
    (ws.tree / "new").write_text("x")
    assert ws.run("snapshot").returncode == 0
    assert ws.run("diff", "--baseline").returncode == 1
    report = ws.run("diff")  # the reported copy did not move: the change is still news
    assert report.returncode == 1 and f"{ws.tree}/new" in report.stdout


def test_baseline_with_a_path_accepts_only_that_path(ws: Workspace) -> None:
    for name in ("expected", "unexpected"):
        (ws.tree / name).write_text("v1\n")
    _baselined(ws)
    for name in ("expected", "unexpected"):
        (ws.tree / name).write_text("version 2\n")
    (ws.tree / "also-new").write_text("x")
    assert ws.run("snapshot").returncode == 0
    accepted = ws.run("baseline", str(ws.tree / "expected"))
    assert accepted.returncode == 0, accepted.stderr
    assert "accepted 1 difference at the given paths; 2 still differ from" in accepted.stdout
    left = json_changes(ws.run("diff", "--baseline", "--format", "json").stdout)
    assert set(left) == {f"{ws.tree}/unexpected", f"{ws.tree}/also-new"}


def test_baseline_path_accepts_removals_and_whole_directories(ws: Workspace) -> None:
    (ws.tree / "etc").mkdir()
    (ws.tree / "etc" / "old.conf").write_text("x")
    (ws.tree / "keep").write_text("x")
    _baselined(ws)
    (ws.tree / "etc" / "old.conf").unlink()
    (ws.tree / "etc" / "sub").mkdir()
    (ws.tree / "etc" / "sub" / "new.conf").write_text("y")
    (ws.tree / "keep").unlink()
    assert ws.run("snapshot").returncode == 0
    assert ws.run("baseline", str(ws.tree / "etc")).returncode == 0
    left = json_changes(ws.run("diff", "--baseline", "--format", "json").stdout)
    assert {p: c["kind"] for p, c in left.items()} == {f"{ws.tree}/keep": "removed"}


def test_baseline_globs_match_one_component_each(ws: Workspace) -> None:
    for name in ("a.conf", "b.conf", "c.txt"):
        (ws.tree / name).write_text("1")
    _baselined(ws)
    for name in ("a.conf", "b.conf", "c.txt"):
        (ws.tree / name).write_text("22")
    assert ws.run("snapshot").returncode == 0
    assert ws.run("baseline", f"{ws.tree}/*.conf").returncode == 0
    left = json_changes(ws.run("diff", "--baseline", "--format", "json").stdout)
    assert set(left) == {f"{ws.tree}/c.txt"}


def test_baseline_path_with_no_difference_is_warned_about(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    _baselined(ws)
    (ws.tree / "f").write_text("yy")
    assert ws.run("snapshot").returncode == 0
    run = ws.run("baseline", str(ws.tree / "typo"))
    assert run.returncode == 0
    assert f"{ws.tree}/typo: no difference from the baseline there" in run.stderr
    assert "accepted 0 differences" in run.stdout
    assert f"{ws.tree}/f" in ws.run("diff", "--baseline").stdout


def test_baseline_relative_path_is_refused(ws: Workspace) -> None:
    (ws.tree / "f").write_text("x")
    _baselined(ws)
    (ws.tree / "f").write_text("yy")
    assert ws.run("snapshot").returncode == 0
    # ws.run works in ws.root: "tree/f" would name the file, but a relative PATH (or "")
    # is refused rather than taken from wherever the command happens to run.
    run = ws.run("baseline", "tree/f")
    assert run.returncode == 2 and "is not an absolute path" in run.stderr
    assert f"{ws.tree}/f" in ws.run("diff", "--baseline").stdout


def test_first_partial_baseline_holds_only_the_accepted_paths(ws: Workspace) -> None:
    (ws.tree / "a").write_text("x")
    (ws.tree / "b").write_text("x")
    settle(ws)
    assert ws.run("baseline", str(ws.tree / "a")).returncode == 0
    left = json_changes(ws.run("diff", "--baseline", "--format", "json").stdout)
    assert f"{ws.tree}/a" not in left and left[f"{ws.tree}/b"]["kind"] == "added"


def test_baseline_again_says_it_already_is_the_newest_snapshot(ws: Workspace) -> None:
    _baselined(ws)
    run = ws.run("baseline")
    assert run.returncode == 0 and "already is the newest snapshot" in run.stdout


def test_diff_baseline_without_a_baseline_is_trouble(ws: Workspace) -> None:
    settle(ws)
    run = ws.run("diff", "--baseline")
    assert run.returncode == 2 and run.stdout == ""
    assert "baseline_pub.stat: no pub baseline yet" in run.stderr


def test_root_baseline_is_private(ws: Workspace) -> None:
    needs_root()
    secret = ws.tree / "secret"
    secret.mkdir(mode=0o700)
    (secret / "key").write_text("k")
    ws.write_list("root", str(secret))
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    assert ws.run("baseline", "--mode", "root").returncode == 0
    assert (ws.state / "root" / "baseline_root.stat").stat().st_mode & 0o777 == 0o600
    (secret / "key").write_text("k2")
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    assert ws.run("baseline", "--mode", "root", str(secret / "key")).returncode == 0
    assert (ws.state / "root" / "baseline_root.stat").stat().st_mode & 0o777 == 0o600
