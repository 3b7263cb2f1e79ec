"""The daily report as data, and its plain-text and JSON forms.

A report is a list of sections in a fixed order; each holds blocks (lines or a table, or
the one line saying why it could not be made) and the items that need attention. The
summary at the top names the host, its uptime and every attention item, the stale-job
item first. All text in a report went through ``context.printable``: no line of it comes
raw from a file or a tool, so nothing read can forge a line of the report.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from systraq import __version__

JSON_VERSION = 1
# Attention items of this rank come before all others (monitoring that stopped).
FIRST = 0
NORMAL = 1


@dataclass
class Table:
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    marked: list[bool] = field(default_factory=list)  # rows that need attention


@dataclass
class Block:
    """One piece of a section: a heading and lines, or a table, or why it is missing."""

    heading: str = ""
    lines: list[str] = field(default_factory=list)
    table: Table | None = None
    unavailable: str = ""


@dataclass
class Attention:
    text: str
    part: str = ""
    rank: int = NORMAL


@dataclass
class Section:
    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    attention: list[Attention] = field(default_factory=list)

    def add(self, heading: str = "", lines: list[str] | None = None,
            table: Table | None = None) -> Block:
        block = Block(heading, list(lines or []), table)
        self.blocks.append(block)
        return block

    def unavailable(self, why: str, heading: str = "") -> None:
        self.blocks.append(Block(heading, unavailable=why))

    def attend(self, text: str, rank: int = NORMAL) -> None:
        self.attention.append(Attention(text, self.key, rank))


@dataclass
class HistoryDay:
    day: str  # YYYY-MM-DD
    changes: int
    attention: int


@dataclass
class DailyReport:
    host: str
    created: float
    uptime: str = ""
    sections: list[Section] = field(default_factory=list)
    history: list[HistoryDay] = field(default_factory=list)

    @property
    def attention(self) -> list[Attention]:
        """Every item needing attention: monitoring that stopped first, then part order."""
        items = [item for section in self.sections for item in section.attention]
        return sorted(items, key=lambda item: item.rank)  # stable: part order kept

    @property
    def day(self) -> str:
        return time.strftime("%Y-%m-%d", time.localtime(self.created))


def subject(report: DailyReport) -> str:
    """``[Systraq] HOST daily YYYY-MM-DD: N need attention``."""
    return f"[Systraq] {report.host} daily {report.day}: {len(report.attention)} need attention"


# --- plain text --------------------------------------------------------------------------

def format_table(table: Table, indent: str = "  ") -> list[str]:
    """Columns padded to their widest cell; a marked row ends in ``  <-- !``."""
    widths = [len(c) for c in table.columns]
    for row in table.rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths,
                                                                  strict=False)).rstrip()
    out = [indent + line(table.columns)]
    for number, row in enumerate(table.rows):
        mark = "  <-- !" if number < len(table.marked) and table.marked[number] else ""
        out.append(indent + line(row) + mark)
    return out


def summary_lines(report: DailyReport) -> list[str]:
    attention = report.attention
    out = [f"systraq daily report for {report.host}, "
           f"{time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(report.created))}"]
    if report.uptime:
        out.append(f"up {report.uptime}")
    if attention:
        out.append(f"{len(attention)} need attention:")
        out.extend(f"  * {item.text}" for item in attention)
    else:
        out.append("nothing needs attention")
    return out


def render_text(report: DailyReport) -> str:
    """What cron mails and the text/plain part carries."""
    out = summary_lines(report)
    for section in report.sections:
        out.append("")
        out.append(f"== {section.title} ==")
        for block in section.blocks:
            if block.heading:
                out.append(f"-- {block.heading} --")
            if block.unavailable:
                out.append(f"  {block.unavailable}")
            out.extend(f"  {line}" for line in block.lines)
            if block.table is not None:
                out.extend(format_table(block.table))
    out.append("")
    out.append("-- ")
    out.append(f"systraq {__version__}")
    return "\n".join(out) + "\n"


def render_json(report: DailyReport) -> str:
    document = {"version": JSON_VERSION, "host": report.host,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.created)),
                "uptime": report.uptime,
                "attention": [asdict(item) for item in report.attention],
                "sections": [asdict(section) for section in report.sections],
                "history": [asdict(day) for day in report.history]}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render(report: DailyReport, fmt: str) -> str:
    return render_json(report) if fmt == "json" else render_text(report)
