"""Compare two snapshots: a streaming merge by path into added, removed and changed entries.

Both sides come sorted by ``patterns.order_key`` (state files are), so one pass over the
two streams finds every difference while holding two entries at a time: memory depends on
the number of changes, never on the size of the tree.

Which fields count is a setting (``report.fields``). Some only mean something for some
types: ``size`` and ``hash`` are compared for regular files only (a directory's size moves
with its entries), ``perms`` not for symlinks (always 0777 on Linux), ``target`` only where
a symlink is involved. The scan ``status`` is always compared: an entry that could not be
read, or changed while it was scanned, is reported as such once, and its content is not
compared on that basis; one whose content was hashed only up to the per-file cap
(``partial``) is compared with another such hash, and its ctime is compared too, since a
write past the hashed bytes shows nowhere else.

A path's rule (``systraq.rules``, named in the list files) may replace the fields: then
the status counts only where the rule compares content, and a ``growing`` file that was
only appended to (``systraq.snapshot.growing``) has no size or content change.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from systraq.patterns import order_key
from systraq.snapshot.entry import HASHED_STATUSES, OK, PARTIAL, Entry
from systraq.snapshot.growing import content_hash, only_appended
from systraq.snapshot.state import StateReader, shared_columns

if TYPE_CHECKING:
    from systraq.rules import Rule

ADDED = "added"
REMOVED = "removed"
CHANGED = "changed"
KINDS = (CHANGED, ADDED, REMOVED)

# Field name (as report.fields spells it) → Entry attribute, in the order reports show them.
ATTRIBUTES = {
    "type": "type", "perms": "perms", "uid": "uid", "gid": "gid", "size": "size",
    "hash": "hash", "target": "target", "mtime": "mtime_ns", "ctime": "ctime_ns",
    "ino": "ino", "dev": "dev", "nlink": "nlink", "status": "status", "caps": "caps",
    "acl": "acl", "label": "label", "xattrs": "xattrs",
}
FIELD_ORDER = ("status", "type", "hash", "size", "perms", "uid", "gid", "target", "caps",
               "acl", "label", "xattrs", "mtime", "ctime", "ino", "dev", "nlink")
DEFAULT_FIELDS = ("type", "perms", "uid", "gid", "size", "hash", "target", "caps", "acl",
                  "label")
# What report.fields may name (the scan status is always compared).
REPORTABLE_FIELDS = tuple(name for name in FIELD_ORDER if name != "status")
# Extended attributes: None where a snapshot did not record them (an older format, or they
# could not be read), and then not compared.
ATTRIBUTE_FIELDS = ("caps", "acl", "label", "xattrs")

# A field's value as entries hold it: numbers, names, hex digests, link targets (bytes).
FieldValue = int | str | bytes | None
Fields = dict[str, tuple[FieldValue, FieldValue]]


@dataclass(frozen=True)
class Change:
    """One path that differs: ``fields`` maps a field name to (old, new), None where absent.

    For an added or removed entry, ``fields`` holds its values on the side where it exists.
    """

    path: bytes
    kind: str
    fields: Fields
    old: Entry | None
    new: Entry | None
    # Why it is a privilege change (systraq.changes.attention); empty for any other.
    reasons: tuple[str, ...] = ()


def applies(name: str, entry: Entry) -> bool:
    """Whether a field means something for an entry of this type."""
    if name in ("size", "hash"):
        return entry.type == "f"
    if name == "perms":
        return entry.type != "l"
    if name == "target":
        return entry.type == "l"
    return True


def value(name: str, entry: Entry) -> FieldValue:
    if name == "hash":
        return content_hash(entry.hash)
    return getattr(entry, ATTRIBUTES[name])


def comparable(name: str, old: Entry, new: Entry, compare_hash: bool = True) -> bool:
    """Whether a field is compared between these two entries of one path."""
    if name == "size":
        return old.type == "f" and new.type == "f"
    if name == "hash":
        # A whole hash and one of the first bytes only (status partial) mean different
        # things: the status change is what is reported then.
        return (compare_hash and old.type == "f" and new.type == "f"
                and old.status == new.status and old.status in HASHED_STATUSES
                and bool(old.hash) and bool(new.hash))
    if name == "perms":
        return old.type != "l" and new.type != "l"
    if name == "target":
        return old.type == "l" or new.type == "l"
    if name in ATTRIBUTE_FIELDS:
        return getattr(old, name) is not None and getattr(new, name) is not None
    return True


def changed_fields(old: Entry, new: Entry, fields: Sequence[str],
                   compare_hash: bool = True, unrecorded: set[str] | None = None,
                   status: bool = True) -> Fields:
    """The reported fields that differ between two entries of the same path.

    ``unrecorded`` collects the attribute fields the old entry did not record while the new
    one does (not compared: the report says once that they are recorded from now on).
    Without ``status``, the scan status is not compared (a rule that ignores content).
    """
    out: Fields = {}
    for name in fields:
        if unrecorded is not None and name in ATTRIBUTE_FIELDS and \
                getattr(old, name) is None and getattr(new, name) is not None:
            unrecorded.add(name)
        if comparable(name, old, new, compare_hash):
            before, after = value(name, old), value(name, new)
            if before != after:
                out[name] = (before, after)
    if not status:
        return out
    if old.status != new.status:
        out["status"] = (old.status, new.status)
    elif old.status == PARTIAL and old.type == new.type == "f" and not out \
            and old.ctime_ns != new.ctime_ns:
        # The hash covers the first bytes only: a write past them shows in ctime alone
        # (utime() can put mtime back, not ctime).
        out["ctime"] = (old.ctime_ns, new.ctime_ns)
    return out


def entry_fields(entry: Entry, fields: Sequence[str], side: str, status: bool = True
                 ) -> Fields:
    """An added (side 'new') or removed (side 'old') entry's values, as (old, new) pairs."""
    out: Fields = {}
    names = list(fields) + (["status"] if status and entry.status != OK else [])
    for name in names:
        if not applies(name, entry) or (name == "hash" and not entry.hash):
            continue
        if name in ATTRIBUTE_FIELDS and not getattr(entry, name):
            continue  # none, or not recorded: nothing to say
        got = value(name, entry)
        out[name] = (None, got) if side == "new" else (got, None)
    return out


