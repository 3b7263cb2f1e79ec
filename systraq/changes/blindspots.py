"""Blind spots: what a snapshot lists but its scan could not look into.

An entry of status ``unreadable`` is one: a directory the scanning account cannot enter
or list (a home of mode 0700 for the pub scan, a directory a list line had to look into),
or a file whose content it cannot read. Reports say when one begins and when it ends
(``report.watch_state``); the first report and the daily report list those there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from systraq.pathcodec import escape
from systraq.snapshot.entry import TYPE_NAMES, UNREADABLE, Entry
from systraq.snapshot.state import StateReader

_MARK = f"\t{UNREADABLE}\t".encode()
_STATUS = 13  # the status column (systraq.snapshot.state.COLUMNS)


@dataclass
class BlindSpots:
    entries: list[Entry] = field(default_factory=list)  # the first ``limit`` of them
    count: int = 0

    def lines(self) -> list[str]:
        """One line per blind spot shown, ``and N more`` for the rest."""
        out = [f"{escape(e.path)} ({TYPE_NAMES.get(e.type, e.type)} {e.perms:04o} "
               f"{e.user or e.uid}:{e.group or e.gid})" for e in self.entries]
        if self.count > len(self.entries):
            out.append(f"and {self.count - len(self.entries)} more")
        return out


def blind_spots(path: Path, limit: int = 40) -> BlindSpots:
    """The blind spots of a state file (raises StateError as StateReader does)."""
    found = BlindSpots()
    with StateReader(path) as reader:
        for _, line in reader.raw():
            if _MARK not in line or line.split(b"\t", _STATUS + 1)[_STATUS] != _MARK[1:-1]:
                continue
            found.count += 1
            if len(found.entries) < limit:
                found.entries.append(reader.parse(line))
    return found


def first_note(spots: BlindSpots, mode: str) -> str:
    """What the first report of a mode says about its blind spots."""
    many = spots.count != 1
    return (f"not watched: {spots.count} entr{'ies' if many else 'y'} the {mode} scan cannot "
            f"look into: " + "; ".join(spots.lines()))
