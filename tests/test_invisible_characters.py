"""Characters that hide or reorder text never reach a report raw: names, diffs, headers.

A bidirectional override (U+202E) in a name or a line makes a terminal or a mail reader
show text in another order than it is; zero-width spaces, fillers such as U+3164 and the
line separators U+2028/U+2029 make two different names look alike, or one line look like
two. Every human-readable output shows them as escapes.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from systraq.config import load_settings
from systraq.filetraq.contentdiff import diff, shown
from systraq.pathcodec import escape, unescape
from systraq.snapshot.state import Header, StateReader, StateWriter

from .conftest import Workspace
from .filetraq_support import write_list

SAMPLES = {
    "\u202e": "right-to-left override",
    "\u200b": "zero-width space",
    "\u2028": "line separator",
    "\u2029": "paragraph separator",
    "\u3164": "Hangul filler",
    "\u115f": "Hangul choseong filler",
    "\u1160": "Hangul jungseong filler",
    "\uffa0": "halfwidth Hangul filler",
    "\ufeff": "zero-width no-break space",
    "\u2066": "left-to-right isolate",
    "\u00ad": "soft hyphen",
    "\U000e0041": "tag latin capital letter A",
}
# What must not appear raw: the samples, and every format or separator character.
RAW = re.compile("[" + "".join(SAMPLES) + "".join(
    chr(c) for c in range(0x80, 0x30000)
    if unicodedata.category(chr(c)) in ("Cf", "Zl", "Zp")) + "]")


def utf8_escape(text: str) -> str:
    return "".join(f"\\x{b:02x}" for b in text.encode())


def assert_nothing_raw(text: str) -> None:
    found = RAW.findall(text)
    assert not found, [SAMPLES.get(ch, hex(ord(ch))) for ch in found]


def test_each_invisible_character_in_a_name_is_escaped_and_round_trips():
    for char in SAMPLES:
        name = f"/home/eve/.ssh/authorized{char}_keys".encode()
        field = escape(name)
        assert field == f"/home/eve/.ssh/authorized{utf8_escape(char)}_keys"
        assert unescape(field) == name


@given(st.text(max_size=40))
def test_no_escaped_field_holds_an_invisible_character(text: str):
    raw = text.encode("utf-8", "surrogatepass")
    field = escape(raw)
    assert_nothing_raw(field)
    assert unescape(field) == raw


def test_visible_non_ascii_names_stay_as_they_are():
    for name in ("/home/zoë/café", "/srv/日本語/ファイル", "/home/Ωmega/файл"):
        assert escape(name.encode()) == name


def test_invisible_characters_in_content_lines_are_shown_as_code_points():
    line = "echo ok # \u202e; rm -rf ~ \u200b\u2028next\u3164\n".encode()
    assert shown(line) == "echo ok # \\u202e; rm -rf ~ \\u200b\\u2028next\\u3164"
    lines = diff(b"a\n", line, old_label="old", new_label="new", old_time_ns=0,
                 new_time_ns=0)
    assert lines[-1] == "+echo ok # \\u202e; rm -rf ~ \\u200b\\u2028next\\u3164"
    for text in ("\u00e9t\u00e9\tcaf\u00e9 \u00a0", "\u65e5\u672c"):
        assert shown(text.encode()) == text  # readable text stays readable


def test_filetraq_report_escapes_invisible_characters_in_names_and_content(ws: Workspace):
    name = "run\u202ehs.exe\u200b\u3164"
    target = ws.tree / name
    target.write_text("PermitRootLogin no\n")
    write_list(ws, str(ws.tree))
    first = ws.run("filetraq")
    assert first.returncode == 1, first.stderr
    assert_nothing_raw(first.stdout)
    assert f"{ws.tree}/run{utf8_escape(chr(0x202e))}hs.exe" in first.stdout
    target.write_text("PermitRootLogin no\n" + "".join(f"{c}x\n" for c in SAMPLES))
    text = ws.run("filetraq")
    assert text.returncode == 1, text.stderr
    assert_nothing_raw(text.stdout)
    assert "+\\u202ex" in text.stdout.splitlines()
    assert "+\\U000e0041x" in text.stdout.splitlines()
    target.write_text("".join(f"{c}y\n" for c in SAMPLES))
    data = ws.run("filetraq", "--format", "json")
    assert data.returncode == 1, data.stderr
    assert_nothing_raw(data.stdout)
    (item,) = json.loads(data.stdout)["items"]
    assert "+\\u2028y" in item["diff"].splitlines()
    assert_nothing_raw(item["text"])


def test_diff_report_escapes_invisible_characters_in_names(ws: Workspace):
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0
    assert ws.run("diff").returncode == 1  # the first report
    for char in SAMPLES:
        (ws.tree / f"file{char}name").write_text("x\n")
    assert ws.run("snapshot").returncode == 0
    text = ws.run("diff", "--no-record")
    assert text.returncode == 1, text.stderr
    assert_nothing_raw(text.stdout)
    for char in SAMPLES:
        assert f"{ws.tree}/file{utf8_escape(char)}name" in text.stdout
    data = ws.run("diff", "--no-record", "--format", "json")
    assert_nothing_raw(data.stdout)
    paths = {change["path"] for change in json.loads(data.stdout)["changes"]}
    assert f"{ws.tree}/file{utf8_escape(chr(0x202e))}name" in paths


def test_host_and_owner_names_from_a_state_file_are_escaped_in_the_report(ws: Workspace):
    """A state file says which host and which user and group names: shown escaped."""
    (ws.tree / "f").write_text("x\n")
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0
    assert ws.run("diff").returncode == 1
    snapshot = load_settings(ws.config, ws.state).layout.snapshot("pub")
    with StateReader(snapshot) as reader:
        header, entries = reader.header, list(reader)
    host = "web1\u202e\u2028Bcc: eve@example.org"
    forged = Header(host, header.mode, header.created_ns + 1, header.hash,
                    header.full_rehash_ns, header.lists)
    with StateWriter(snapshot, forged) as writer:
        for entry in entries:
            if entry.path.endswith(b"/f"):
                entry = replace(entry, uid=entry.uid + 1, user="ro\u200bot\u3164",
                                gid=entry.gid + 1, group="wh\u2066eel")
            writer.add(entry)
    text = ws.run("diff", "--no-record")
    assert text.returncode == 1, text.stderr
    assert_nothing_raw(text.stdout)
    assert text.stdout.splitlines()[0] == (
        "systraq on web1\\xe2\\x80\\xae\\xe2\\x80\\xa8Bcc: eve@example.org: changes "
        "since the last report")
    assert "→ ro\\xe2\\x80\\x8bot\\xe3\\x85\\xa4" in text.stdout
    assert "→ wh\\xe2\\x81\\xa6eel" in text.stdout
    data = ws.run("diff", "--no-record", "--format", "json")
    assert data.returncode == 1, data.stderr
    assert_nothing_raw(data.stdout)
    document = json.loads(data.stdout)
    assert document["host"] == escape(host.encode())
    (change,) = document["changes"]
    assert change["fields"]["uid"]["new_name"] == "ro\\xe2\\x80\\x8bot\\xe3\\x85\\xa4"
