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
from systraq.changes.corrupt import SetAside, finding, names, plan_set_aside
from systraq.changes.judging import judge_for
from systraq.changes.report import (
    AGAINST_REPORTED,
    ModeReport,
    Report,
    attributes_note,
    local_time,
    render,
    subject,
    summary_line,
)
from systraq.config import Settings
from systraq.delivery import DeliveryOutcome, deliver, flush_spool
from systraq.errors import ExitStatus, StateError, SystraqError
from systraq.layout import BASELINE, REPORTED
from systraq.snapshot.notes import notes_between
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


def _sound_unchanged(snapshot: Path, copy: Path, mode: str) -> ModeReport | None:
    """The unchanged section, or None when the copy is not the snapshot or is corrupt (the
    comparison then says so)."""
    if not same_snapshot(snapshot, copy):
        return None
    try:
        return unchanged_section(snapshot, copy, mode)
    except StateError as err:
        if not names(err, copy):
            raise
        return None


def _compare_with(settings: Settings, mode: str, kind: str, new_reader: StateReader,
                  copy: Path) -> ModeReport:
    """Compare the snapshot ``new_reader`` reads with the copy of ``kind``."""
    new = new_reader.header
    with StateReader(copy) as old_reader:
        check_mode(old_reader, mode)
        old = old_reader.header
        same_hash = old.hash == new.hash
        section = ModeReport(mode, new=new, old=old)
        if not same_hash:
            section.notes.append(_hash_note(old, new, kind))
        unrecorded: set[str] = set()
        judge = judge_for(settings, mode)
        section.changes = judge.finish(
            compare_states(old_reader, new_reader, settings.report.fields,
                           compare_hash=same_hash, unrecorded=unrecorded,
                           rule_of=judge.rule_of), section.notes)
        if unrecorded:
            section.notes.append(attributes_note(unrecorded, kind))
        section.entries = new_reader.entries
        return section


def compare_mode(settings: Settings, mode: str, against: str, pin: Pin | None = None, *,
                 recording: bool = False) -> ModeReport:
    """Compare a mode's newest snapshot (as ``pin`` holds it, if given) with its copy.

    Against the reported copy, the baseline stands in when there is no reported copy yet
    (the first report) and a first report when there is neither. A copy that fails its
    checks is a finding in the section, and the next sound one stands in; ``recording``
    (the caller holds the report lock and records) plans to set it aside.
    """
    layout = settings.layout
    snapshot = layout.snapshot(mode)
    kinds = (REPORTED, BASELINE) if against == AGAINST_REPORTED else (BASELINE,)
    if pin is None:
        unchanged = _sound_unchanged(snapshot, layout.copy(kinds[0], mode), mode)
        if unchanged is not None:
            return unchanged
    bad: list[tuple[str, StateError]] = []
    set_aside: list[SetAside] = []
    section: ModeReport | None = None
    for kind in kinds:
        copy = layout.copy(kind, mode)
        if not copy.exists():
            continue
        new_reader = pin.reader() if pin is not None else StateReader(snapshot)
        try:
            with pin.naming() if pin is not None else contextlib.nullcontext():
                check_mode(new_reader, mode)
                section = _compare_with(settings, mode, kind, new_reader, copy)
        except StateError as err:
            if not names(err, copy):
                raise
            bad.append((kind, err))
            if recording:
                set_aside.append(plan_set_aside(layout, copy))
            continue
        finally:
            new_reader.close()
        if kind == BASELINE and against == AGAINST_REPORTED and not bad:
            assert section.old is not None
            section.notes.insert(0, "first report: compared with the accepted baseline of "
                                 f"{local_time(section.old.created_ns)}; the last report's "
                                 "snapshot takes over from here")
        break
    if section is None:
        if against != AGAINST_REPORTED and not bad:
            raise StateError(f"no {mode} baseline yet: accept one with 'systraq baseline "
                             f"--mode {mode}'", layout.copy(BASELINE, mode))
        section = _first_section(snapshot, mode, pin)
    if bad:
        if section.old is not None:
            instead = "compared with the accepted baseline instead"
        elif against == AGAINST_REPORTED:
            instead = "reported as a first report"
        else:
            instead = "nothing to compare with: accept a baseline again (systraq baseline)"
        kept = [aside.kept for aside in set_aside] or [None] * len(bad)
        section.faults = [finding(kind, mode, err, where, instead)
                          for (kind, err), where in zip(bad, kept, strict=True)]
        section.set_aside = set_aside
    if against == AGAINST_REPORTED:
        old_ns = section.old.created_ns if section.old is not None else 0
        section.notes += notes_between(layout.snapshot_notes(mode), old_ns,
                                       section.new.created_ns)
    return section


def _first_section(snapshot: Path, mode: str, pin: Pin | None) -> ModeReport:
    """A first report: how many entries the snapshot holds (read whole, so checked)."""
    new_reader = pin.reader() if pin is not None else StateReader(snapshot)
    with pin.naming() if pin is not None else contextlib.nullcontext():
        try:
            check_mode(new_reader, mode)
            return ModeReport(mode, new=new_reader.header,
                              entries=sum(1 for _ in new_reader))
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
            # Modes with no report yet: their first one compares with the baseline if any.
            firsts = {m for m in modes if not layout.copy(REPORTED, m).exists()} \
                if against == AGAINST_REPORTED else set()
            for mode in modes:
                snapshot, copy = layout.snapshot(mode), layout.copy(REPORTED, mode)
                if not record:
                    sections.append(compare_mode(settings, mode, against))
                    continue
                section = _sound_unchanged(snapshot, copy, mode)
                if section is None:
                    # Pinned before it is compared: a snapshot landing meanwhile waits for
                    # the next run instead of being reported now and recorded never.
                    pin = pins[mode] = Pin(snapshot, copy, private=(mode == "root"))
                    section = compare_mode(settings, mode, against, pin, recording=True)
                sections.append(section)
            for section in sections:
                if section.first or section.mode in firsts:  # its blind spots begin here
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
            for section in sections:  # delivered: the report said where they went
                for aside in section.set_aside:
                    aside.apply()
            for pin in pins.values():
                pin.commit()
        finally:
            for pin in pins.values():
                pin.discard()
        if record:  # the watching job, not a look at the baseline by hand
            for mode in modes:
                runlog.record(settings.layout, "diff", mode, True)
    return DiffResult(report, outcome, recorded=bool(pins), mailed=mail)
