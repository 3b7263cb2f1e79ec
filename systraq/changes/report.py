"""Change reports: what a diff found, as data, plain text (cron, mail) and JSON.

A report never holds file content: only metadata, hashes and link targets. Paths and
targets are shown in the state file's escaped form (``pathcodec.escape``), and so are user,
group and host names (``show_name``), so a name with a newline, invalid UTF-8 or an
invisible character cannot forge a line of the report or hide in it.

Privilege changes (``systraq.changes.attention``) lead the report in their own group; then
each mode says which paths its scan can no longer look into (blind spots: entries now
unreadable) and which it can again, then the other changes by kind. Each change appears
once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from systraq.changes.compare import (
    ADDED,
    CHANGED,
    FIELD_ORDER,
    KINDS,
    REMOVED,
    Change,
    Fields,
    FieldValue,
)
from systraq.changes.corrupt import SetAside
from systraq.pathcodec import escape, show_name
from systraq.snapshot.entry import OK, PARTIAL, RACED, TYPE_NAMES, UNREADABLE, Entry
from systraq.snapshot.state import Header

AGAINST_REPORTED = "reported"
AGAINST_BASELINE = "baseline"
JSON_VERSION = 1
_LABELS = {"mtime": "mtime", "ctime": "ctime", "ino": "inode", "dev": "device",
           "nlink": "links", "caps": "capabilities", "acl": "ACL", "label": "security label",
           "xattrs": "extended attributes"}
# How the note names attribute fields recorded from now on.
_ATTRIBUTE_WORDS = {"caps": "capabilities", "acl": "ACLs", "label": "security labels",
                    "xattrs": "other extended attributes"}
_STATUS_WORDS = {UNREADABLE: "unreadable", RACED: "changing while scanned", OK: "readable",
                 PARTIAL: "hashed only in part"}
_PARTIAL_WORDS = "content hashed only in part (over snapshot.hash_limit)"


@dataclass
class ModeReport:
    """What one mode's newest snapshot shows against the copy it is compared with."""

    mode: str
    new: Header
    old: Header | None = None  # None: no copy to compare with yet (first run)
    changes: list[Change] = field(default_factory=list)
    entries: int | None = None  # entries in the newest snapshot (None: not read)
    notes: list[str] = field(default_factory=list)
    # Copies that failed their checks (changes.corrupt): said first and loudly.
    faults: list[str] = field(default_factory=list)
    set_aside: list[SetAside] = field(default_factory=list)  # renamed once delivered

    @property
    def first(self) -> bool:
        return self.old is None

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)

    @property
    def has_news(self) -> bool:
        return bool(self.changes or self.notes or self.faults or self.first)

    def plain(self, kind: str) -> list[Change]:
        """The changes of a kind that are neither privilege changes nor blind spots."""
        return [c for c in self.changes if c.kind == kind and not c.reasons
                and not watch_state(c)]

    def watch(self, state: str) -> list[Change]:
        """The blind spots that began (LOST) or ended (REGAINED), privilege changes aside."""
        return [c for c in self.changes if not c.reasons and watch_state(c) == state]


LOST = "lost"
REGAINED = "regained"


def watch_state(change: Change) -> str:
    """LOST: an entry the scan can no longer look into (unreadable); REGAINED: one it can
    again; "" for any other change."""
    old, new = change.old, change.new
    if new is None:
        return ""
    if new.status == UNREADABLE and (old is None or old.status != UNREADABLE):
        return LOST
    if old is not None and old.status == UNREADABLE and new.status != UNREADABLE:
        return REGAINED
    return ""


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
    def attention(self) -> list[tuple[str, Change]]:
        """The privilege changes of every mode: they lead the report."""
        return [(mode, change) for mode, change in self.changes if change.reasons]

    @property
    def has_news(self) -> bool:
        """Whether there is anything to say at all (else: no output, exit 0)."""
        return any(section.has_news for section in self.modes)


# --- words -----------------------------------------------------------------------------

