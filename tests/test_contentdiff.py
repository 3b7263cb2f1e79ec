"""Content diffs: they turn the old text into the new, and look like diff(1)'s."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from systraq.filetraq.contentdiff import NO_NEWLINE, diff, is_binary, shown

HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def unified(old: bytes, new: bytes, **kwargs) -> list[str]:
    return diff(old, new, old_label="old", new_label="new", old_time_ns=0, new_time_ns=0,
                **kwargs)


def apply_unified(old: bytes, lines: list[str]) -> bytes:
    """Apply a unified diff of ASCII text the way patch(1) would, strictly."""
    source = [ln + b"\n" for ln in old.split(b"\n")]
    if source[-1] == b"\n":
        source.pop()
    else:
        source[-1] = source[-1][:-1]
    out: list[bytes] = []
    at = 0
    prefix = " "
    for line in lines[2:]:
        if (match := HUNK.fullmatch(line)):
            start = int(match.group(1))
            start = start - 1 if match.group(2) != "0" else start
            out.extend(source[at:start])
            at = start
            continue
        if line == NO_NEWLINE:  # the line before has no newline: in the new text too?
            if prefix in " +":
                out[-1] = out[-1].removesuffix(b"\n")
            continue
        prefix, text = line[0], line[1:].encode() + b"\n"
        if prefix in " -":
            assert source[at].rstrip(b"\n") == text.rstrip(b"\n"), (source[at], text)
            at += 1
        if prefix in " +":
            out.append(text)
    out.extend(source[at:])
    return b"".join(out)


texts = st.lists(st.sampled_from(["alpha", "beta", "gamma", "", "delta epsilon"]),
                 max_size=12).map("\n".join).flatmap(
    lambda t: st.sampled_from([t.encode(), (t + "\n").encode()]))


@settings(max_examples=200, deadline=None)
@given(old=texts, new=texts)
def test_every_unified_diff_turns_the_old_text_into_the_new(old, new):
    lines = unified(old, new)
    if old == new:
        assert lines == []
        return
    assert apply_unified(old, lines) == new


CASES = {
    "one line changed": (b"a\nb\nc\nd\ne\nf\ng\n", b"a\nb\nc\nD\ne\nf\ng\n"),
    "line added at the end": (b"a\nb\n", b"a\nb\nc\n"),
    "line removed at the start": (b"a\nb\nc\n", b"b\nc\n"),
    "from nothing": (b"", b"a\n"),
    "to nothing": (b"a\nb\n", b""),
    "no newline at the end": (b"a\nb", b"a\nc"),
    "two distant changes": (b"".join(b"%d\n" % i for i in range(20)),
                            b"".join(b"%d\n" % (i * (i not in (2, 17))) for i in range(20))),
    "C function context": (b"int main()\n{\n  a;\n  b;\n  c;\n}\n",
                           b"int main()\n{\n  a;\n  B;\n  c;\n}\n"),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("style,options", [("unified", ["-u"]), ("context", ["-p", "-C", "1"])])
def test_simple_edits_look_exactly_as_gnu_diff_prints_them(tmp_path: Path, case, style,
                                                           options):
    old, new = CASES[case]
    (tmp_path / "old").write_bytes(old)
    (tmp_path / "new").write_bytes(new)
    gnu = subprocess.run(["diff", *options, "old", "new"], capture_output=True, text=True,
                         cwd=tmp_path).stdout.splitlines()
    ours = unified(old, new, style=style)
    assert ours[2:] == gnu[2:]
    assert [ln.split("\t")[0] for ln in ours[:2]] == [ln.split("\t")[0] for ln in gnu[:2]]


def test_newold_order_diffs_the_new_content_against_the_backup():
    lines = diff(b"old\n", b"new\n", old_label="BACKUP", new_label="FILE", old_time_ns=0,
                 new_time_ns=0, order="newold")
    assert [ln.split("\t")[0] for ln in lines] == ["--- FILE", "+++ BACKUP", "@@ -1 +1 @@",
                                                   "-new", "+old"]


def test_control_characters_and_invalid_utf8_are_shown_escaped():
    assert shown(b"\x1b[2Jcleared\r\n") == "\\x1b[2Jcleared\\x0d"
    assert shown(b"tab\tstays \xff\xfe caf\xc3\xa9\n") == "tab\tstays \\xff\\xfe caf\u00e9"
    assert shown("\u009b31m".encode()) == "\\x9b31m"


def test_a_nul_byte_makes_content_binary_as_for_diff():
    assert is_binary(b"text", b"a\0b")
    assert not is_binary(b"text\n", b"\xff\xfe latin junk")
