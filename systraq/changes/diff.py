"""The diff job: each mode's newest snapshot against what was last reported, delivered once."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from systraq import runlog
from systraq.changes.blindspots import blind_spots, first_note
from systraq.changes.compare import compare_states
from systraq.changes.copies import Pin, check_mode, header_of, report_lock, same_snapshot
from systraq.changes.judging import judge_for
from systraq.changes.report import (
    AGAINST_REPORTED,
    ModeReport,
    Report,
    attributes_note,
    render,
    subject,
    summary_line,
)
from systraq.config import Settings
from systraq.delivery import DeliveryOutcome, deliver, flush_spool
from systraq.errors import ExitStatus, StateError, SystraqError
from systraq.layout import BASELINE, REPORTED
from systraq.snapshot.state import Header, StateReader, verify

Show = Callable[[Report], None]


def _hash_note(old: Header, new: Header, against: str) -> str:
    return (f"content not compared: the {against} copy was hashed with {old.hash}, the "
            f"newest snapshot with {new.hash} (other fields were compared)")


def unchanged_section(snapshot: Path, copy: Path, mode: str) -> ModeReport:
    """The section of a mode whose copy already holds its newest snapshot."""
    header_of(snapshot, mode)
    header, _ = verify(copy)  # the copy relied on must still be sound
    if header.mode != mode:
        header_of(copy, mode)
    return ModeReport(mode, new=header, old=header)


def compare_mode(settings: Settings, mode: str, against: str, pin: Pin | None = None
                 ) -> ModeReport:
    """Compare a mode's newest snapshot (as ``pin`` holds it, if given) with its copy."""
    layout = settings.layout
    snapshot = layout.snapshot(mode)
    copy = layout.copy(REPORTED if against == AGAINST_REPORTED else BASELINE, mode)
    if pin is None and same_snapshot(snapshot, copy):
        return unchanged_section(snapshot, copy, mode)
    new_reader = pin.reader() if pin is not None else StateReader(snapshot)
    naming = pin.naming() if pin is not None else contextlib.nullcontext()
    with naming:
        try:
            check_mode(new_reader, mode)
            new = new_reader.header
            if not copy.exists():
                if against != AGAINST_REPORTED:
                    raise StateError(f"no {mode} baseline yet: accept one with 'systraq "
                                     f"baseline --mode {mode}'", copy)
                return ModeReport(mode, new=new, entries=sum(1 for _ in new_reader))
            with StateReader(copy) as old_reader:
                check_mode(old_reader, mode)
                old = old_reader.header
                same_hash = old.hash == new.hash
                section = ModeReport(mode, new=new, old=old)
                if not same_hash:
                    section.notes.append(_hash_note(old, new, against))
                unrecorded: set[str] = set()
                judge = judge_for(settings, mode)
                section.changes = judge.finish(
                    compare_states(old_reader, new_reader, settings.report.fields,
                                   compare_hash=same_hash, unrecorded=unrecorded,
                                   rule_of=judge.rule_of), section.notes)
                if unrecorded:
                    section.notes.append(attributes_note(unrecorded, against))
                section.entries = new_reader.entries
                return section
        finally:
            new_reader.close()


@dataclass
class DiffResult:
    report: Report
    delivery: DeliveryOutcome | None = None
    recorded: bool = False
    mailed: bool = False  # the report went (or waits to go) by mail instead of ``show``

    @property
    def status(self) -> ExitStatus:
        if self.delivery is not None and not self.delivery.ok:
            return ExitStatus.TROUBLE
        return ExitStatus.DIFFERENCES if self.report.has_news else ExitStatus.OK


def _host(sections: Sequence[ModeReport]) -> str:
    return sections[0].new.host if sections else socket.gethostname()


def _one_report_per_path(sections: Sequence[ModeReport]) -> None:
    """A path both modes report (the pub account could not read the root lists, so both
    scanned it) is reported in root mode only."""
    modes = {section.mode: section for section in sections}
    if "pub" not in modes or "root" not in modes:
        return
    root_paths = {change.path for change in modes["root"].changes}
    if root_paths:
        modes["pub"].changes = [c for c in modes["pub"].changes if c.path not in root_paths]


def _sort_by_package(settings: Settings, report: Report) -> None:
    """Sort the report's changes by what dpkg explains (setting packages.attribute)."""
    if not settings.packages.attribute or not report.total:
        return
    from systraq.packages.attribution import attribute_sections

    try:
        attribution = attribute_sections(settings, report.modes)
        if attribution is not None and attribution.sorts_anything:
            report.attribution = attribution
    except (SystraqError, OSError) as err:
        report.modes[0].notes.append(f"changes not sorted by package: {err}")


def run_diff(settings: Settings, modes: Sequence[str], *, show: Show,
             against: str = AGAINST_REPORTED, record: bool = True, mail: bool | None = None,
             fmt: str = "text") -> DiffResult:
    """Compare each mode's newest snapshot with its reported (or baseline) copy and deliver.

    The report goes to ``show`` (stdout), or by mail when ``mail`` is set (default:
    report.mail; spooled if the mail system fails). Only once that succeeded does each
    snapshot become the reported copy (unless ``record`` is off, or comparing with the
    baseline). Nothing to report: no call to ``show``, no mail (but a mailing run still
    sends what waits in the spool).
    """
    mail = settings.report.mail if mail is None else mail
    record = record and against == AGAINST_REPORTED
    layout = settings.layout
    pins: dict[str, Pin] = {}
    with report_lock(settings) if record else contextlib.nullcontext():
        try:
            sections = []
            for mode in modes:
                snapshot, copy = layout.snapshot(mode), layout.copy(REPORTED, mode)
                if not record:
                    sections.append(compare_mode(settings, mode, against))
                elif same_snapshot(snapshot, copy):
                    sections.append(unchanged_section(snapshot, copy, mode))
                else:
                    # Pinned before it is compared: a snapshot landing meanwhile waits for
                    # the next run instead of being reported now and recorded never.
                    pin = pins[mode] = Pin(snapshot, copy, private=(mode == "root"))
                    sections.append(compare_mode(settings, mode, against, pin))
            for section in sections:
                if section.first:  # its blind spots begin here
                    pin = pins.get(section.mode)
                    source = pin.path if pin is not None and pin.path is not None else \
                        layout.snapshot(section.mode)
                    with pin.naming() if pin is not None else contextlib.nullcontext():
                        spots = blind_spots(source, settings.daily.max_lines)
                    if spots.count:
                        section.notes.append(first_note(spots, section.mode))
            _one_report_per_path(sections)
            report = Report(_host(sections), against, sections)
            _sort_by_package(settings, report)
            outcome = None
            if mail:
                if report.has_news:
                    outcome = deliver(settings, subject(report), render(report, fmt),
                                      summary=summary_line(report))
                else:
                    outcome = flush_spool(settings)
            elif report.has_news:
                show(report)
            for pin in pins.values():
                pin.commit()
        finally:
            for pin in pins.values():
                pin.discard()
    if record:  # the watching job, not a look at the baseline by hand
        for mode in modes:
            runlog.record(settings.layout, "diff", mode, True)
    return DiffResult(report, outcome, recorded=bool(pins), mailed=mail)
