"""The reported and baseline copies: what was last reported, what the administrator accepted.

``STATE/reported_<mode>.stat`` is the snapshot the last delivered report covered;
``STATE/baseline_<mode>.stat`` the one the administrator accepted. Both are state files in
the snapshot's format. A snapshot is only ever replaced by a rename, never changed in
place, so a copy is made as a hard link under a temporary name in the state dir (a byte
copy where linking is refused), read through to check it, and renamed into place only
once the report about it was delivered: a change is never lost and never reported twice.
One lock (``STATE/report.lock``) keeps two runs from reporting the same change.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import posixpath
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from systraq.changes.compare import Change, compare_states, difference, merge
from systraq.changes.report import (
    AGAINST_BASELINE,
    AGAINST_REPORTED,
    ModeReport,
    Report,
    render,
    subject,
)
from systraq.config import Settings
from systraq.delivery.mail import DeliveryOutcome, deliver, flush_spool
from systraq.errors import ExitStatus, StateError, SystraqError
from systraq.fs.lock import locked
from systraq.layout import BASELINE, MODES, REPORTED
from systraq.pathcodec import EscapeError, unescape
from systraq.snapshot.state import Header, StateReader, StateWriter, fsync_dir

Show = Callable[[Report], None]


def state_path(settings: Settings, mode: str) -> Path:
    return settings.layout.snapshot(mode)


def copy_path(settings: Settings, kind: str, mode: str) -> Path:
    """STATE/reported_<mode>.stat or STATE/baseline_<mode>.stat."""
    return settings.layout.copy(kind, mode)


def configured_modes(settings: Settings) -> tuple[str, ...]:
    """Modes with a list or homelist in the config dir (what ``check`` snapshots)."""
    modes = tuple(m for m in MODES if settings.layout.list_file(m, "list").exists()
                  or settings.layout.list_file(m, "homelist").exists())
    if not modes:
        raise SystraqError("no list file: create snapshot_pub.list (see systraq(8))",
                           settings.config_dir)
    return modes


def resolve_modes(settings: Settings, choice: str | None) -> tuple[str, ...]:
    """The modes a command works on: the one asked for, or every mode with a snapshot."""
    if choice is not None:
        modes = MODES if choice == "all" else (choice,)
        for mode in modes:
            path = state_path(settings, mode)
            if not path.exists():
                raise StateError(f"no {mode} snapshot yet: run 'systraq snapshot --mode "
                                 f"{mode}' first", path)
        return modes
    modes = tuple(m for m in MODES if state_path(settings, m).exists())
    if not modes:
        raise SystraqError("no snapshot yet: run 'systraq snapshot' first", settings.state_dir)
    for mode in modes:
        path = state_path(settings, mode)
        if not os.access(path, os.R_OK):
            raise StateError(f"not readable by this user: run as root, or choose a mode "
                             f"(--mode {'pub' if mode == 'root' else 'root'})", path)
    return modes


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except FileNotFoundError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


class Staged:
    """A state file pinned under a temporary name in its directory, until committed.

    Made as a hard link (snapshots are replaced by rename, never edited), or a byte copy
    where the file system refuses the link. Reading goes through the pinned copy, so what
    is committed is exactly what was read; errors name the original file.
    """

    def __init__(self, source: Path, private: bool) -> None:
        self.source = source
        directory = source.parent
        fd, name = tempfile.mkstemp(prefix=f".{source.name}.", suffix=".pin", dir=directory)
        os.close(fd)
        self.path: Path | None = Path(name)
        try:
            os.unlink(name)
            try:
                os.link(source, name, follow_symlinks=False)
            except FileNotFoundError:
                raise StateError("no such state file", source) from None
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
                    raise
                self._copy(source, name, private)
        except BaseException:
            self.discard()
            raise

    @staticmethod
    def _copy(source: Path, name: str, private: bool) -> None:
        try:
            src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            raise StateError(f"cannot read: {os.strerror(err.errno or 0)}", source) from None
        with os.fdopen(src, "rb") as inp, open(name, "xb") as out:
            os.fchmod(out.fileno(), 0o600 if private else 0o644)
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())

    def reader(self) -> StateReader:
        assert self.path is not None
        with self.naming():
            return StateReader(self.path)

    @contextlib.contextmanager
    def naming(self) -> Iterator[None]:
        """Make errors about the pinned copy name the original file."""
        try:
            yield
        except StateError as err:
            if self.path is not None and err.path is not None and \
                    Path(err.path) == self.path:
                raise StateError(err.message, self.source, err.line) from None
            raise

    def commit(self, target: Path) -> None:
        assert self.path is not None
        os.replace(self.path, target)
        self.path = None
        fsync_dir(target.parent)

    def discard(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self.path = None


def _check_mode(reader: StateReader, mode: str) -> None:
    if reader.header.mode != mode:
        raise StateError(f"holds a {reader.header.mode} snapshot where a {mode} one belongs",
                         reader.path)


def _header_of(path: Path, mode: str) -> Header:
    reader = StateReader(path)
    try:
        _check_mode(reader, mode)
        return reader.header
    finally:
        reader.close()


def _hash_note(old: Header, new: Header, against: str) -> str:
    return (f"content not compared: the {against} copy was hashed with {old.hash}, the "
            f"newest snapshot with {new.hash} (other fields were compared)")


def compare_mode(settings: Settings, mode: str, against: str, staged: Staged | None
                 ) -> ModeReport:
    """Compare a mode's newest snapshot (pinned by ``staged`` if given) with its copy."""
    snapshot = state_path(settings, mode)
    copy = copy_path(settings, REPORTED if against == AGAINST_REPORTED else BASELINE, mode)
    if staged is None and _same_file(snapshot, copy):
        header = _header_of(snapshot, mode)
        return ModeReport(mode, new=header, old=header)
    new_reader = staged.reader() if staged is not None else StateReader(snapshot)
    naming = staged.naming() if staged is not None else contextlib.nullcontext()
    with naming:
        try:
            _check_mode(new_reader, mode)
            new = new_reader.header
            if not copy.exists():
                if against == AGAINST_BASELINE:
                    raise StateError(f"no {mode} baseline yet: accept one with 'systraq "
                                     f"baseline --mode {mode}'", copy)
                return ModeReport(mode, new=new, entries=sum(1 for _ in new_reader))
            with StateReader(copy) as old_reader:
                _check_mode(old_reader, mode)
                old = old_reader.header
                same_hash = old.hash == new.hash
                section = ModeReport(mode, new=new, old=old)
                if not same_hash:
                    section.notes.append(_hash_note(old, new, against))
                section.changes = list(compare_states(old_reader, new_reader,
                                                      settings.report.fields,
                                                      compare_hash=same_hash))
                section.entries = new_reader.entries
                return section
        finally:
            new_reader.close()


