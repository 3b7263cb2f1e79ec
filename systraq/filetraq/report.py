"""The filetraq report as data, and its plain-text and JSON forms.

The text form is what cron mails and what ``--mail`` sends: Debian filetraq's wording where
it has one (``Creating first backup of PATH.``), one line per notice, a header line and a
diff per text change. Paths are shown escaped (a newline in a name is ``\\n``), so a file
name can never forge a line of the report.
"""

from __future__ import annotations

import enum
import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from systraq.errors import ExitStatus
from systraq.pathcodec import escape, show_name
from systraq.patterns import order_key


class Event(enum.StrEnum):
    CREATED = "created"  # first backup made
    CHANGED = "changed"  # text content changed: a diff
    BINARY_CHANGED = "binary-changed"  # content changed, not diffed: sizes and hashes
    LARGE = "large"  # over the size limit: tracked by hash only
    LARGE_CHANGED = "large-changed"
    TRACKED = "tracked"  # content tracked (again) after being something else
    PRIVATE = "private"  # not readable by everyone: content not tracked
    SYMLINK = "symlink"  # a symlink: not followed
    SPECIAL = "special"  # fifo, socket, device: never opened
    UNREADABLE = "unreadable"  # readable by everyone, yet reading failed
    RACED = "raced"  # changed while being read: compared again next run
    VANISHED = "vanished"  # listed, gone before it could be read
    REMOVED = "removed"  # seen before, no longer exists
    UNMATCHED = "unmatched"  # a list line that matches no file
    NOT_STORED = "not-stored"  # the store is at its budget: tracked by size and hash


@dataclass(frozen=True)
class Version:
    size: int
    sha256: str
    first: int = 0  # the sha256 covers only the first this many bytes (0: the whole)


@dataclass(frozen=True)
class Item:
    """One thing the report says about one listed path (or list line, for UNMATCHED)."""

    path: bytes
    event: Event
    reason: str = ""  # PRIVATE, UNREADABLE: why; BINARY_CHANGED: why there is no diff
    target: str = ""  # SYMLINK: where it points (escaped)
    was: str = ""  # SYMLINK: the previous target; TRACKED: the kind it was before
    file_type: str = ""  # SPECIAL: fifo, socket, device
    limit: int = 0  # LARGE: the size limit it is over
    where: str = ""  # UNMATCHED: the list file and line
    note: str = ""  # an extra remark
    old: Version | None = None
    new: Version | None = None
    kept_as: bytes | None = None  # name of the dated copy that keeps the previous content
    diff: tuple[str, ...] = ()

    @property
    def detail(self) -> str:
        """The one detail JSON carries (``detail``), whatever the event."""
        if self.event == Event.LARGE:
            return str(self.limit)
        return self.reason or self.target or self.file_type or self.where


@dataclass
class FiletraqReport:
    filelist: Path
    backupdir: Path
    max_size: int = 0
    items: list[Item] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # told on stderr, exit status kept
    problems: list[str] = field(default_factory=list)  # trouble: exit status 2
    checked: int = 0  # listed paths looked at
    seconds: float = 0.0

    @property
    def status(self) -> ExitStatus:
        if self.problems:
            return ExitStatus.TROUBLE
        return ExitStatus.DIFFERENCES if self.items else ExitStatus.OK

    def sorted_items(self) -> list[Item]:
        """Items by path (component order), list lines that match nothing last."""
        return sorted(self.items, key=lambda i: (i.event == Event.UNMATCHED,
                                                 order_key(i.path)))


_WAS = {"private": "now readable by everyone", "large": "now within the size limit",
        "symlink": "now a regular file instead of a symlink",
        "special": "now a regular file", "unreadable": "readable again"}


def _hash_words(version: Version) -> str:
    if version.first:
        return f"sha256 of the first {version.first} bytes {version.sha256}"
    return f"sha256 {version.sha256}"


def _versions(item: Item) -> list[str]:
    lines = []
    if item.old is not None:
        lines.append(f"  was {item.old.size} bytes, {_hash_words(item.old)}")
    if item.new is not None:
        lines.append(f"  now {item.new.size} bytes, {_hash_words(item.new)}")
    return lines


