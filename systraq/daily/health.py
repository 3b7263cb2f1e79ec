"""Integrity and systraq's own health: what still differs from the baseline, the last day
of filetraq, and whether systraq is still watching.

A watched job (a snapshot mode with a list file, the diff of a mode that has a snapshot,
filetraq with a filetraq.conf) that has not succeeded within twice its interval is the
first attention item: "systraq has not run since …". Monitoring that stops silently is
the failure nobody notices otherwise. So is a blind spot: what the lists name and the
scan cannot look into is listed every day while it lasts.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections import Counter

from systraq import runlog
from systraq.changes.blindspots import blind_spots
from systraq.changes.compare import KINDS
from systraq.changes.diff import compare_mode
from systraq.changes.report import AGAINST_BASELINE
from systraq.daily.context import DailyContext, capped, local_time, present
from systraq.daily.report import FIRST, Section, Table
from systraq.errors import SystraqError
from systraq.layout import BASELINE, MODES
from systraq.pathcodec import escape

_DATED = re.compile(r"^orig\.\d{2}\.\d{2}\.\d{2}__\d{2}\.\d{2}(?:\.\d+)?$")
SPOOL_SUFFIX = ".eml"


def _every(seconds: int) -> str:
    return "every hour" if seconds == 3600 else f"every {seconds // 60} minutes"


def _job_name(job: str, mode: str | None) -> str:
    return f"{job} {mode}" if mode else job


# --- integrity -------------------------------------------------------------------------------

def _integrity(ctx: DailyContext, section: Section) -> None:
    limit = ctx.settings.daily.max_lines
    for mode in MODES:
        heading = f"{mode}: differences from the accepted baseline"
        if not present(ctx.layout.snapshot(mode)):
            continue
        if not present(ctx.layout.copy(BASELINE, mode)):
            section.unavailable(f"no {mode} baseline yet: accept one with 'systraq baseline "
                                f"--mode {mode}'", heading)
            continue
        if not os.access(ctx.layout.snapshot(mode), os.R_OK):
            section.unavailable(f"the {mode} snapshot is not readable by this user", heading)
            continue
        try:
            report = compare_mode(ctx.settings, mode, AGAINST_BASELINE, None)
        except SystraqError as err:
            section.unavailable(str(err), heading)
            continue
        for fault in report.faults:
            section.attend(fault)
        if report.old is None:  # the baseline failed its checks (changes.corrupt)
            section.unavailable("; ".join(report.faults), heading)
            continue
        counts = ", ".join(f"{report.count(k)} {k}" for k in KINDS if report.count(k))
        lines = [f"baseline of {local_time(report.old.created_ns / 1e9)}, snapshot of "
                 f"{local_time(report.new.created_ns / 1e9)}: {counts or 'no differences'}"]
        lines += report.faults + report.notes
        lines += capped([f"{c.kind}: {escape(c.path)}" for c in report.changes], limit)
        section.add(heading, lines)


def _blind(ctx: DailyContext, section: Section) -> None:
    for mode in MODES:
        snapshot = ctx.layout.snapshot(mode)
        heading = f"{mode}: not watched (the {mode} scan cannot look into these)"
        if not present(snapshot) or not os.access(snapshot, os.R_OK):
            continue
        try:
            spots = blind_spots(snapshot, ctx.settings.daily.max_lines)
        except SystraqError as err:
            section.unavailable(str(err), heading)
            continue
        if not spots.count:
            continue
        section.attend(f"{spots.count} entr{'ies' if spots.count != 1 else 'y'} the {mode} "
                       "scan cannot look into: not watched")
        section.add(heading, spots.lines())


# --- filetraq --------------------------------------------------------------------------------

def store_activity(ctx: DailyContext) -> tuple[int, int, int, int]:
    """(files changed in the last day, first backups in the last day, files, bytes) of the
    backup store."""
    changed: set[str] = set()
    first = files = size = 0
    for directory, dirs, names in os.walk(ctx.layout.store):
        dirs[:] = [d for d in dirs if d != ".systraq"]
        dated = False
        for name in names:
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            files += 1
            size += st.st_size
            if _DATED.match(name):
                dated = True
                if st.st_ctime >= ctx.since:
                    changed.add(directory)
        if "orig" in names and not dated:
            try:
                if os.lstat(os.path.join(directory, "orig")).st_ctime >= ctx.since:
                    first += 1
            except OSError:
                pass
    return len(changed), first, files, size


def _filetraq(ctx: DailyContext, section: Section) -> None:
    heading = "filetraq in the last day"
    if not ctx.layout.store.is_dir():
        section.unavailable(f"{ctx.layout.store}: no backup store yet", heading)
        return
    changed, first, files, size = store_activity(ctx)
    section.add(heading, [f"{changed} tracked files changed, {first} first backups; the "
                          f"store holds {files} files, {size / 1e6:.1f} MB"])


# --- is systraq still watching ----------------------------------------------------------------

def watched(ctx: DailyContext) -> list[tuple[str, str | None]]:
    """The jobs this configuration runs, so whose silence means something."""
    jobs = []
    for mode in MODES:
        listed = ctx.layout.list_file(mode, "list").exists() or \
            ctx.layout.list_file(mode, "homelist").exists()
        if listed:
            jobs.append(("snapshot", mode))
        if listed or present(ctx.layout.snapshot(mode)):
            jobs.append(("diff", mode))
    if ctx.layout.filetraq_list.exists():
        jobs.append(("filetraq", None))
    return jobs


def _fallback_ok(ctx: DailyContext, job: str, mode: str | None) -> float:
    """When the job's output last changed, for runs older than the records (0: unknown)."""
    path = {"snapshot": ctx.layout.snapshot(mode or "pub"),
            "diff": ctx.layout.copy("reported", mode or "pub"),
            "filetraq": ctx.layout.store / ".systraq" / "seen"}[job]
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _watching(ctx: DailyContext, section: Section) -> None:
    records = runlog.last_runs(ctx.layout)
    table = Table(("job", "last success", "last run", "expected"))
    for job, mode in watched(ctx):
        interval = runlog.WATCHED_JOBS[(job, mode)]
        record = records[(job, mode)]
        last_ok = record.last_ok_ns / 1e9 if record.last_ok_ns else _fallback_ok(ctx, job, mode)
        stale = ctx.now - last_ok > 2 * interval
        name = _job_name(job, mode)
        table.rows.append((name, local_time(last_ok) if last_ok else "never",
                           (local_time(record.last_ns / 1e9) + ("" if record.ok else " FAILED"))
                           if record.last_ns else "-", _every(interval)))
        table.marked.append(stale or (bool(record.last_ns) and not record.ok))
        if stale and last_ok:
            hours = (ctx.now - last_ok) / 3600
            section.attend(f"systraq has not run since {local_time(last_ok)}: no successful "
                           f"{name} for {hours:.0f} hours (expected {_every(interval)})", FIRST)
        elif stale:
            section.attend(f"systraq has not run since it was set up: no successful {name} "
                           "on record", FIRST)
        elif record.last_ns and not record.ok:
            section.attend(f"the last {name} run failed ({local_time(record.last_ns / 1e9)})")
    section.add("is systraq still watching", table=table)


