"""Content diffs print what GNU diff prints, and no content can make one take long."""

from __future__ import annotations

import hashlib
import os
import pwd
import random
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from systraq.filetraq.contentdiff import diff
from systraq.filetraq.linediff import WORK_LIMIT, TooCostly, edit_script, split_lines

from .conftest import UNPRIVILEGED, Workspace
from .filetraq_support import stored, write_list

# Few distinct lines, so that many edit scripts of the same length exist and the choice
# among them (which blank line or brace went) is what is tested; some lines look like C
# functions for diff -p.
LINES = [b"\n", b"}\n", b"{\n", b"a\n", b"b\n", b"int main()\n", b"  x;\n", b"static y\n"]
texts = st.lists(st.sampled_from(LINES), max_size=40).map(b"".join).flatmap(
    lambda t: st.sampled_from([t, t.rstrip(b"\n")]))
OPTIONS = {"unified": ["-u"], "context": ["-p", "-C", "1"]}


def gnu_diff(old: bytes, new: bytes, style: str) -> list[str]:
    """GNU diff's output for two contents, without the two header lines."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "old").write_bytes(old)
        Path(tmp, "new").write_bytes(new)
        out = subprocess.run(["diff", *OPTIONS[style], "old", "new"], cwd=tmp,
                             capture_output=True, env={**os.environ, "LC_ALL": "C"}).stdout
    return out.decode().split("\n")[2:-1]


def ours(old: bytes, new: bytes, style: str, order: str = "oldnew", **kwargs) -> list[str]:
    return diff(old, new, old_label="old", new_label="new", old_time_ns=0, new_time_ns=0,
                style=style, order=order, **kwargs)[2:]


@settings(max_examples=300, deadline=None)
@given(old=texts, new=texts, style=st.sampled_from(sorted(OPTIONS)),
       order=st.sampled_from(["oldnew", "newold"]))
def test_every_diff_is_line_for_line_what_gnu_diff_prints(old, new, style, order):
    first, second = (old, new) if order == "oldnew" else (new, old)
    assert ours(old, new, style, order) == gnu_diff(first, second, style)


def test_larger_files_with_scattered_edits_diff_as_gnu_diff_does():
    rng = random.Random(5)
    words = [b"%d\n" % n for n in range(40)] + [b"\n"] * 5
    for _ in range(6):
        old = [rng.choice(words) for _ in range(3000)]
        new = list(old)
        for _ in range(60):
            at = rng.randrange(len(new))
            if rng.random() < 0.5:
                del new[at]
            else:
                new.insert(at, rng.choice(words + [b"added\n"]))
        a, b = b"".join(old), b"".join(new)
        for style in OPTIONS:
            assert ours(a, b, style) == gnu_diff(a, b, style)


def crafted(size: int, seed: int) -> bytes:
    """The attack from the issue: 100 distinct lines repeated, in a random order."""
    lines = [b"line %03d of a file anyone may write\n" % n for n in range(100)]
    out = lines * (size // sum(map(len, lines)) + 1)
    random.Random(seed).shuffle(out)
    return b"".join(out)[:size]


def test_crafted_one_mebibyte_files_stop_at_the_work_limit():
    old, new = crafted(1 << 20, 1), crafted(1 << 20, 2)
    with pytest.raises(TooCostly) as stopped:
        edit_script(old, new, horizon=3)
    # The limit is checked at every diagonal: it is overrun by one run of equal lines.
    assert WORK_LIMIT <= stopped.value.work <= WORK_LIMIT + len(split_lines(old))
    with pytest.raises(TooCostly):
        ours(old, new, "context")


def test_a_smaller_crafted_file_is_diffed_within_the_limit_and_reports_its_cost():
    old, new = crafted(4000, 1), crafted(4000, 2)
    script = edit_script(old, new, horizon=3)
    assert 0 < script.work <= WORK_LIMIT
    assert ours(old, new, "unified") == gnu_diff(old, new, "unified")


def test_a_lower_limit_stops_sooner():
    old, new = crafted(20000, 1), crafted(20000, 2)
    with pytest.raises(TooCostly) as stopped:
        edit_script(old, new, horizon=3, limit=10_000)
    assert stopped.value.work <= 10_000 + len(split_lines(old))


def test_a_long_file_with_a_few_edits_costs_little():
    old = b"".join(b"setting_%d = %d\n" % (n, n) for n in range(40000))
    new = old.replace(b"setting_20000 = 20000\n", b"setting_20000 = 1\n")
    script = edit_script(old, new, horizon=3)
    assert script.work < 1000
    assert ours(old, new, "unified") == gnu_diff(old, new, "unified")


def as_user_write(path: Path, data: bytes) -> None:
    """Write a file as the unprivileged user who owns it (directly when not root)."""
    command = ["sh", "-c", 'cat > "$0"', str(path)]
    if os.geteuid() == 0:
        command = UNPRIVILEGED + command
    subprocess.run(command, input=data, check=True)


def test_filetraq_reports_sizes_and_hashes_when_a_file_is_too_costly_to_diff(
        ws: Workspace):
    """A user crafts their authorized_keys; root's filetraq run must not stall on it."""
    home = ws.tree / "eve"
    home.mkdir(mode=0o755)
    if os.geteuid() == 0:
        os.chown(home, pwd.getpwnam("nobody").pw_uid, -1)
    target = home / "authorized_keys"
    as_user_write(target, crafted(1 << 20, 1))
    write_list(ws, str(target))
    assert ws.run("filetraq").returncode == 1
    old = target.read_bytes()
    new = crafted(1 << 20, 2)
    as_user_write(target, new)
    result = ws.run("filetraq")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"File {target} changed (previous version kept as ")
    assert lines[0].endswith(f"(too many differences to diff within {WORK_LIMIT:,} steps):")
    assert lines[1:] == [f"  was {len(old)} bytes, sha256 {hashlib.sha256(old).hexdigest()}",
                         f"  now {len(new)} bytes, sha256 {hashlib.sha256(new).hexdigest()}"]
    assert stored(ws, target).read_bytes() == new  # the store moves on: said once
    assert ws.run("filetraq").returncode == 0
