"""The baseline: the state the administrator accepted, whole or path by path."""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from systraq.changes.compare import Change, difference, merge
from systraq.changes.copies import Pin, check_mode, header_of, report_lock, same_snapshot
from systraq.changes.corrupt import names
from systraq.changes.diff import compare_mode
from systraq.changes.report import AGAINST_BASELINE, ModeReport, Report
from systraq.config import Settings
from systraq.errors import StateError, SystraqError
from systraq.layout import BASELINE
from systraq.pathcodec import EscapeError, escape, unescape
from systraq.patterns import components, covers
from systraq.snapshot.state import Header, StateReader, StateWriter

Show = Callable[[Report], None]


@dataclass
class BaselineResult:
    mode: str
    entries: int  # entries in the baseline now
    accepted: list[Change] = field(default_factory=list)  # differences accepted
    remaining: int = 0  # differences from the baseline left standing
    first: bool = False  # there was no baseline before
    unchanged: bool = False  # the baseline already was this snapshot
    faults: list[str] = field(default_factory=list)  # a corrupt baseline set aside


@dataclass
class BaselineOutcome:
    results: list[BaselineResult]
    unmatched: list[str] = field(default_factory=list)  # PATH arguments that matched nothing


class PathSelection:
    """PATH arguments of ``baseline``: absolute paths or globs; a directory covers its tree.

    A glob's ``*`` stays within one path component and, as in the shell and the list
    files, does not match a leading dot. An argument may also be given in the escaped form
    reports show (``\\n``, ``\\xff``). An empty or relative argument is refused: taken
    from the current directory, ``''`` or ``.`` would accept every difference below it.
    """

    def __init__(self, arguments: Sequence[str]) -> None:
        self.arguments = list(arguments)
        self.patterns: list[tuple[int, list[bytes]]] = []
        for index, argument in enumerate(self.arguments):
            if not argument.startswith("/"):
                shown = escape(os.fsencode(argument))
                raise SystraqError(f"baseline: PATH '{shown}' is not an absolute path: give "
                                   "paths or globs that start with / (a relative one would "
                                   "accept differences below the current directory)")
            forms = {os.fsencode(argument)}
            if "\\" in argument:
                with contextlib.suppress(EscapeError):
                    forms.add(unescape(argument))
            for raw in forms:
                normal = posixpath.normpath(raw)
                self.patterns.append((index, components(normal)))
        self.used: set[int] = set()

    def matches(self, path: bytes) -> bool:
        hit = False
        for index, pattern in self.patterns:
            if covers(pattern, path):
                self.used.add(index)
                hit = True
        return hit

    def unmatched(self) -> list[str]:
        return [a for i, a in enumerate(self.arguments) if i not in self.used]


def _accept_all(settings: Settings, mode: str, show: Show | None, host: str
                ) -> BaselineResult:
    snapshot, target = settings.layout.snapshot(mode), settings.layout.copy(BASELINE, mode)
    if same_snapshot(snapshot, target):
        try:
            with StateReader(target) as reader:
                check_mode(reader, mode)
                count = sum(1 for _ in reader)
            return BaselineResult(mode, count, unchanged=True)
        except StateError as err:
            if not names(err, target):
                raise  # else: set aside below, and the snapshot accepted
    pin = Pin(snapshot, target, private=(mode == "root"))
    try:
        first = not target.exists()
        if first:
            with pin.naming():
                reader = pin.reader()
                check_mode(reader, mode)
                count = sum(1 for _ in reader)
            result = BaselineResult(mode, count, first=True)
        else:
            section = compare_mode(settings, mode, AGAINST_BASELINE, pin, recording=True)
            result = BaselineResult(mode, section.entries or 0, accepted=section.changes,
                                    first=section.first, faults=section.faults)
            if show is not None and (section.changes or section.notes):
                show(Report(host, AGAINST_BASELINE, [section]))
            for aside in section.set_aside:
                aside.apply()
        pin.commit()
        return result
    finally:
        pin.discard()


class ExplainedSelection:
    """The paths whose difference a package operation accounts for (baseline --explained)."""

    def __init__(self, paths: set[bytes]) -> None:
        self.paths = paths

    def matches(self, path: bytes) -> bool:
        return path in self.paths

    def unmatched(self) -> list[str]:
        return []


def _accept_explained(settings: Settings, mode: str, show: Show | None, host: str
                      ) -> BaselineResult:
    """Accept exactly the differences from the baseline that package operations explain."""
    from systraq.packages.attribution import attribute_sections

    section = compare_mode(settings, mode, AGAINST_BASELINE)
    attribution = attribute_sections(settings, [section])
    paths = attribution.accounted(mode) if attribution is not None else set()
    return _accept_paths(settings, mode, ExplainedSelection(paths), show, host,
                         expected=section.new)


def _accept_paths(settings: Settings, mode: str,
                  selection: PathSelection | ExplainedSelection, show: Show | None,
                  host: str, expected: Header | None = None) -> BaselineResult:
    """Write a baseline that takes the snapshot's entries at the selected paths only."""
    snapshot, target = settings.layout.snapshot(mode), settings.layout.copy(BASELINE, mode)
    fields = settings.report.fields
    with contextlib.ExitStack() as stack:
        new_reader = stack.enter_context(StateReader(snapshot))
        check_mode(new_reader, mode)
        new = new_reader.header
        if expected is not None and new != expected:
            raise SystraqError("a new snapshot was taken meanwhile: run the command again",
                               snapshot)
        old_reader: StateReader | None = None
        if target.exists():
            old_reader = stack.enter_context(StateReader(target))
            check_mode(old_reader, mode)
            if old_reader.header.hash != new.hash:
                raise SystraqError(f"the {mode} baseline was hashed with "
                                   f"{old_reader.header.hash}, the newest snapshot with "
                                   f"{new.hash}: accept the whole snapshot (systraq baseline "
                                   f"--mode {mode}, without paths)", target)
        result = BaselineResult(mode, 0, first=old_reader is None)
        with StateWriter(target, new, private=(mode == "root")) as writer:
            for a, b in merge(old_reader if old_reader is not None else (), new_reader):
                either = b if b is not None else a
                assert either is not None
                path = either.path
                change = difference(a, b, fields)
                keep = a
                if selection.matches(path):
                    keep = b
                    if change is not None:
                        result.accepted.append(change)
                elif change is not None:
                    result.remaining += 1
                if keep is not None:
                    writer.add(keep)
        result.entries = writer.count
        old = old_reader.header if old_reader is not None else new
    if show is not None and result.accepted:
        show(Report(host, AGAINST_BASELINE, [ModeReport(mode, new=new, old=old,
                                                        changes=result.accepted)]))
    return result


def accept_baseline(settings: Settings, modes: Sequence[str], paths: Sequence[str] = (),
                    show: Show | None = None, explained: bool = False) -> BaselineOutcome:
    """Make each mode's newest snapshot its baseline, or only its differences at ``paths``
    (or, ``explained``, only those package operations explain).

    ``show`` (a terminal) is handed what is being accepted before it is made the baseline.
    """
    selection = PathSelection(paths) if paths else None
    results = []
    with report_lock(settings):
        for mode in modes:
            host = header_of(settings.layout.snapshot(mode), mode).host
            if explained:
                results.append(_accept_explained(settings, mode, show, host))
            elif selection is None:
                results.append(_accept_all(settings, mode, show, host))
            else:
                results.append(_accept_paths(settings, mode, selection, show, host))
    return BaselineOutcome(results, selection.unmatched() if selection else [])