def spool_counts(ctx: DailyContext) -> tuple[Counter[str], list[str]]:
    """Messages waiting ('waiting') in every account's spool and set aside ('dead') in its
    dead letters, and the directories this user cannot look into."""
    counts: Counter[str] = Counter()
    closed = []
    for account in ("root", "pub"):
        directory = ctx.settings.state_dir / account
        for what, sub in (("waiting", ["spool"]),
                          ("dead", ["dead-letters/new", "dead-letters/cur"])):
            for name in sub:
                try:
                    files = os.listdir(directory / name)
                except FileNotFoundError:
                    continue
                except OSError:
                    closed.append(f"{account}/{name}")
                    continue
                counts[what] += sum(1 for f in files if not f.startswith(".")
                                    and (what == "dead" or f.endswith(SPOOL_SUFFIX)))
    return counts, closed


def _raise(err: OSError) -> None:
    raise err


def _spool_and_store(ctx: DailyContext, section: Section) -> None:
    counts, closed = spool_counts(ctx)
    lines = [f"mail spool: {counts['waiting']} waiting, {counts['dead']} dead-lettered"]
    if closed:
        lines.append(f"(not readable by this user: {', '.join(closed)})")
    if counts["waiting"]:
        section.attend(f"{counts['waiting']} messages wait in the mail spool")
    if counts["dead"]:
        section.attend(f"{counts['dead']} messages were dead-lettered")
    total = 0
    for directory, _, names in os.walk(ctx.settings.state_dir):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    lines.append(f"state dir {ctx.settings.state_dir}: {total / 1e6:.1f} MB")
    section.add("spool and store", lines)


def collect(ctx: DailyContext) -> Section:
    section = Section("health", "Integrity and systraq's health")
    _watching(ctx, section)
    _integrity(ctx, section)
    _blind(ctx, section)
    _filetraq(ctx, section)
    _spool_and_store(ctx, section)
    return section
