"""What a terminal shows of a report: colours, but file names exactly as escaped."""

from __future__ import annotations

import io
from dataclasses import replace

from systraq.changes.compare import DEFAULT_FIELDS as DEFAULT_REPORT_FIELDS
from systraq.changes.compare import compare
from systraq.changes.report import ModeReport, Report
from systraq.render import Terminal
from systraq.snapshot.entry import Entry
from systraq.snapshot.state import Header

ENTRY = Entry(b"/etc/[bold]x:smile:", "f", 0o644, 0, "root", 0, "root", 3, 1, 1, 1, 1, 1,
              hash="a" * 64)


def _report() -> Report:
    header = Header("web1", "pub", 10**18, "sha256")
    changes = list(compare([ENTRY], [replace(ENTRY, perms=0o666)], DEFAULT_REPORT_FIELDS))
    return Report("web1", "reported", [ModeReport("pub", new=header, old=header,
                                                  changes=changes)])


def test_terminal_report_is_coloured_but_shows_names_literally() -> None:
    out = io.StringIO()
    Terminal(out=out, interactive=True).report(_report())
    text = out.getvalue()
    assert "\x1b[" in text
    assert "/etc/[bold]x:smile:" in text
    assert "perms 0644 → 0666" in text


def test_report_to_a_pipe_is_plain_text() -> None:
    out = io.StringIO()
    Terminal(out=out, interactive=False).report(_report())
    assert "\x1b[" not in out.getvalue()
    assert "  /etc/[bold]x:smile:\n      perms 0644 → 0666\n" in out.getvalue()