# --- diff --------------------------------------------------------------------------------

@dataclass
class DiffResult:
    report: Report
    delivery: DeliveryOutcome | None = None
    recorded: bool = False

    @property
    def status(self) -> ExitStatus:
        if self.delivery is not None and not self.delivery.ok:
            return ExitStatus.TROUBLE
        return ExitStatus.DIFFERENCES if self.report.has_news else ExitStatus.OK


def _host(sections: Sequence[ModeReport]) -> str:
    return sections[0].new.host if sections else socket.gethostname()


def _report_lock(settings: Settings) -> contextlib.AbstractContextManager[None]:
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SystraqError(f"cannot create the state dir: {err.strerror}",
                           settings.state_dir) from None
    return locked(settings.layout.report_lock, settings.snapshot.lock_timeout)


def run_diff(settings: Settings, modes: Sequence[str], *, show: Show,
             against: str = AGAINST_REPORTED, record: bool = True, mail: bool = False,
             fmt: str = "text") -> DiffResult:
    """Compare each mode's newest snapshot with its reported (or baseline) copy and deliver.

    The report goes to ``show`` (stdout), or by mail when ``mail`` is set (spooled if the
    mail system fails). Only once that succeeded does each snapshot become the reported
    copy (unless ``record`` is off, or comparing with the baseline). Nothing to report: no
    call to ``show``, no mail (but a mailing run still sends what waits in the spool).
    """
    record = record and against == AGAINST_REPORTED
    pins: dict[str, Staged] = {}
    with _report_lock(settings) if record else contextlib.nullcontext():
        try:
            sections = []
            for mode in modes:
                snapshot = state_path(settings, mode)
                pin = None
                if record and not _same_file(snapshot, copy_path(settings, REPORTED, mode)):
                    pin = pins[mode] = Staged(snapshot, private=(mode == "root"))
                sections.append(compare_mode(settings, mode, against, pin))
            report = Report(_host(sections), against, sections)
            _sort_by_package(settings, report)
            outcome = None
            if mail:
                if report.has_news:
                    outcome = deliver(settings, subject(report), render(report, fmt))
                else:
                    outcome = flush_spool(settings)
            elif report.has_news:
                show(report)
            for mode, pin in pins.items():
                pin.commit(copy_path(settings, REPORTED, mode))
        finally:
            for pin in pins.values():
                pin.discard()
    return DiffResult(report, outcome, recorded=bool(pins))


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


# --- baseline ----------------------------------------------------------------------------

@dataclass
class BaselineResult:
    mode: str
    entries: int  # entries in the baseline now
    accepted: list[Change] = field(default_factory=list)  # differences accepted
    remaining: int = 0  # differences from the baseline left standing
    first: bool = False  # there was no baseline before
    unchanged: bool = False  # the baseline already was this snapshot


