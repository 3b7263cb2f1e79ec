"""The reported and baseline copies, and the pins that become them.

``reported_<mode>.stat`` is the snapshot the last delivered report covered;
``baseline_<mode>.stat`` the one the administrator accepted. A copy is the reporting
account's own file, never a link to a snapshot another account can write: a *pin* copies
the newest snapshot under a temporary name beside the copy before anything is compared,
the comparison reads the pin, and the pin is renamed into place only once the report
about it was delivered. So a change is never lost and never reported twice, whatever
snapshot lands meanwhile. One lock keeps two runs from reporting the same change.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from systraq.config import Settings
from systraq.errors import StateError, SystraqError
from systraq.fs.atomic import AtomicFile, sweep_temporaries
from systraq.fs.lock import locked
from systraq.layout import MODES
from systraq.snapshot.state import Header, StateReader, open_state
from systraq.statedir import migrate_flat_layout, own_dir

_COPY_CHUNK = 1 << 20
_TRAILER_BYTES = 256


def configured_modes(settings: Settings) -> tuple[str, ...]:
    """Modes with a list or homelist in the config dir (what ``check`` snapshots)."""
    layout = settings.layout
    modes = tuple(m for m in MODES if layout.list_file(m, "list").exists()
                  or layout.list_file(m, "homelist").exists())
    if not modes:
        raise SystraqError("no list file: create snapshot_pub.list (see systraq(8))",
                           settings.config_dir)
    return modes


def resolve_modes(settings: Settings, choice: str | None) -> tuple[str, ...]:
    """The modes a command works on: the one asked for, or every mode with a snapshot."""
    layout = settings.layout
    if os.geteuid() == 0:
        migrate_flat_layout(settings)
    if choice is not None:
        modes = MODES if choice == "all" else (choice,)
        for mode in modes:
            path = layout.snapshot(mode)
            if not path.exists():
                raise StateError(f"no {mode} snapshot yet: run 'systraq snapshot --mode "
                                 f"{mode}' first", path)
        return modes
    modes = tuple(m for m in MODES if layout.snapshot(m).exists())
    if not modes:
        raise SystraqError("no snapshot yet: run 'systraq snapshot' first", settings.state_dir)
    for mode in modes:
        path = layout.snapshot(mode)
        if not os.access(path, os.R_OK):
            raise StateError(f"not readable by this user: run as root, or choose a mode "
                             f"(--mode {'pub' if mode == 'root' else 'root'})", path)
    return modes


@contextlib.contextmanager
def report_lock(settings: Settings) -> Iterator[None]:
    """The lock every run that reads or moves a reported or baseline copy holds; the
    first thing done with it is to remove the pins and staged files killed runs left."""
    own_dir(settings)
    with locked(settings.layout.report_lock(), settings.snapshot.lock_timeout):
        sweep_temporaries(settings.layout.report_files())
        yield


def check_mode(reader: StateReader, mode: str) -> None:
    if reader.header.mode != mode:
        raise StateError(f"holds a {reader.header.mode} snapshot where a {mode} one belongs",
                         reader.path)


def header_of(path: Path, mode: str) -> Header:
    reader = StateReader(path)
    try:
        check_mode(reader, mode)
        return reader.header
    finally:
        reader.close()


def _tail(handle: object, size: int) -> bytes:
    handle.seek(max(0, size - _TRAILER_BYTES))  # type: ignore[attr-defined]
    return handle.read()  # type: ignore[attr-defined]


def same_snapshot(snapshot: Path, copy: Path) -> bool:
    """Whether ``copy`` holds the snapshot as it is now (same size, same checksummed
    trailer); a copy that is absent or unreadable is not the same."""
    try:
        with open_state(snapshot) as a, open_state(copy) as b:
            size_a, size_b = os.fstat(a.fileno()).st_size, os.fstat(b.fileno()).st_size
            return size_a == size_b and _tail(a, size_a) == _tail(b, size_b)
    except StateError:
        return False


class Pin:
    """A copy of a snapshot under a temporary name beside ``target``, until committed.

    Reading goes through the pin, so what is committed is exactly what was read; errors
    about the pin name the snapshot it was copied from.
    """

    def __init__(self, source: Path, target: Path, private: bool) -> None:
        self.source = source
        self.target = target
        self._out = AtomicFile(target, mode=0o600 if private else 0o644)
        with open_state(source) as src:
            self._out.open()
            try:
                while chunk := src.read(_COPY_CHUNK):
                    self._out.write(chunk)
                self._out.stage()
            except BaseException:
                self._out.discard()
                raise
        assert self._out.temp is not None
        self.path: Path | None = target.parent / os.fsdecode(self._out.temp)

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

    def commit(self) -> None:
        """The pin becomes the copy (a rename: atomic)."""
        self._out.publish()
        self.path = None

    def discard(self) -> None:
        self._out.discard()
        self.path = None
