"""Change reports: what a diff found, as data, plain text (cron, mail) and JSON.

A report never holds file content: only metadata, hashes and link targets. Paths and
targets are shown in the state file's escaped form (``pathcodec.escape``), so a name with a
newline or invalid UTF-8 cannot forge a line of the report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from systraq.changes.compare import ADDED, CHANGED, KINDS, REMOVED, Change
from systraq.pathcodec import escape
from systraq.snapshot.entry import OK, RACED, TYPE_NAMES, UNREADABLE, Entry
from systraq.snapshot.state import Header

AGAINST_REPORTED = "reported"
AGAINST_BASELINE = "baseline"
JSON_VERSION = 1
# The order fields are shown in, whatever order report.fields lists them.
FIELD_ORDER = ("status", "type", "hash", "size", "perms", "uid", "gid", "target", "mtime",
               "ctime", "ino", "dev", "nlink")
_LABELS = {"mtime": "mtime", "ctime": "ctime", "ino": "inode", "dev": "device",
           "nlink": "links"}
_STATUS_WORDS = {UNREADABLE: "unreadable", RACED: "changing while scanned", OK: "readable"}


@dataclass
class ModeReport:
    """What one mode's newest snapshot shows against the copy it is compared with."""

    mode: str
    new: Header
    old: Header | None = None  # None: no copy to compare with yet (first run)
    changes: list[Change] = field(default_factory=list)
    entries: int | None = None  # entries in the newest snapshot (None: not read)
    notes: list[str] = field(default_factory=list)

    @property
    def first(self) -> bool:
        return self.old is None

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)

    @property
    def has_news(self) -> bool:
        return bool(self.changes or self.notes or self.first)


@dataclass
class Report:
    host: str
    against: str  # AGAINST_REPORTED or AGAINST_BASELINE
    modes: list[ModeReport] = field(default_factory=list)
    # What dpkg explains of the changes (packages.attribution.Attribution), when sorted.
    attribution: object | None = None

    @property
    def changes(self) -> Iterator[tuple[str, Change]]:
        for section in self.modes:
            for change in section.changes:
                yield section.mode, change

    @property
    def total(self) -> int:
        return sum(len(section.changes) for section in self.modes)

    @property
    def has_news(self) -> bool:
        """Whether there is anything to say at all (else: no output, exit 0)."""
        return any(section.has_news for section in self.modes)


# --- words -----------------------------------------------------------------------------

