"""The HTML alternative of the daily mail: the same data as the text, for reading at a glance.

Attention items first and highlighted, tables as tables, and a bar chart of changes per
day over the last 30 days. Styles are inline and the chart is made of table cells (no
script, no SVG, no image), since mail readers drop most else. Every piece of text is
escaped: what a file or a tool said can never become markup.
"""

from __future__ import annotations

import time
from html import escape

from systraq.daily.report import FIRST, Block, DailyReport, HistoryDay, Section, subject

_ATTENTION = ("background:#fff3cd;border:2px solid #d9534f;padding:8px 14px;margin:12px 0;"
              "color:#000")
_TABLE = "border-collapse:collapse;margin:4px 0 10px 0;font-size:13px"
_CELL = "border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top"
_MARK = "background:#f8d7da;font-weight:bold"
_CHART_HEIGHT = 60


def _lines(lines: list[str]) -> str:
    body = "\n".join(escape(line) for line in lines)
    return f'<pre style="margin:2px 0 10px 0;font-size:13px;white-space:pre-wrap">{body}</pre>'


def _table(block: Block) -> str:
    table = block.table
    assert table is not None
    head = "".join(f'<th style="{_CELL};background:#eee">{escape(c)}</th>'
                   for c in table.columns)
    rows = []
    for number, row in enumerate(table.rows):
        marked = number < len(table.marked) and table.marked[number]
        style = f' style="{_MARK}" class="mark"' if marked else ""
        cells = "".join(f'<td style="{_CELL}">{escape(cell)}</td>' for cell in row)
        rows.append(f"<tr{style}>{cells}</tr>")
    return f'<table style="{_TABLE}"><tr>{head}</tr>{"".join(rows)}</table>'


def _section(section: Section) -> str:
    out = [f'<section id="{escape(section.key)}"><h2 style="border-bottom:1px solid #999;'
           f'font-size:18px">{escape(section.title)}</h2>']
    for block in section.blocks:
        if block.heading:
            out.append(f'<h3 style="font-size:14px;margin:8px 0 2px 0">'
                       f'{escape(block.heading)}</h3>')
        if block.unavailable:
            out.append(f'<p class="unavailable" style="color:#666;font-style:italic;'
                       f'margin:2px 0 8px 0">{escape(block.unavailable)}</p>')
        if block.lines:
            out.append(_lines(block.lines))
        if block.table is not None and block.table.rows:
            out.append(_table(block))
    out.append("</section>")
    return "\n".join(out)


def chart(days: list[HistoryDay]) -> str:
    """Bars of changes per day, a table row of cells (every mail reader draws those)."""
    if not days:
        return ""
    top = max((d.changes for d in days), default=0) or 1
    bars, labels = [], []
    for day in days:
        height = max(2, round(day.changes / top * _CHART_HEIGHT)) if day.changes else 1
        colour = "#ccc" if not day.changes else "#d9534f" if day.attention else "#4a7ab7"
        title = f"{day.day}: {day.changes} changes, {day.attention} need attention"
        bars.append(f'<td title="{escape(title)}" style="vertical-align:bottom;padding:0 1px">'
                    f'<div style="width:12px;height:{height}px;background:{colour}"></div></td>')
        labels.append(f'<td style="font-size:9px;color:#666;padding:0 1px">'
                      f'{escape(day.day[8:])}</td>')
    most = max(d.changes for d in days)
    return (f'<h2 style="font-size:16px">Changes per day, last {len(days)} days '
            f'(most: {most})</h2>'
            f'<table id="chart" style="border-collapse:collapse;height:{_CHART_HEIGHT + 20}px">'
            f'<tr>{"".join(bars)}</tr><tr>{"".join(labels)}</tr></table>')


def render_html(report: DailyReport) -> str:
    attention = report.attention
    when = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(report.created))
    items = "".join(
        f'<li{" class=first" if item.rank == FIRST else ""} style="margin:3px 0;'
        f'{"font-weight:bold;color:#a00" if item.rank == FIRST else ""}">'
        f"{escape(item.text)}</li>" for item in attention)
    if attention:
        summary = (f'<div id="attention" style="{_ATTENTION}"><h2 style="margin:4px 0;'
                   f'font-size:18px">{len(attention)} need attention</h2><ul>{items}</ul></div>')
    else:
        summary = ('<div id="attention" style="background:#d4edda;padding:8px 14px;'
                   'margin:12px 0">Nothing needs attention.</div>')
    uptime = f" · up {escape(report.uptime)}" if report.uptime else ""
    body = "\n".join(_section(section) for section in report.sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(subject(report))}</title></head>
<body style="font-family:sans-serif;max-width:60em;margin:0 auto;padding:8px;color:#222">
<h1 style="font-size:20px;margin:4px 0">systraq daily report for {escape(report.host)}</h1>
<p style="color:#555;margin:2px 0">{escape(when)}{uptime}</p>
{summary}
{chart(report.history)}
{body}
<p style="color:#888;font-size:12px">-- systraq</p>
</body></html>
"""
