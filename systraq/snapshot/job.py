"""The snapshot job: listfiles → selection → scan → state file, under a lock per mode."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from systraq import runlog
from systraq.config import Settings
from systraq.errors import ConfigError, SystraqError
from systraq.fs.atomic import sweep_temporaries, write_atomic
from systraq.fs.lock import locked
from systraq.fs.privilege import pub_account, stream_as
from systraq.layout import MODES
from systraq.snapshot.hashcache import PreviousSnapshot
from systraq.snapshot.hashing import new_hasher
from systraq.snapshot.listfiles import Pattern, home_directories, select
from systraq.snapshot.notes import leave_note
from systraq.snapshot.overlap import overlaps
from systraq.snapshot.pathrules import PathRules, mode_lists, rule_lines
from systraq.snapshot.scan import Scanner, ScanStats
from systraq.snapshot.state import Header, StateWriter
from systraq.statedir import own_dir, pub_dir_for

Progress = Callable[[int, int], None]  # entries so far, bytes of regular files


@dataclass
class SnapshotResult:
    mode: str
    path: Path
    entries: int
    stats: ScanStats
    unmatched: list[Pattern] = field(default_factory=list)
    unreachable: int = 0
    seconds: float = 0.0
    scanned_as: str = ""
    # Lines of this mode's lists that cover what the root lists cover (pub only), as
    # messages; ``overlaps_new``: not said by the previous snapshot.
    overlaps: list[str] = field(default_factory=list)
    overlaps_new: bool = False
    blind: list[bytes] = field(default_factory=list)  # directories a line could not look into
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    lists: list[Pattern]
    homelists: list[Pattern]
    sources: tuple[bytes, ...]
    # The pub scan yields what the root lists cover.
    yield_lists: list[Pattern] = field(default_factory=list)
    yield_homelists: list[Pattern] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def default_modes(settings: Settings) -> tuple[str, ...]:
    """The modes ``snapshot`` takes without --mode: every mode with a list file; for an
    account other than root, those it can take (the pub one)."""
    layout = settings.layout
    modes = tuple(m for m in MODES if layout.list_file(m, "list").exists()
                  or layout.list_file(m, "homelist").exists())
    if not modes:
        return ("pub",)  # whose plan says what to create
    if os.geteuid() == 0:
        return modes
    if "pub" not in modes:
        raise SystraqError("only the root lists are configured, and the root snapshot "
                           "reads files only root can read: run it as root")
    return ("pub",)


def _plan(settings: Settings, mode: str) -> _Plan:
    list_file = settings.layout.list_file(mode, "list")
    home_file = settings.layout.list_file(mode, "homelist")
    if not list_file.exists() and not home_file.exists():
        raise ConfigError(f"nothing to snapshot in {mode} mode: create {list_file.name} "
                          f"(and {home_file.name} for paths in homes)", settings.config_dir)
    lists, homelists = mode_lists(settings, mode)
    sources = tuple(os.fsencode(p) for p in (list_file, home_file) if p.exists())
    plan = _Plan(lists, homelists, sources)
    if mode == "pub":
        closed = [p for p in (settings.layout.list_file("root", kind) for kind in
                              ("list", "homelist")) if p.exists() and not os.access(p, os.R_OK)]
        if closed:
            plan.warnings.append(f"{closed[0]}: not readable by this account: what both "
                                 "modes list is scanned in both")
        else:
            plan.yield_lists, plan.yield_homelists = mode_lists(settings, "root")
    return plan


def take_snapshot(settings: Settings, mode: str, *, algorithm: str | None = None,
                  full: bool = False, progress: Progress | None = None) -> SnapshotResult:
    """Scan what the mode's lists name and replace its state file atomically.

    Root taking the pub snapshot runs the whole job as the pub account, in that
    account's own directory: the file is the same whoever runs it, and root never
    writes where that account can.
    """
    if mode == "root" and os.geteuid() != 0:
        raise SystraqError("the root snapshot reads files only root can read: run it as root")
    algorithm = algorithm or settings.snapshot.hash
    new_hasher(algorithm)
    plan = _plan(settings, mode)
    started = time.monotonic()
    account = pub_account(settings) if mode == "pub" else None
    if account is None:
        own_dir(settings)
        events = _job_events(settings, mode, plan, algorithm, full)
    else:
        pub_dir_for(settings, account)
        events = stream_as(account, _job_events, settings, mode, plan, algorithm, full)
    summary: dict[str, Any] = {}
    for event in events:
        if isinstance(event, list):
            if progress is not None:
                progress(*event)
        else:
            summary = event
    return _result(mode, settings.layout.snapshot(mode), plan, summary,
                   time.monotonic() - started)


def _job_events(settings: Settings, mode: str, plan: _Plan, algorithm: str, full: bool
                ) -> Iterator[list[int] | dict[str, Any]]:
    """Lock, scan, write: progress as [entries, bytes] lists, then a summary dict."""
    path = settings.layout.snapshot(mode)
    with locked(settings.layout.snapshot_lock(mode), settings.snapshot.lock_timeout):
        sweep_temporaries(settings.layout.snapshot_job_files(mode))  # left by killed runs
        created_ns = time.time_ns()
        homes = home_directories(settings.snapshot.passwd)
        book = settings.rule_book
        rules = PathRules(rule_lines(plan.lists, plan.homelists, homes,
                                     [name for name, rule in book.items() if rule.growing],
                                     yield_to=plan.yield_lists,
                                     yield_homelists=plan.yield_homelists))
        chains = any(line.growing for line in rules.lines)
        previous = PreviousSnapshot.open(
            path, algorithm, settings.snapshot.full_rehash_hours, created_ns, reuse=not full,
            chains=chains, on_corrupt=lambda err: leave_note(
                settings.layout.snapshot_notes(mode), created_ns,
                f"the previous {mode} snapshot failed its check ({err.message}): every "
                "file was hashed again", private=(mode == "root")))
        header = Header(host=socket.gethostname(), mode=mode, created_ns=created_ns,
                        hash=algorithm, lists=plan.sources,
                        rehash_interval_ns=int(settings.snapshot.full_rehash_hours * 3600e9))
        progress: list[list[int]] = []
        scanner = Scanner(algorithm, settings.snapshot.workers, previous,
                          lambda entries, size: progress.append([entries, size]),
                          hash_limit=settings.snapshot.hash_limit, rules=rules,
                          created_ns=created_ns)
        selection = select(plan.lists, plan.homelists, homes, record_homes=(mode == "pub"),
                           rules=rules if rules.affects_scan else None)
        with contextlib.closing(previous) if previous else contextlib.nullcontext(), \
                StateWriter(path, header, private=(mode == "root")) as writer:
            for chunk in scanner.chunks(selection.roots):
                writer.add_chunk(chunk)
                if progress:
                    yield progress[-1]
                    progress.clear()
        said, new = _overlaps(settings, mode, plan, homes)
        runlog.record(settings.layout, "snapshot", mode, True)
    yield {"entries": writer.count, "stats": dataclasses.asdict(scanner.stats),
           "unmatched": [[os.fsdecode(p.source), p.line] for p in selection.unmatched],
           "unreachable": selection.unreachable + scanner.stats.unreachable,
           "scanned_as": pwd.getpwuid(os.geteuid()).pw_name,
           "overlaps": said, "overlaps_new": new, "blind": selection.blind}


def _overlaps(settings: Settings, mode: str, plan: _Plan, homes: list[bytes]
              ) -> tuple[list[str], bool]:
    """The overlap messages, and whether they differ from those the last snapshot said
    (remembered in the mode's directory, so cron hears them once)."""
    if mode != "pub":
        return [], False
    found = [o.message() for o in overlaps(plan.lists, plan.homelists, plan.yield_lists,
                                           plan.yield_homelists, homes)]
    record = settings.layout.overlaps_said(mode)
    text = "".join(line + "\n" for line in found).encode()
    try:
        before = record.read_bytes()
    except OSError:
        before = b""
    if text == before:
        return found, False
    with contextlib.suppress(OSError):  # never a reason to fail the snapshot
        if found:
            write_atomic(record, text)
        else:
            record.unlink(missing_ok=True)
    return found, bool(found)


def _result(mode: str, path: Path, plan: _Plan, summary: dict[str, Any], seconds: float
            ) -> SnapshotResult:
    known = {(os.fsdecode(p.source), p.line): p for p in plan.lists + plan.homelists}
    return SnapshotResult(
        mode=mode, path=path, entries=summary["entries"], stats=ScanStats(**summary["stats"]),
        unmatched=[known[(source, line)] for source, line in summary["unmatched"]],
        unreachable=summary["unreachable"], seconds=seconds,
        scanned_as=summary["scanned_as"], overlaps=summary["overlaps"],
        overlaps_new=summary["overlaps_new"], blind=summary["blind"],
        warnings=plan.warnings)