def local_time(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ns // 1_000_000_000))


def iso_time(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


def show_path(path: bytes) -> str:
    return escape(path)


def _owner(number: object, name: str) -> str:
    return name or str(number)


def _show(name: str, raw: object, entry: Entry | None = None) -> str:
    """One field value in words (for text reports)."""
    if raw is None:
        return "(none)"
    if name == "type":
        return TYPE_NAMES.get(str(raw), str(raw))
    if name == "perms":
        return f"{raw:04o}"
    if name == "uid":
        return _owner(raw, entry.user if entry else "")
    if name == "gid":
        return _owner(raw, entry.group if entry else "")
    if name == "target":
        return escape(raw)  # type: ignore[arg-type]
    if name in ("mtime", "ctime"):
        return local_time(int(raw))  # type: ignore[call-overload]
    if name == "hash":
        return str(raw)[:16]
    return str(raw)


def describe_change(change: Change) -> list[str]:
    """The fields of a changed entry in words: ``perms 0644 → 0666``, ``owner root → nobody``."""
    fields, old, new = change.fields, change.old, change.new
    lines = []
    for name in sorted(fields, key=FIELD_ORDER.index):
        before, after = fields[name]
        if name == "status":
            if after == UNREADABLE:
                lines.append("could not be read (content not checked)")
            elif after == RACED:
                lines.append("changed while being scanned (content not checked)")
            else:
                lines.append(f"scanned cleanly again (was {_STATUS_WORDS.get(str(before))}; "
                             "content not compared)")
        elif name == "hash":
            size = fields.get("size")
            detail = f"size {size[0]} → {size[1]}" if size else f"same size, {new.size}"  # type: ignore[union-attr]
            lines.append(f"content changed ({detail})")
        elif name == "size":
            if "hash" not in fields:
                lines.append(f"size {before} → {after}")
        else:
            label = {"uid": "owner", "gid": "group"}.get(name, _LABELS.get(name, name))
            lines.append(f"{label} {_show(name, before, old)} → {_show(name, after, new)}")
    return lines


def describe_entry(entry: Entry, fields: dict[str, tuple[object, object]]) -> str:
    """An added or removed entry in a few words: ``file 0644 root:root, 120 bytes``."""
    words = [TYPE_NAMES.get(entry.type, entry.type)]
    if "perms" in fields:
        words.append(f"{entry.perms:04o}")
    if "uid" in fields or "gid" in fields:
        words.append(f"{_owner(entry.uid, entry.user)}:{_owner(entry.gid, entry.group)}")
    text = " ".join(words)
    if "size" in fields:
        text += f", {entry.size} bytes"
    if "target" in fields and entry.target is not None:
        text += f", → {escape(entry.target)}"
    if entry.status != OK:
        text += ", " + ("unreadable" if entry.status == UNREADABLE
                        else "changed while being scanned")
    return text


def span(section: ModeReport) -> str:
    if section.old is None:
        return f"snapshot of {local_time(section.new.created_ns)}"
    return f"{local_time(section.old.created_ns)} → {local_time(section.new.created_ns)}"


def totals(section: ModeReport) -> str:
    parts = [f"{section.count(kind)} {kind}" for kind in KINDS if section.count(kind)]
    return ", ".join(parts) or "no changes"


def summary_line(report: Report) -> str:
    """``total: 3 changed, 1 added`` (per mode when more than one mode has changes)."""
    sections = [s for s in report.modes if s.changes]
    if not sections:
        return ""
    if len(report.modes) == 1:
        return f"total: {totals(sections[0])}"
    return "total: " + "; ".join(f"{s.mode} {totals(s)}" for s in sections)


def subject(report: Report) -> str:
    """``[Systraq] HOST: 3 changes`` (what the mail's subject says)."""
    total = report.total
    if total and report.attribution is not None:
        from systraq.packages.report import grouped_subject_words

        what = grouped_subject_words(report)
        if report.against == AGAINST_BASELINE:
            what += " from the baseline"
    elif total:
        what = f"{total} change{'s' if total != 1 else ''}"
        if report.against == AGAINST_BASELINE:
            what += " from the baseline"
    elif any(section.first for section in report.modes):
        what = "first report, " + ", ".join(f"{s.entries} {s.mode} entries recorded"
                                            for s in report.modes if s.first)
    else:
        what = "no changes"
    return f"[Systraq] {report.host}: {what}"


# --- plain text --------------------------------------------------------------------------

def render_text(report: Report) -> str:
    """The plain-text report cron and mail carry."""
    since = "the accepted baseline" if report.against == AGAINST_BASELINE else \
        "the last report"
    out = [f"systraq on {report.host}: changes since {since}"]
    if report.attribution is not None:
        from systraq.packages.report import grouped_sections, grouped_summary

        summary = grouped_summary(report)
        out += grouped_sections(report) + (["", summary] if summary else [])
        return "\n".join(out) + "\n"
    for section in report.modes:
        if not section.has_news:
            continue
        out.append("")
        out.append(f"{section.mode}: {span(section)}")
        if section.first:
            out.append(f"  first report: {section.entries} entries recorded; changes to them "
                       "will be reported from now on")
        for note in section.notes:
            out.append(f"  note: {note}")
        for kind in KINDS:
            group = [c for c in section.changes if c.kind == kind]
            if not group:
                continue
            out.append(f"{kind} ({len(group)}):")
            for change in group:
                if kind == CHANGED:
                    out.append(f"  {show_path(change.path)}")
                    out.extend(f"      {line}" for line in describe_change(change))
                else:
                    entry = change.new if kind == ADDED else change.old
                    assert entry is not None
                    out.append(f"  {show_path(change.path)}  "
                               f"({describe_entry(entry, change.fields)})")
    summary = summary_line(report)
    if summary:
        out.append("")
        out.append(summary)
    return "\n".join(out) + "\n"


# --- JSON --------------------------------------------------------------------------------

def json_value(name: str, raw: object) -> object:
    """A field value as JSON holds it: perms as octal text, types by name, paths escaped."""
    if raw is None:
        return None
    if name == "perms":
        return f"{raw:04o}"
    if name == "type":
        return TYPE_NAMES.get(str(raw), str(raw))
    if name == "target":
        return escape(raw)  # type: ignore[arg-type]
    return raw


def json_fields(change: Change) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name in sorted(change.fields, key=FIELD_ORDER.index):
        before, after = change.fields[name]
        item: dict[str, object] = {"old": json_value(name, before),
                                   "new": json_value(name, after)}
        if name in ("uid", "gid"):
            attr = "user" if name == "uid" else "group"
            item["old_name"] = getattr(change.old, attr) if change.old else None
            item["new_name"] = getattr(change.new, attr) if change.new else None
        out[name] = item
    return out


def render_json(report: Report) -> str:
    """One JSON object; the schema is in systraq(8)."""
    modes = []
    for section in report.modes:
        modes.append({
            "mode": section.mode,
            "from": iso_time(section.old.created_ns) if section.old else None,
            "to": iso_time(section.new.created_ns),
            "hash": section.new.hash,
            "first": section.first,
            "entries": section.entries,
            "notes": section.notes,
        })
    changes = [{"mode": mode, "path": show_path(change.path), "kind": change.kind,
                "fields": json_fields(change)} for mode, change in report.changes]
    document = {"version": JSON_VERSION, "host": report.host, "against": report.against,
                "modes": modes, "changes": changes}
    if report.attribution is not None:
        from systraq.packages.report import annotate_json

        annotate_json(document, report)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render(report: Report, fmt: str) -> str:
    return render_json(report) if fmt == "json" else render_text(report)


__all__ = ["ADDED", "AGAINST_BASELINE", "AGAINST_REPORTED", "CHANGED", "REMOVED",
           "ModeReport", "Report", "describe_change", "describe_entry", "render",
           "render_json", "render_text", "subject"]
