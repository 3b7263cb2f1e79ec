"""Changes per day for the report's 30-day chart, kept in ``STATE/daily.history``.

Each run counts the entries that changed between the snapshot the previous daily run saw
(``daily_<mode>.stat``, root's own copy) and the newest one, adds that to the day's line
and pins the newest snapshot for the next run; so the days add up to every change exactly
once, however often the report runs. A line is ``YYYY-MM-DD CHANGES ATTENTION``.
"""

from __future__ import annotations

import contextlib
import os
import re
import time

from systraq.changes.compare import compare_states
from systraq.changes.copies import Pin, report_lock
from systraq.daily.context import DailyContext, present
from systraq.daily.report import HistoryDay
from systraq.errors import SystraqError
from systraq.fs.atomic import write_atomic
from systraq.layout import MODES
from systraq.snapshot.state import StateReader

DAYS_SHOWN = 30
DAYS_KEPT = 400
_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d+) (\d+)$")
_LIMIT = 64 << 10


def read_history(ctx: DailyContext) -> dict[str, HistoryDay]:
    try:
        data = ctx.layout.daily_history.read_bytes()[-_LIMIT:]
    except OSError:
        return {}
    days = {}
    for line in data.decode("ascii", "replace").splitlines():
        match = _LINE.match(line)
        if match:
            days[match.group(1)] = HistoryDay(match.group(1), int(match.group(2)),
                                              int(match.group(3)))
    return days


def _changes_since_last_run(ctx: DailyContext, mode: str) -> int:
    """Entries changed since the previous daily run's pin; the newest snapshot pinned."""
    snapshot = ctx.layout.snapshot(mode)
    pinned = ctx.layout.daily_copy(mode)
    pin = Pin(snapshot, pinned, private=(mode == "root"))
    try:
        count = 0
        if present(pinned):
            with pin.naming(), StateReader(pinned) as old, pin.reader() as new:
                same_hash = old.header.hash == new.header.hash
                count = sum(1 for _ in compare_states(old, new, ctx.settings.report.fields,
                                                      compare_hash=same_hash))
        pin.commit()
        return count
    finally:
        pin.discard()


def update(ctx: DailyContext, attention: int) -> tuple[list[HistoryDay], list[str]]:
    """Add today's changes and attention count; the last 30 days (oldest first) and notes
    on what could not be done."""
    try:
        # The pins and the history are this account's own files, replaced under the
        # lock that reported copies have (which also sweeps what a killed run left).
        with report_lock(ctx.settings):
            return _update(ctx, attention)
    except SystraqError as err:
        return [], [f"history not kept: {err}"]


def _update(ctx: DailyContext, attention: int) -> tuple[list[HistoryDay], list[str]]:
    days = read_history(ctx)
    today = time.strftime("%Y-%m-%d", time.localtime(ctx.now))
    changes, notes = 0, []
    for mode in MODES:
        snapshot = ctx.layout.snapshot(mode)
        if not present(snapshot) or not os.access(snapshot, os.R_OK):
            continue
        try:
            changes += _changes_since_last_run(ctx, mode)
        except (OSError, SystraqError) as err:
            notes.append(f"changes of {mode} not counted: "
                         f"{getattr(err, 'strerror', None) or err}")
    previous = days.get(today)
    days[today] = HistoryDay(today, changes + (previous.changes if previous else 0), attention)
    kept = sorted(days)[-DAYS_KEPT:]
    text = "".join(f"{d} {days[d].changes} {days[d].attention}\n" for d in kept)
    try:
        write_atomic(ctx.layout.daily_history, text.encode(), mode=0o644)
    except OSError as err:
        notes.append(f"{ctx.layout.daily_history}: not updated: {err.strerror}")
    return last_days(days, ctx.now), notes


def last_days(days: dict[str, HistoryDay], now: float) -> list[HistoryDay]:
    """The last 30 days, oldest first, a day without a run counted as nothing."""
    out = []
    for back in range(DAYS_SHOWN - 1, -1, -1):
        day = time.strftime("%Y-%m-%d", time.localtime(now - back * 86400))
        out.append(days.get(day, HistoryDay(day, 0, 0)))
    return out


def read_only(ctx: DailyContext) -> list[HistoryDay]:
    with contextlib.suppress(OSError):
        return last_days(read_history(ctx), ctx.now)
    return []
