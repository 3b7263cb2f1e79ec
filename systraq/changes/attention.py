"""Privilege changes: the changes that lead a report, each with the reason it is one.

A change is a privilege change when it gives something more power or more people power
over it (added entries count when they arrive so):

* a setuid or setgid bit that appears on a regular file;
* a file capability added or widened (``cap_setuid+ep``: root without setuid);
* an ACL entry that lets a named user or group write where it could not;
* an entry that becomes root's in the home of another account (homes from the passwd
  source the snapshot uses): what root owns there, its user cannot take back;
* a world-writable bit on a regular file, or on a directory without the sticky bit
  (devices, FIFOs and sockets are often world-writable by design).

Only what the path's rule compares counts: a change the report does not show gives no
reason either.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterable
from dataclasses import replace

from systraq.changes.compare import ADDED, CHANGED, Change
from systraq.pathcodec import escape
from systraq.snapshot.entry import Entry
from systraq.snapshot.listfiles import Home
from systraq.snapshot.xattrs import CAP_NAMES, KERNEL_CAPS

_CLAUSE = re.compile(r"([a-z0-9_,]*)((?:[=+-][eip]*)+)")
_OPERATION = re.compile(r"([=+-])([eip]*)")


def capability_flags(text: str | None) -> dict[str, frozenset[str]]:
    """The flags (e, i, p) of each capability in ``getcap``'s text; an unparsable value
    (``invalid:...``) counts as every flag of a capability of its own."""
    flags: dict[str, set[str]] = {}
    if not text:
        return {}
    for clause in text.split(" "):
        if not clause or clause.startswith("[rootid="):
            continue
        found = _CLAUSE.fullmatch(clause)
        if found is None:
            flags[clause] = {"e", "i", "p"}
            continue
        names = found.group(1).split(",") if found.group(1) else \
            list(CAP_NAMES[:KERNEL_CAPS])
        for operator, letters in _OPERATION.findall(found.group(2)):
            for name in names:
                held = flags.setdefault(name, set())
                if operator == "=":
                    held.clear()
                    held.update(letters)
                elif operator == "+":
                    held.update(letters)
                else:
                    held.difference_update(letters)
    return {name: frozenset(held) for name, held in flags.items() if held}


def _widened_caps(old: str | None, new: str | None) -> list[str]:
    before, after = capability_flags(old), capability_flags(new)
    return [f"{name}={''.join(f for f in 'eip' if f in held)}"
            for name, held in sorted(after.items())
            if not held <= before.get(name, frozenset())]


def _acl_writers(text: str | None) -> set[str]:
    """Named users and groups an access ACL lets write (the mask applied)."""
    if not text:
        return set()
    named: dict[str, str] = {}
    mask = "rwx"
    for item in text.split(","):
        if item.startswith("default:"):
            continue
        kind, _, rest = item.partition(":")
        who, _, perms = rest.rpartition(":")
        if kind == "mask":
            mask = perms
        elif kind in ("user", "group") and who:
            named[f"{kind} {who}"] = perms
    return {who for who, perms in named.items() if "w" in perms and "w" in mask}


class Homes:
    """The homes of accounts other than root, to tell what lies in one."""

    def __init__(self, homes: Iterable[Home]) -> None:
        self.by_path: dict[bytes, Home] = {}
        for home in homes:
            if home.uid != 0:
                self.by_path.setdefault(home.path, home)

    def owner_of(self, path: bytes) -> Home | None:
        """The home strictly above ``path``, if any."""
        parent = path
        while True:
            parent = parent.rpartition(b"/")[0]
            if not parent:
                return None
            home = self.by_path.get(parent)
            if home is not None:
                return home


def _loose(entry: Entry | None) -> bool:
    """World-writable in a way that lets anyone replace what is there."""
    if entry is None or entry.type not in ("f", "d") or not entry.perms & stat.S_IWOTH:
        return False
    return not (entry.type == "d" and entry.perms & stat.S_ISVTX)


def reasons(change: Change, homes: Homes) -> tuple[str, ...]:
    """Why a change is a privilege change (empty: it is none)."""
    if change.kind not in (ADDED, CHANGED) or change.new is None:
        return ()
    new, old, fields = change.new, change.old, change.fields
    arrives = change.kind == ADDED
    found = []
    if "perms" in fields and new.type == "f":
        for bit, word in ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid")):
            if new.perms & bit and (old is None or not old.perms & bit):
                found.append(f"arrives {word}" if arrives else f"{word} bit set")
    if "perms" in fields and _loose(new) and not _loose(old):
        what = "world-writable directory without the sticky bit" if new.type == "d" \
            else "world-writable"
        found.append(("arrives " if arrives else "now ") + what)
    if "caps" in fields:
        widened = _widened_caps(old.caps if old is not None else None, new.caps)
        if widened:
            found.append(("arrives with capabilities " if arrives else
                          "capabilities added or widened: ") + ", ".join(widened))
    if "acl" in fields:
        writers = _acl_writers(new.acl) - _acl_writers(old.acl if old is not None else None)
        if writers:
            found.append("ACL lets " + ", ".join(sorted(writers)) + " write")
    if "uid" in fields and new.uid == 0 and (old is None or old.uid != 0):
        home = homes.owner_of(new.path)
        if home is not None:
            found.append(f"owned by root in the home of "
                         f"{escape(home.user.encode('utf-8', 'surrogateescape'))}")
    return tuple(found)


def mark(changes: Iterable[Change], homes: Homes) -> list[Change]:
    """The changes, each privilege change with its reasons."""
    out = []
    for change in changes:
        why = reasons(change, homes)
        out.append(replace(change, reasons=why) if why else change)
    return out