def local_time(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ns // 1_000_000_000))


def iso_time(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


def _owner(number: object, name: str) -> str:
    return show_name(name) if name else str(number)


def _show(name: str, raw: FieldValue, entry: Entry | None = None) -> str:
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
    if isinstance(raw, bytes):
        return escape(raw)
    if name in ("mtime", "ctime"):
        return local_time(int(raw))
    if name == "hash":
        return str(raw)[:16]
    if name in _ATTRIBUTE_WORDS and raw == "":
        return "(none)"
    return str(raw)


def describe_change(change: Change) -> list[str]:
    """The fields of a changed entry in words: ``perms 0644 → 0666``, ``owner root → nobody``."""
    fields, old, new = change.fields, change.old, change.new
    lines = []
    for name in sorted(fields, key=FIELD_ORDER.index):
        before, after = fields[name]
        if name == "status":
            directory = new is not None and new.type == "d"
            if after == UNREADABLE and directory:
                lines.append("cannot be looked into: what is below it is not watched")
            elif before == UNREADABLE and after == OK and directory:
                lines.append("can be looked into again")
            elif after == UNREADABLE:
                lines.append("could not be read (content not checked)")
            elif after == RACED:
                lines.append("changed while being scanned (content not checked)")
            elif after == PARTIAL:
                lines.append(f"{_PARTIAL_WORDS} from now on; content not compared")
            else:
                lines.append(f"scanned cleanly again (was {_STATUS_WORDS.get(str(before))}; "
                             "content not compared)")
        elif name == "hash":
            size = fields.get("size")
            detail = f"size {size[0]} → {size[1]}" if size else \
                f"same size, {new.size if new else '?'}"
            lines.append(f"content changed ({detail})")
        elif name == "size":
            if "hash" not in fields:
                lines.append(f"size {before} → {after}")
        else:
            label = {"uid": "owner", "gid": "group"}.get(name, _LABELS.get(name, name))
            lines.append(f"{label} {_show(name, before, old)} → {_show(name, after, new)}")
    return lines


def describe_entry(entry: Entry, fields: Fields) -> str:
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
    for name in ("caps", "acl", "label", "xattrs"):
        if name in fields:
            text += f", {_LABELS[name]} {getattr(entry, name)}"
    if entry.status != OK:
        text += ", " + {UNREADABLE: "unreadable", PARTIAL: _PARTIAL_WORDS}.get(
            entry.status, "changed while being scanned")
    return text


def attributes_note(names: set[str], against: str) -> str:
    """The one note for attributes the compared copy did not record (an older format)."""
    words = [_ATTRIBUTE_WORDS[n] for n in ("caps", "acl", "label", "xattrs") if n in names]
    listed = ", ".join(words[:-1]) + (" and " if len(words) > 1 else "") + words[-1]
    copy = "accepted baseline" if against == AGAINST_BASELINE else "last report's snapshot"
    return (f"{listed} are recorded from now on: the {copy} did not record them, so they "
            "were not compared this time")


def span(section: ModeReport) -> str:
    if section.old is None:
        return f"snapshot of {local_time(section.new.created_ns)}"
    return f"{local_time(section.old.created_ns)} → {local_time(section.new.created_ns)}"


def totals(section: ModeReport) -> str:
    parts = [f"{section.count(kind)} {kind}" for kind in KINDS if section.count(kind)]
    return ", ".join(parts) or "no changes"


def _privilege_count(count: int) -> str:
    return f"{count} privilege change{'s' if count != 1 else ''}"


def summary_line(report: Report) -> str:
    """``total: 3 changed, 1 added`` (per mode when more than one mode has changes), led by
    the privilege changes among them."""
    sections = [s for s in report.modes if s.changes]
    if not sections:
        return ""
    lead = f"{_privilege_count(len(report.attention))}; " if report.attention else ""
    if len(report.modes) == 1:
        return f"total: {lead}{totals(sections[0])}"
    return f"total: {lead}" + "; ".join(f"{s.mode} {totals(s)}" for s in sections)


def subject(report: Report) -> str:
    """``[Systraq] HOST: 3 changes``, ``[Systraq] HOST: 1 privilege change, 2 other
    changes`` (what the mail's subject says)."""
    total = report.total
    privileged = len(report.attention)
    if total and report.attribution is not None:
        from systraq.packages.report import grouped_subject_words

        what = grouped_subject_words(report)
        if privileged:
            what = f"{_privilege_count(privileged)}; {what}"
        if report.against == AGAINST_BASELINE:
            what += " from the baseline"
    elif total:
        rest = total - privileged
        what = f"{rest} {'other ' if privileged else ''}change{'s' if rest != 1 else ''}"
        if privileged:
            what = _privilege_count(privileged) + (f", {what}" if rest else "")
        if report.against == AGAINST_BASELINE:
            what += " from the baseline"
    elif any(section.first for section in report.modes):
        what = "first report, " + ", ".join(f"{s.entries} {s.mode} entries recorded"
                                            for s in report.modes if s.first)
    else:
        what = "no changes"
    if any(section.faults for section in report.modes):
        what = f"CORRUPT STATE set aside; {what}"
    return f"[Systraq] {show_name(report.host)}: {what}"


# --- plain text --------------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    """One line of the text report, with what it is (a terminal styles it by that)."""

    text: str
    # title, fault, mode, first, note, kind, path, field, reason, summary; "" for blank.
    # Kinds and paths say of what: "kind changed", "path attention", "kind lost", ...
    role: str = ""


ATTENTION = "attention"
# Headings of the groups that are not kinds of change.
_GROUP_TITLES = {ATTENTION: "privilege changes", LOST: "not watched: the scan cannot look "
                 "into these", REGAINED: "watched again"}


def _change_lines(change: Change, role: str, tag: str = "") -> list[Line]:
    """A change as the report shows it: its path (and, added or removed, what it is), then
    its fields; a privilege change with ``!`` and its reasons first."""
    marker = "! " if change.reasons else ""
    if change.kind == CHANGED:
        head = Line(f"  {marker}{escape(change.path)}{tag}", f"path {role}")
        details = describe_change(change)
    else:
        entry = change.new if change.kind == ADDED else change.old
        assert entry is not None
        what = describe_entry(entry, change.fields)
        if change.reasons or role in (LOST, REGAINED):
            what = f"{change.kind}: {what}"
        head = Line(f"  {marker}{escape(change.path)}{tag}  ({what})", f"path {role}")
        details = []
    out = [head]
    out.extend(Line(f"      {reason}", "reason") for reason in change.reasons)
    out.extend(Line(f"      {line}", "field") for line in details)
    return out


def _grouped_role(text: str) -> str:
    """What a line of the report sorted by package is, for a terminal's styles."""
    if not text:
        return ""
    if not text.startswith(" "):
        return "mode" if text.startswith(("pub:", "root:")) else "kind changed"
    return "path changed" if text.startswith("  ~") else "field"


def report_lines(report: Report) -> list[Line]:
    """The text report, line by line: the one layout plain text and the terminal share."""
    since = "the accepted baseline" if report.against == AGAINST_BASELINE else \
        "the last report"
    out = [Line(f"systraq on {show_name(report.host)}: changes since {since}", "title")]
    out.extend(Line(f"{section.mode}: {fault}", "fault")
               for section in report.modes for fault in section.faults)
    attention = report.attention
    several = len({mode for mode, _ in report.changes}) > 1
    if attention:
        out.append(Line(""))
        out.append(Line(f"{_GROUP_TITLES[ATTENTION]} ({len(attention)}):",
                        f"kind {ATTENTION}"))
        for mode, change in attention:
            out.extend(_change_lines(change, ATTENTION, f"  [{mode}]" if several else ""))
    if report.attribution is not None:
        from systraq.packages.report import grouped_sections, grouped_summary

        # The privilege changes led: the sections sorted by package show the others.
        rest = replace(report, modes=[replace(s, changes=[c for c in s.changes
                                                          if not c.reasons])
                                      for s in report.modes])
        out += [Line(text, _grouped_role(text)) for text in grouped_sections(rest)]
        summary = grouped_summary(report)
        if summary:
            out += [Line(""), Line(summary, "summary")]
        return out
    for section in report.modes:
        rest = [c for c in section.changes if not c.reasons]
        if not (rest or section.notes or section.first):
            continue
        out.append(Line(""))
        out.append(Line(f"{section.mode}: {span(section)}", "mode"))
        if section.first:
            out.append(Line(f"  first report: {section.entries} entries recorded; changes to "
                            "them will be reported from now on", "first"))
        out.extend(Line(f"  note: {note}", "note") for note in section.notes)
        groups = [(state, section.watch(state)) for state in (LOST, REGAINED)] + \
            [(kind, section.plain(kind)) for kind in KINDS]
        for name, group in groups:
            if not group:
                continue
            out.append(Line(f"{_GROUP_TITLES.get(name, name)} ({len(group)}):", f"kind {name}"))
            for change in group:
                out.extend(_change_lines(change, name))
    summary = summary_line(report)
    if summary:
        out.append(Line(""))
        out.append(Line(summary, "summary"))
    return out


def render_text(report: Report) -> str:
    """The plain-text report cron and mail carry."""
    return "".join(line.text + "\n" for line in report_lines(report))


# --- JSON --------------------------------------------------------------------------------

def json_value(name: str, raw: FieldValue) -> object:
    """A field value as JSON holds it: perms as octal text, types by name, paths escaped."""
    if raw is None:
        return None
    if name == "perms":
        return f"{raw:04o}"
    if name == "type":
        return TYPE_NAMES.get(str(raw), str(raw))
    if isinstance(raw, bytes):
        return escape(raw)
    return raw


def json_fields(change: Change) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name in sorted(change.fields, key=FIELD_ORDER.index):
        before, after = change.fields[name]
        item: dict[str, object] = {"old": json_value(name, before),
                                   "new": json_value(name, after)}
        if name in ("uid", "gid"):
            attr = "user" if name == "uid" else "group"
            item["old_name"] = show_name(getattr(change.old, attr)) if change.old else None
            item["new_name"] = show_name(getattr(change.new, attr)) if change.new else None
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
            "faults": section.faults,
        })
    changes = [{"mode": mode, "path": escape(change.path), "kind": change.kind,
                "fields": json_fields(change), "attention": bool(change.reasons),
                "reasons": list(change.reasons), "watch": watch_state(change) or None}
               for mode, change in report.changes]
    document = {"version": JSON_VERSION, "host": show_name(report.host),
                "against": report.against, "modes": modes, "changes": changes}
    if report.attribution is not None:
        from systraq.packages.report import annotate_json

        annotate_json(document, report)  # item by item, in report order
    # Privilege changes lead, the others keep their order.
    changes.sort(key=lambda item: not item["attention"])
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render(report: Report, fmt: str) -> str:
    return render_json(report) if fmt == "json" else render_text(report)


__all__ = ["ADDED", "AGAINST_BASELINE", "AGAINST_REPORTED", "CHANGED", "REMOVED",
           "ModeReport", "Report", "describe_change", "describe_entry", "render",
           "render_json", "render_text", "subject"]