def format_item(item: Item) -> list[str]:
    """The lines of one item in the text report."""
    p = escape(item.path)
    kept = f" (previous version kept as {escape(item.kept_as)})" if item.kept_as else ""
    note = f" ({item.note})" if item.note else ""
    match item.event:
        case Event.CREATED:
            return [f"Creating first backup of {p}."]
        case Event.CHANGED:
            return [f"Changes in {p}{kept}{note}:", *item.diff]
        case Event.BINARY_CHANGED:
            what = "Binary file" if not item.reason else "File"
            detail = f" ({item.reason})" if item.reason else ""
            return [f"{what} {p} changed{kept}{detail}{note}:", *_versions(item)]
        case Event.NOT_STORED:
            what = f"File {p} changed" if item.old is not None else f"First backup of {p}"
            return [f"{what} not stored: {item.reason}; its content is tracked by size and "
                    "sha256 and stored once there is room:", *_versions(item)]
        case Event.LARGE:
            size = item.new.size if item.new else 0
            digest = f" ({_hash_words(item.new)})" if item.new else ""
            return [f"{p}: {size} bytes, over the {item.limit}-byte limit: content "
                    f"tracked by size and the hash of its first {item.limit} bytes "
                    f"only{digest}."]
        case Event.LARGE_CHANGED:
            return [f"Large file {p} changed (tracked by size and the hash of its first "
                    "bytes only):", *_versions(item)]
        case Event.TRACKED:
            return [f"{p}: {_WAS.get(item.was, 'now a regular file')}: content tracked."]
        case Event.PRIVATE:
            return [f"{p}: not readable by everyone ({item.reason}): content not "
                    f"tracked{note}."]
        case Event.SYMLINK:
            if item.was:
                return [f"{p}: symlink now points to {item.target} (was {item.was}), "
                        "not followed."]
            return [f"{p}: symlink to {item.target}, not followed."]
        case Event.SPECIAL:
            return [f"{p}: {item.file_type}, not a regular file: content not tracked."]
        case Event.UNREADABLE:
            return [f"{p}: cannot be read ({item.reason}): content not tracked."]
        case Event.RACED:
            return [f"{p}: changed while being read; compared again next run."]
        case Event.VANISHED:
            return [f"{p}: vanished before it could be read."]
        case Event.REMOVED:
            return [f"{p}: removed{note}."]
        case Event.UNMATCHED:
            return [f"No file matches {p} ({item.where})."]
    raise AssertionError(item.event)


def report_to_wire(report: FiletraqReport) -> dict[str, Any]:
    """The report as plain data, to cross the privilege boundary (see report_from_wire)."""
    items = []
    for item in report.items:
        data = {f.name: getattr(item, f.name) for f in fields(Item)}
        data["event"] = str(item.event)
        data["old"] = [item.old.size, item.old.sha256, item.old.first] if item.old else None
        data["new"] = [item.new.size, item.new.sha256, item.new.first] if item.new else None
        data["diff"] = list(item.diff)
        items.append(data)
    return {"filelist": os.fspath(report.filelist), "backupdir": os.fspath(report.backupdir),
            "max_size": report.max_size, "items": items, "warnings": report.warnings,
            "problems": report.problems, "checked": report.checked,
            "seconds": report.seconds}


def report_from_wire(data: dict[str, Any]) -> FiletraqReport:
    """A report from ``report_to_wire``'s data; what does not fit is refused."""
    items = []
    for raw in data["items"]:
        values = dict(raw)
        values["event"] = Event(values["event"])
        for side in ("old", "new"):
            values[side] = Version(int(values[side][0]), str(values[side][1]),
                                   int(values[side][2])) if values[side] else None
        values["diff"] = tuple(str(line) for line in values["diff"])
        for name in ("path", "kept_as"):
            if values[name] is not None and not isinstance(values[name], bytes):
                raise ValueError(f"filetraq report: {name} is not bytes")
        items.append(Item(**values))
    return FiletraqReport(Path(data["filelist"]), Path(data["backupdir"]),
                          int(data["max_size"]), items, [str(w) for w in data["warnings"]],
                          [str(p) for p in data["problems"]], int(data["checked"]),
                          float(data["seconds"]))


def filetraq_subject(report: FiletraqReport) -> str:
    """``[Systraq] HOST: filetraq, 2 files`` (the mail's subject)."""
    count = len(report.items)
    host = show_name(socket.gethostname())
    return f"[Systraq] {host}: filetraq, {count} file{'s' if count != 1 else ''}"


def format_text(report: FiletraqReport) -> str:
    """The plain-text report (what cron mails); empty when there is nothing to report."""
    lines = [line for item in report.sorted_items() for line in format_item(item)]
    return "".join(line + "\n" for line in lines)


def to_json(report: FiletraqReport) -> dict[str, Any]:
    """The report as JSON-ready data: paths escaped as in state files, empty fields left out."""
    items = []
    for item in report.sorted_items():
        entry: dict[str, Any] = {"path": escape(item.path), "event": str(item.event)}
        for name in ("detail", "was", "note"):
            if getattr(item, name):
                entry[name] = getattr(item, name)
        for name in ("old", "new"):
            version = getattr(item, name)
            if version is not None:
                entry[name] = {"size": version.size, "sha256": version.sha256}
                if version.first:  # the sha256 covers only the first bytes
                    entry[name]["sha256_of_first"] = version.first
        if item.kept_as:
            entry["kept_as"] = escape(item.kept_as)
        if item.diff:
            entry["diff"] = "".join(line + "\n" for line in item.diff)
        entry["text"] = "\n".join(format_item(item))
        items.append(entry)
    return {
        "command": "filetraq", "filelist": os.fspath(report.filelist),
        "backupdir": os.fspath(report.backupdir), "checked": report.checked,
        "status": int(report.status), "items": items, "warnings": report.warnings,
        "problems": report.problems,
    }