def merge(old: Iterable[Entry], new: Iterable[Entry]
          ) -> Iterator[tuple[Entry | None, Entry | None]]:
    """Pair up two sorted entry streams by path: (old, new), None on the side that lacks it."""
    olds, news = iter(old), iter(new)
    a, b = next(olds, None), next(news, None)
    key_a = order_key(a.path) if a is not None else b""
    key_b = order_key(b.path) if b is not None else b""
    while a is not None or b is not None:
        if b is None or (a is not None and key_a < key_b):
            yield a, None
            a = next(olds, None)
            key_a = order_key(a.path) if a is not None else b""
        elif a is None or key_b < key_a:
            yield None, b
            b = next(news, None)
            key_b = order_key(b.path) if b is not None else b""
        else:
            yield a, b
            a, b = next(olds, None), next(news, None)
            key_a = order_key(a.path) if a is not None else b""
            key_b = order_key(b.path) if b is not None else b""


def difference(a: Entry | None, b: Entry | None, fields: Sequence[str],
               compare_hash: bool = True, unrecorded: set[str] | None = None,
               rule: Rule | None = None, old_created_ns: int | None = None
               ) -> Change | None:
    """The change from ``a`` to ``b`` (either may be None), or None when nothing counts.

    With a ``rule``, its fields are compared instead; a growing file is judged against
    the time its old copy was made (``old_created_ns``).
    """
    status = True
    if rule is not None:
        fields, status = rule.fields, rule.compares_status
    if b is None:
        assert a is not None
        return Change(a.path, REMOVED, entry_fields(a, fields, "old", status), a, None)
    if a is None:
        return Change(b.path, ADDED, entry_fields(b, fields, "new", status), None, b)
    if rule is not None and rule.growing and old_created_ns is not None and \
            only_appended(a, b, old_created_ns):
        fields = tuple(name for name in fields if name not in ("size", "hash"))
    differ = changed_fields(a, b, fields, compare_hash, unrecorded, status)
    return Change(b.path, CHANGED, differ, a, b) if differ else None


def compare(old: Iterable[Entry], new: Iterable[Entry], fields: Sequence[str],
            compare_hash: bool = True) -> Iterator[Change]:
    """Yield the differences between two sorted entry streams, in path order.

    A consumer must exhaust both streams before trusting the result: state readers verify
    their trailer only at the end.
    """
    # Fast path: most entries are unchanged in every compared attribute.
    same = operator.attrgetter(*(ATTRIBUTES[name] for name in (*fields, "status")))
    for a, b in merge(old, new):
        if a is not None and b is not None and same(a) == same(b) and \
                (a.status != PARTIAL or a.ctime_ns == b.ctime_ns):
            continue
        change = difference(a, b, fields, compare_hash)
        if change is not None:
            yield change


def compare_states(old: StateReader, new: StateReader, fields: Sequence[str],
                   compare_hash: bool = True, unrecorded: set[str] | None = None,
                   rule_of: Callable[[bytes], Rule] | None = None) -> Iterator[Change]:
    """``compare`` over two state files, parsing only the lines that differ.

    Unchanged entries have byte-identical lines in both files (same stat record, same
    hash), so an unchanged tree is compared without parsing a single entry. Files of two
    format versions are compared on the columns both have (``state.shared_columns``);
    ``unrecorded`` collects the attributes the old file lacks and the new one records.
    ``rule_of`` gives a path's rule, when the lists name any.
    """
    created = old.header.created_ns

    def judge(a: Entry | None, b: Entry | None, notes: set[str] | None = None
              ) -> Change | None:
        either = b if b is not None else a
        assert either is not None
        rule = rule_of(either.path) if rule_of is not None else None
        return difference(a, b, fields, compare_hash, notes, rule, created)

    cut = shared_columns(old.header, new.header)
    if unrecorded is not None and not old.header.records_attributes and \
            new.header.records_attributes:
        unrecorded.update(name for name in fields if name in ATTRIBUTE_FIELDS)
    olds, news = old.raw(), new.raw()
    a, b = next(olds, None), next(news, None)
    while a is not None or b is not None:
        if a is not None and b is not None and (
                a[1] == b[1] or (cut is not None and cut(a[1]) == cut(b[1]))):
            a, b = next(olds, None), next(news, None)
            continue
        if b is None or (a is not None and a[0] < b[0]):
            change = judge(old.parse(a[1]), None)
            a = next(olds, None)
        elif a is None or b[0] < a[0]:
            change = judge(None, new.parse(b[1]))
            b = next(news, None)
        else:
            change = judge(old.parse(a[1]), new.parse(b[1]), unrecorded)
            a, b = next(olds, None), next(news, None)
        if change is not None:
            yield change