@dataclass
class BaselineOutcome:
    results: list[BaselineResult]
    unmatched: list[str] = field(default_factory=list)  # PATH arguments that matched nothing


class PathSelection:
    """PATH arguments of ``baseline``: absolute paths or globs; a directory covers its tree.

    A glob's ``*`` stays within one path component and, as in the shell and the list
    files, does not match a leading dot. An argument may also be given in the escaped form
    reports show (``\\n``, ``\\xff``).
    """

    def __init__(self, arguments: Sequence[str]) -> None:
        self.arguments = list(arguments)
        self.patterns: list[tuple[int, list[bytes]]] = []
        for index, argument in enumerate(self.arguments):
            forms = {os.fsencode(argument)}
            if "\\" in argument:
                with contextlib.suppress(EscapeError):
                    forms.add(unescape(argument))
            for raw in forms:
                if not raw.startswith(b"/"):
                    raw = os.path.join(os.fsencode(os.getcwd()), raw)
                normal = posixpath.normpath(raw)
                self.patterns.append((index, [p for p in normal.split(b"/") if p]))
        self.used: set[int] = set()

    @staticmethod
    def _component(pattern: bytes, name: bytes) -> bool:
        if name.startswith(b".") and not pattern.startswith(b"."):
            return pattern == name
        return fnmatch.fnmatchcase(name, pattern)

    def matches(self, path: bytes) -> bool:
        parts = [p for p in path.split(b"/") if p]
        hit = False
        for index, pattern in self.patterns:
            if len(parts) >= len(pattern) and all(
                    self._component(p, n) for p, n in zip(pattern, parts, strict=False)):
                self.used.add(index)
                hit = True
        return hit

    def unmatched(self) -> list[str]:
        return [a for i, a in enumerate(self.arguments) if i not in self.used]


def _accept_all(settings: Settings, mode: str, show: Show | None, host: str
                ) -> BaselineResult:
    snapshot, target = state_path(settings, mode), copy_path(settings, BASELINE, mode)
    if _same_file(snapshot, target):
        with StateReader(snapshot) as reader:
            _check_mode(reader, mode)
            count = sum(1 for _ in reader)
        return BaselineResult(mode, count, unchanged=True)
    pin = Staged(snapshot, private=(mode == "root"))
    try:
        first = not target.exists()
        if first:
            with pin.naming():
                reader = pin.reader()
                _check_mode(reader, mode)
                count = sum(1 for _ in reader)
            result = BaselineResult(mode, count, first=True)
        else:
            section = compare_mode(settings, mode, AGAINST_BASELINE, pin)
            result = BaselineResult(mode, section.entries or 0, accepted=section.changes)
            if show is not None and (section.changes or section.notes):
                show(Report(host, AGAINST_BASELINE, [section]))
        pin.commit(target)
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

    section = compare_mode(settings, mode, AGAINST_BASELINE, None)
    attribution = attribute_sections(settings, [section])
    paths = attribution.accounted(mode) if attribution is not None else set()
    return _accept_paths(settings, mode, ExplainedSelection(paths), show, host,
                         expected=section.new)


def _accept_paths(settings: Settings, mode: str,
                  selection: PathSelection | ExplainedSelection, show: Show | None,
                  host: str, expected: Header | None = None) -> BaselineResult:
    """Write a baseline that takes the snapshot's entries at the selected paths only."""
    snapshot, target = state_path(settings, mode), copy_path(settings, BASELINE, mode)
    fields = settings.report.fields
    with contextlib.ExitStack() as stack:
        new_reader = stack.enter_context(StateReader(snapshot))
        _check_mode(new_reader, mode)
        new = new_reader.header
        if expected is not None and new != expected:
            raise SystraqError("a new snapshot was taken meanwhile: run the command again",
                               snapshot)
        old_reader: StateReader | None = None
        if target.exists():
            old_reader = stack.enter_context(StateReader(target))
            _check_mode(old_reader, mode)
            if old_reader.header.hash != new.hash:
                raise SystraqError(f"the {mode} baseline was hashed with "
                                   f"{old_reader.header.hash}, the newest snapshot with "
                                   f"{new.hash}: accept the whole snapshot (systraq baseline "
                                   f"--mode {mode}, without paths)", target)
        result = BaselineResult(mode, 0, first=old_reader is None)
        with StateWriter(target, new, private=(mode == "root")) as writer:
            for a, b in merge(old_reader if old_reader is not None else (), new_reader):
                path = b.path if b is not None else a.path  # type: ignore[union-attr]
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
    with _report_lock(settings):
        for mode in modes:
            host = _header_of(state_path(settings, mode), mode).host
            if explained:
                results.append(_accept_explained(settings, mode, show, host))
            elif selection is None:
                results.append(_accept_all(settings, mode, show, host))
            else:
                results.append(_accept_paths(settings, mode, selection, show, host))
    return BaselineOutcome(results, selection.unmatched() if selection else [])
