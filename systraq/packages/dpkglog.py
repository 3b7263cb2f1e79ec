"""Package operations from dpkg's log and the apt command lines that caused them.

``/var/log/dpkg.log`` and its rotations (``dpkg.log.1``, ``dpkg.log.N.gz``) give, per line,
the local time, the action (install, upgrade, remove, purge, configure, trigproc), the
package as ``name:arch`` and the old and new version. apt's ``history.log`` (and its
rotations) tells which command line ran at that time, when it is readable. Logs are read
from the newest back only as far as the time asked for, each at most ``MAX_LOG_BYTES``
(decompressed), so an old or hostile log cannot make a run slow. A line that does not
parse is skipped with a warning naming file and line: a log cut short by a crash must not
stop a report.
"""

from __future__ import annotations

import os
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from systraq.packages.dpkgdb import DatabaseError, read_bounded

ACTIONS = ("install", "upgrade", "remove", "purge", "configure", "trigproc")
# The actions that put files on disk or take them away.
CHANGES_FILES = ("install", "upgrade", "remove", "purge", "configure")
MAX_LOG_BYTES = 64 << 20
MAX_ROTATIONS = 30
NONE = "<none>"

_DPKG_LINE = re.compile(
    rb"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (\S+) (\S+) (\S+)(?: (\S+))?")
_APT_DATE = re.compile(rb"(\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d)")


@dataclass(frozen=True)
class Operation:
    at: int  # seconds since the epoch (the log's local time)
    action: str
    package: str  # name:arch, as the log writes it
    old: str | None  # None for <none>
    new: str | None
    command: str = ""  # apt's command line, when known

    @property
    def name(self) -> str:
        return self.package.split(":", 1)[0]


@dataclass
class AptRun:
    start: int
    end: int
    command: str
    packages: frozenset[str]  # names without architecture


@dataclass
class Operations:
    operations: list[Operation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def local_seconds(text: bytes) -> int:
    """``YYYY-MM-DD HH:MM:SS`` in local time, as seconds since the epoch."""
    return int(time.mktime(time.strptime(text.decode("ascii"), "%Y-%m-%d %H:%M:%S")))


def _decompressed(data: bytes, shown: bytes) -> bytes:
    """A gzip file's content, at most MAX_LOG_BYTES of it (a bomb stops there)."""
    out = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        text = out.decompress(data, MAX_LOG_BYTES)
    except zlib.error as err:
        raise DatabaseError(f"not gzip data: {err}", shown) from None
    return text


def rotations(directory: bytes, name: bytes) -> Iterator[bytes]:
    """NAME, NAME.1, NAME.2.gz, ... as far as they go."""
    yield name
    for number in range(1, MAX_ROTATIONS + 1):
        plain = name + b".%d" % number
        yield plain
        yield plain + b".gz"


def read_logs(directory: bytes, name: bytes, since: int, parse) -> tuple[list, list[str]]:
    """Parse NAME and its rotations in DIRECTORY, newest first, back to ``since``."""
    items: list = []
    warnings: list[str] = []
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return items, warnings
    try:
        missing_in_a_row = 0
        for candidate in rotations(directory, name):
            shown = directory.rstrip(b"/") + b"/" + candidate
            try:
                data = read_bounded(dir_fd, candidate, MAX_LOG_BYTES, shown)
                if data is not None and candidate.endswith(b".gz"):
                    data = _decompressed(data, shown)
            except DatabaseError as err:
                warnings.append(str(err))
                continue
            if data is None:
                missing_in_a_row += 1
                if missing_in_a_row > 2 and candidate != name:
                    break
                continue
            missing_in_a_row = 0
            found, problems = parse(data, shown)
            warnings.extend(problems)
            items = found + items
            if found and _start(found[0]) < since:
                break
    finally:
        os.close(dir_fd)
    return items, warnings


def _start(item: Operation | AptRun) -> int:
    return item.at if isinstance(item, Operation) else item.start


def parse_dpkg_log(data: bytes, shown: bytes) -> tuple[list[Operation], list[str]]:
    out, warnings = [], []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line:
            continue
        match = _DPKG_LINE.match(line)
        if match is None:
            warnings.append(f"{os.fsdecode(shown)}:{number}: not a dpkg log line, skipped")
            continue
        stamp, action, package, old, new = match.groups()
        try:
            action_text = action.decode("ascii")
            if action_text not in ACTIONS:
                continue  # status, startup, conffile lines
            if new is None:
                raise ValueError
            at = local_seconds(stamp)
            out.append(Operation(at, action_text, package.decode("ascii"),
                                 None if old == b"<none>" else old.decode("ascii"),
                                 None if new == b"<none>" else new.decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            warnings.append(f"{os.fsdecode(shown)}:{number}: not a dpkg log line, skipped")
    return out, warnings


_APT_LISTS = (b"install", b"upgrade", b"remove", b"purge", b"reinstall", b"downgrade")


def parse_apt_history(data: bytes, shown: bytes) -> tuple[list[AptRun], list[str]]:
    """apt's history.log: stanzas with Start-Date, Commandline, package lists, End-Date."""
    out, warnings = [], []
    start = end = None
    command = ""
    names: set[str] = set()
    for number, line in enumerate(data.split(b"\n"), 1):
        key, _, value = line.partition(b": ")
        key = key.strip().lower()
        if key == b"start-date":
            start, end, command, names = _apt_time(value), None, "", set()
            if start is None:
                warnings.append(f"{os.fsdecode(shown)}:{number}: bad Start-Date, skipped")
        elif key == b"commandline":
            command = value.decode("utf-8", "replace")
        elif key in _APT_LISTS:
            for item in re.findall(rb"([^\s,(]+) \(", value):
                names.add(item.split(b":", 1)[0].decode("ascii", "replace"))
        elif key == b"end-date" and start is not None:
            end = _apt_time(value) or start
            out.append(AptRun(start, end, command, frozenset(names)))
            start = None
    if start is not None:  # a run that had not ended when the log was read
        out.append(AptRun(start, start + 86400, command, frozenset(names)))
    return out, warnings


def _apt_time(value: bytes) -> int | None:
    match = _APT_DATE.search(value)
    if match is None:
        return None
    try:
        return local_seconds(match.group(1) + b" " + match.group(2))
    except ValueError:
        return None


def command_for(operation: Operation, runs: list[AptRun]) -> str:
    """The apt command line running when the operation was logged, if one was."""
    best = ""
    for run in runs:
        if run.start - 1 <= operation.at <= run.end + 1:
            if operation.name in run.packages:
                return run.command
            best = best or run.command
    return best


def operations_between(root: bytes, start: int, end: int) -> Operations:
    """Operations logged from ``start`` to ``end`` (seconds, inclusive), with apt's
    command lines; logs under ROOT/var/log."""
    log_dir = _under(root, b"/var/log")
    ops, warnings = read_logs(log_dir, b"dpkg.log", start, parse_dpkg_log)
    wanted = [op for op in ops if start <= op.at <= end]
    if wanted:
        runs, more = read_logs(_under(root, b"/var/log/apt"), b"history.log", start,
                               parse_apt_history)
        warnings += more
        wanted = [Operation(op.at, op.action, op.package, op.old, op.new,
                            command_for(op, runs)) for op in wanted]
    return Operations(wanted, warnings)


def _under(root: bytes, path: bytes) -> bytes:
    return path if root in (b"/", b"") else root.rstrip(b"/") + path


__all__ = ["Operation", "Operations", "operations_between", "parse_dpkg_log",
           "parse_apt_history"]
