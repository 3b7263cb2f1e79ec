"""Rules and exclusions in the list files: what an administrator writes, what gets reported."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from systraq.config import load_settings
from systraq.errors import ConfigError
from systraq.patterns import covers
from systraq.snapshot.listfiles import Pattern, parse_homelist, parse_list
from systraq.snapshot.pathrules import EXCLUDE, INCLUDE, PathRules, RuleLine

from .conftest import Workspace, entries_of
from .diffkit import json_changes, write_config

NAMES = ("default", "growing", "perms", "content", "exists")


@pytest.fixture(autouse=True)
def no_host_homes(request: pytest.FixtureRequest) -> None:
    """Homes come from the test: an empty passwd file (the host's homes stay out)."""
    if "ws" in request.fixturenames:
        ws: Workspace = request.getfixturevalue("ws")
        (ws.config / "passwd").write_text("")
        write_config(ws, f'[snapshot]\npasswd = "{ws.config}/passwd"\n')


def write(tmp_path: Path, data: bytes, name: str = "snapshot_pub.list") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- the list line syntax ------------------------------------------------------------------

def test_a_rule_follows_the_path_after_a_tab_or_two_spaces(tmp_path: Path) -> None:
    path = write(tmp_path, b"/var/log/syslog  growing\n/etc/motd\tperms\n"
                           b"/srv/www    content  \n/etc\n")
    found = [(p.text, p.rule) for p in parse_list(path, NAMES)]
    assert found == [(b"/var/log/syslog", "growing"), (b"/etc/motd", "perms"),
                     (b"/srv/www", "content"), (b"/etc", "default")]


def test_plain_lines_keep_their_meaning_spaces_included(tmp_path: Path) -> None:
    path = write(tmp_path, b"/srv/My Documents\n/srv/a b c\n/srv/x  y.txt\n")
    assert [(p.text, p.rule) for p in parse_list(path, NAMES)] == [
        (b"/srv/My Documents", "default"), (b"/srv/a b c", "default"),
        (b"/srv/x  y.txt", "default")]


def test_an_unknown_rule_names_file_line_and_the_way_out(tmp_path: Path) -> None:
    path = write(tmp_path, b"/etc\n/var/log/syslog  grwoing\n")
    with pytest.raises(ConfigError, match=r"snapshot_pub.list:2: unknown rule 'grwoing' "
                                          r"\(known: default, growing.*\[ \]"):
        parse_list(path, NAMES)


def test_a_bang_line_excludes_and_takes_no_rule(tmp_path: Path) -> None:
    path = write(tmp_path, b"/etc\n!/etc/mtab\n! /var/lib/systraq\n")
    found = [(p.text, p.exclude) for p in parse_list(path, NAMES)]
    assert found == [(b"/etc", False), (b"/etc/mtab", True), (b"/var/lib/systraq", True)]
    bad = write(tmp_path, b"!/etc/mtab  growing\n")
    with pytest.raises(ConfigError, match=r"list:1: an exclusion takes no rule"):
        parse_list(bad, NAMES)


def test_homelist_lines_take_rules_and_exclusions_and_dot_slash_bang(tmp_path: Path) -> None:
    path = write(tmp_path, b".bash_history  growing\n!.cache\n./!odd\n",
                 "snapshot_pub.homelist")
    found = [(p.text, p.rule, p.exclude) for p in parse_homelist(path, NAMES)]
    assert found == [(b".bash_history", "growing", False), (b".cache", "default", True),
                     (b"!odd", "default", False)]


def test_filetraq_lists_have_no_rule_syntax(tmp_path: Path) -> None:
    path = write(tmp_path, b"/srv/a  growing\n", "filetraq.conf")
    assert [(p.text, p.rule) for p in parse_list(path)] == [(b"/srv/a  growing", "default")]


# --- [rules] in systraq.conf -----------------------------------------------------------------

def test_rules_section_defines_rules_a_list_may_name(ws: Workspace) -> None:
    write_config(ws, '[rules]\nkeys = { fields = ["type", "perms", "uid", "hash"] }\n\n'
                     '[rules.logs]\nfields = ["type", "size", "hash"]\ngrowing = true\n')
    book = load_settings(ws.config, ws.state).rule_book
    assert book["keys"].fields == ("type", "hash", "perms", "uid")
    assert book["logs"].growing and set(NAMES) <= set(book)


@pytest.mark.parametrize("text, line, message", [
    ('[rules]\nx = { fields = ["type", "colour"] }\n', 2, "rules.x.fields: unknown field "
                                                          "'colour'"),
    ('[rules]\n\n[rules.y]\nfields = ["type"]\nspeed = 3\n', 5, "rules.y: unknown key 'speed'"),
    ('[rules.z]\nfields = ["type"]\ngrowing = "yes"\n', 3, "rules.z.growing must be true or "
                                                          "false"),
    ('[rules.growing]\nfields = ["type"]\n', 1, "'growing' is a shipped rule"),
    ('[rules.w]\nfields = ["perms"]\ngrowing = true\n', 3, "must include size and hash"),
])
def test_rule_errors_name_file_and_line(ws: Workspace, text: str, line: int,
                                        message: str) -> None:
    write_config(ws, text)
    ws.write_list("pub", str(ws.tree))
    done = ws.run("snapshot")
    assert done.returncode == 2
    assert done.stderr.startswith(f"systraq: {ws.config}/systraq.conf:{line}: ")
    assert message in done.stderr
    assert "Traceback" not in done.stderr


# --- exclusions ------------------------------------------------------------------------------

def test_excluded_paths_never_appear_in_a_snapshot_or_report(ws: Workspace) -> None:
    (ws.tree / "etc").mkdir()
    (ws.tree / "etc" / "mtab").write_text("a\n")
    (ws.tree / "etc" / "hosts").write_text("b\n")
    (ws.tree / "cache" / "deep").mkdir(parents=True)
    (ws.tree / "cache" / "deep" / "x").write_text("c\n")
    (ws.tree / "run.pid").write_text("1\n")
    ws.write_list("pub", str(ws.tree), f"!{ws.tree}/etc/mtab", f"!{ws.tree}/cache",
                  f"!{ws.tree}/*.pid", f"{ws.tree}/etc/mtab")  # exclusion wins over a line
    assert ws.run("snapshot", user="nobody").returncode == 0
    paths = {line.split("\t")[0] for line in entries_of(ws.state / "pub" / "snapshot_pub.stat")}
    assert str(ws.tree / "etc" / "hosts") in paths
    assert not {p for p in paths if "mtab" in p or "cache" in p or p.endswith(".pid")}
    assert ws.run("diff").returncode == 1
    for name in ("etc/mtab", "cache/deep/x", "run.pid"):
        (ws.tree / name).write_text("changed\n")
    (ws.tree / "cache" / "new").write_text("new\n")
    assert ws.run("check").returncode == 0  # nothing to say


def test_a_path_excluded_later_is_not_reported_as_removed(ws: Workspace) -> None:
    (ws.tree / "mtab").write_text("a\n")
    (ws.tree / "hosts").write_text("b\n")
    _settle(ws, str(ws.tree))
    ws.write_list("pub", str(ws.tree), f"!{ws.tree}/mtab")
    done = ws.run("check")
    assert done.returncode == 1
    assert "mtab" not in done.stdout
    assert "note: 1 entry the lists now exclude left this snapshot" in done.stdout


def test_an_excluded_directory_is_not_even_entered(ws: Workspace) -> None:
    trap = ws.tree / "trap"
    trap.mkdir()
    trap.chmod(0o700)  # the pub scan cannot enter it: it must not try, so no blind spot
    ws.write_list("pub", str(ws.tree), f"!{trap}")
    done = ws.run("check")
    assert done.returncode == 1
    assert "not watched" not in done.stdout and str(trap) not in done.stdout


# --- the shipped rules ---------------------------------------------------------------------

def _settle(ws: Workspace, *lines: str, user: str | None = "nobody") -> None:
    ws.write_list("pub", *lines)
    assert ws.run("snapshot", user=user).returncode == 0
    assert ws.run("diff").returncode == 1


def test_perms_rule_ignores_content_and_content_rule_ignores_perms(ws: Workspace) -> None:
    (ws.tree / "conf").write_text("a\n")
    (ws.tree / "data").write_text("a\n")
    _settle(ws, str(ws.tree), f"{ws.tree}/conf  perms", f"{ws.tree}/data  content")
    (ws.tree / "conf").write_text("rewritten\n")
    (ws.tree / "data").chmod(0o604)
    assert ws.run("check").stdout == ""
    (ws.tree / "conf").chmod(0o604)
    (ws.tree / "data").write_text("rewritten\n")
    report = json_changes(ws.run("check", "--format", "json").stdout)
    assert set(report[str(ws.tree / "conf")]["fields"]) == {"perms"}
    assert set(report[str(ws.tree / "data")]["fields"]) == {"hash", "size"}


def test_exists_rule_reports_only_coming_and_going(ws: Workspace) -> None:
    spool = ws.tree / "spool"
    spool.mkdir()
    (spool / "job").write_text("a\n")
    _settle(ws, f"{spool}\texists")
    (spool / "job").write_text("different content\n")
    (spool / "job").chmod(0o604)
    assert ws.run("check").stdout == ""
    (spool / "job").unlink()
    (spool / "other").write_text("b\n")
    text = ws.run("check").stdout
    assert f"removed (1):\n  {spool}/job  (file)" in text
    assert f"added (1):\n  {spool}/other  (file)" in text


def test_the_most_specific_line_names_the_rule(ws: Workspace) -> None:
    logs = ws.tree / "log"
    logs.mkdir()
    for name in ("syslog", "wtmp"):
        (logs / name).write_text("start\n")
    _settle(ws, f"{logs}  growing", f"{logs}/wtmp  default")
    for name in ("syslog", "wtmp"):
        with open(logs / name, "a") as handle:
            handle.write("more\n")
    report = json_changes(ws.run("check", "--format", "json").stdout)
    assert list(report) == [str(logs / "wtmp")]


# --- growing ---------------------------------------------------------------------------------

def _append(path: Path, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


def test_a_growing_log_that_grows_is_not_reported(ws: Workspace) -> None:
    log = ws.tree / "syslog"
    log.write_text("line 1\n")
    _settle(ws, f"{log}  growing")
    for n in range(2, 5):
        _append(log, f"line {n}\n")
        done = ws.run("check")
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_a_growing_log_truncated_and_rewritten_is_reported_once(ws: Workspace) -> None:
    log = ws.tree / "syslog"
    log.write_text("line 1\nline 2\n")
    _settle(ws, f"{log}  growing")
    log.write_text("forged line 1\nline 2\nline 3\n")  # longer, old content not a prefix
    done = ws.run("check")
    assert done.returncode == 1
    assert f"changed (1):\n  {log}\n      content changed (size 14 → 28)" in done.stdout
    _append(log, "line 4\n")
    assert ws.run("check").stdout == ""
    log.write_text("x\n")  # truncated
    assert "content changed (size 35 → 2)" in ws.run("check").stdout


def test_growth_is_checked_across_snapshots_no_report_saw(ws: Workspace) -> None:
    log = ws.tree / "syslog"
    log.write_text("a\n")
    _settle(ws, f"{log}  growing")
    for text in ("b\n", "c\n"):  # hourly snapshots, the half-hourly diff missed them
        _append(log, text)
        assert ws.run("snapshot", user="nobody").returncode == 0
    assert ws.run("diff").stdout == ""
    # A rewrite between two snapshots no report saw still breaks the chain.
    log.write_text("A\nb\nc\n")
    assert ws.run("snapshot", user="nobody").returncode == 0
    _append(log, "d\n")
    assert ws.run("snapshot", user="nobody").returncode == 0
    assert "content changed (size 6 → 8)" in ws.run("diff").stdout


def test_growth_survives_a_full_rehash(ws: Workspace) -> None:
    log = ws.tree / "syslog"
    log.write_text("a\n")
    _settle(ws, f"{log}  growing")
    _append(log, "b\n")
    assert ws.run("snapshot", "--full", user="nobody").returncode == 0
    assert ws.run("diff").stdout == ""


def test_growing_hash_is_marked_and_still_matches_sha256sum(ws: Workspace) -> None:
    log = ws.tree / "syslog"
    log.write_text("a\n")
    ws.write_list("pub", f"{log}  growing")
    before = time.time_ns()
    assert ws.run("snapshot", user="nobody").returncode == 0
    line = entries_of(ws.state / "pub" / "snapshot_pub.stat")[0].split("\t")
    since, digest = line[14].removeprefix("appended=").split(":")
    assert int(since) >= before - 10**9
    expected = subprocess.run(["sha256sum", str(log)], capture_output=True, text=True,
                              check=True).stdout.split()[0]
    assert digest == expected


def test_a_log_of_another_rule_growing_is_reported(ws: Workspace) -> None:
    log = ws.tree / "syslog"
    log.write_text("a\n")
    _settle(ws, str(log))
    _append(log, "b\n")
    report = json_changes(ws.run("check", "--format", "json").stdout)
    assert report[str(log)]["fields"]["size"] == {"old": 2, "new": 4}


def test_a_rule_dropped_from_the_list_does_not_flood(ws: Workspace) -> None:
    log = ws.tree / "syslog"
    log.write_text("a\n")
    _settle(ws, f"{log}  growing")
    ws.write_list("pub", str(log))  # back to the default rule: same content, no change
    os.utime(log)
    assert ws.run("check").stdout == ""


# --- the rule of a path: walk and question agree ---------------------------------------------

_PART = st.sampled_from([b"a", b"b", b"*", b"a*", b"?"])
_LINE = st.tuples(st.lists(_PART, min_size=0, max_size=3),
                  st.sampled_from([INCLUDE, INCLUDE, EXCLUDE]),
                  st.sampled_from(["default", "perms", "growing"]))


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(_LINE, max_size=6),
       path=st.lists(st.sampled_from([b"a", b"b", b"ab", b"c"]), min_size=1, max_size=4))
def test_the_rule_of_a_path_is_the_deepest_covering_line_and_exclusions_win(
        lines, path) -> None:
    rule_lines = [RuleLine(tuple(parts), kind, rule, rule == "growing", order)
                  for order, (parts, kind, rule) in enumerate(lines)]
    rules = PathRules(rule_lines)
    target = b"/" + b"/".join(path)
    covering = [ln for ln in rule_lines if covers(list(ln.parts), target)]
    includes = [ln for ln in covering if ln.kind == INCLUDE]
    best = max(includes, key=lambda ln: (len(ln.parts), ln.order)) if includes else None
    scope = rules.scope(target)
    assert scope.rule == (best.rule if best else "default")
    assert scope.excluded == any(ln.kind == EXCLUDE for ln in covering)
    # Walking down one component at a time comes to the same.
    walked = rules.top
    for part in path:
        walked = walked.child(part)
    assert (walked.rule, walked.excluded) == (scope.rule, scope.excluded)


def test_pattern_where_names_file_and_line() -> None:
    assert Pattern(b"/etc", Path("/x/snapshot_pub.list"), 7).where == "snapshot_pub.list:7"


def test_json_report_is_valid_with_rules(ws: Workspace) -> None:
    (ws.tree / "f").write_text("a\n")
    _settle(ws, f"{ws.tree}  content")
    (ws.tree / "f").write_text("bb\n")
    document = json.loads(ws.run("check", "--format", "json").stdout)
    assert [c["attention"] for c in document["changes"]] == [False]
