"""Ignore rules in logcheck's syntax match what grep -E (which logcheck runs) matches."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from systraq.config import Settings
from systraq.daily.context import DailyContext
from systraq.daily.logs import load_rules, translate

from .conftest import REPO

SAMPLES = [
    "Nov 23 06:25:01 web1 CRON[4242]: pam_unix(cron:session): session opened for user root"
    "(uid=0) by (uid=0)",
    "Nov 23 06:25:01 web1 CRON[4242]: pam_unix(cron:session): session closed for user root",
    "2026-11-23T06:25:01.123456+00:00 web1 CRON[4243]: (root) CMD (test -x /usr/sbin/anacron)",
    "Nov  3 07:00:00 web1 systemd[1]: Started session-4.scope - Session 4 of User alice.",
    "Nov  3 07:00:00 web1 systemd[1]: logrotate.service: Deactivated successfully.",
    "Nov  3 07:00:00 web1 systemd[1]: apt-daily.service: Consumed 1.2s CPU time.",
    "Nov  3 07:00:00 web1 systemd-logind[500]: New session 4 of user alice.",
    "2026-11-23T06:25:01.123456+00:00 web1 sshd[77]: Accepted publickey for alice from "
    "192.0.2.1 port 50000 ssh2: ED25519 SHA256:abcDEF+/x0=",
    "Nov 23 06:25:01 web1 sshd[77]: Received disconnect from 192.0.2.1 port 50000:11: "
    "disconnected by user",
    "Nov 23 06:25:01 web1 sshd[78]: Failed password for root from 203.0.113.9 port 22 ssh2",
    "Nov 23 06:25:01 web1 kernel: [ 1.0] EXT4-fs error (device sda1): lost",
    "Nov 23 06:25:01 web1 CRON[1]: (root) CMD (rm -rf /) and more",
]


def _context(tmp_path) -> DailyContext:
    config = tmp_path / "config"
    (config / "ignore.d").mkdir(parents=True)
    for rules in (REPO / "etc" / "ignore.d").iterdir():
        (config / "ignore.d" / rules.name).write_bytes(rules.read_bytes())
    return DailyContext(Settings(config_dir=config, state_dir=tmp_path))


def _grep(path: str, lines: list[str]) -> set[str]:
    """The lines grep -E selects with the rules of a file, comments and blank lines
    removed first, as logcheck does."""
    with open(path) as rules:
        patterns = [r.rstrip("\n") for r in rules if r.strip() and not r.startswith("#")]
    done = subprocess.run(["grep", "-E", *(f"-e{p}" for p in patterns)], capture_output=True,
                          text=True, input="\n".join(lines) + "\n",
                          env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"})
    assert done.returncode in (0, 1), done.stderr
    return set(done.stdout.splitlines())


def test_shipped_rules_compile_and_drop_what_grep_drops(tmp_path) -> None:
    rules = load_rules(_context(tmp_path))
    assert rules.errors == [] and rules.count >= 10
    ours = {line for line in SAMPLES if rules.matches(line)}
    theirs = set()
    for path in (REPO / "etc" / "ignore.d").iterdir():
        theirs |= _grep(str(path), SAMPLES)
    assert ours == theirs
    assert SAMPLES[9] not in ours and SAMPLES[10] not in ours and SAMPLES[11] not in ours
    assert SAMPLES[0] in ours and SAMPLES[7] in ours


@pytest.mark.parametrize(("rule", "line", "match"), [
    (r"^a[[:digit:]]+b$", "a123b", True),
    (r"^a[[:digit:]]+b$", "a1x3b", False),
    (r"[^]x]+y", "aay", True),
    (r"\<word\>", "a word here", True),
    (r"\<word\>", "swordfish", False),
    (r"[\]", "back\\slash", True),  # a backslash in brackets is itself, as grep has it
])
def test_logcheck_syntax_means_what_grep_means(rule: str, line: str, match: bool) -> None:
    import re

    assert bool(re.search(translate(rule), line)) is match


_ALPHABET = st.sampled_from(["a", "b", "1", " ", ".", "[[:digit:]]", "[[:alpha:]]", "[^a]",
                             "*", "+", "?", "(a|b)", "\\.", "^", "$", "[]a]", "\\<", "\\>"])


@settings(max_examples=60, deadline=None)
@given(st.lists(_ALPHABET, min_size=1, max_size=6).map("".join),
       st.lists(st.sampled_from(["a", "b", "1", " ", ".", "x"]), max_size=8).map("".join))
def test_translated_rules_agree_with_grep(rule: str, line: str) -> None:
    import re

    try:
        pattern = re.compile(translate(rule))
    except re.error:
        return  # a rule Python refuses is reported as not compiling, not misapplied
    done = subprocess.run(["grep", "-E", "-q", "-e", rule], input=line + "\n", text=True,
                          env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"}, capture_output=True)
    if done.returncode == 2:
        return  # grep refuses it too
    assert bool(pattern.search(line)) is (done.returncode == 0), (rule, translate(rule))
