"""What a report judges a mode's changes by: the rules its lists name, the homes privilege
changes are told by, and (pub) the paths the root lists took over."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from systraq.changes.attention import Homes, mark
from systraq.changes.compare import REMOVED, Change
from systraq.changes.report import LOST, watch_state
from systraq.config import Settings
from systraq.pathcodec import escape
from systraq.rules import Rule
from systraq.snapshot.listfiles import accounts_homes
from systraq.snapshot.pathrules import EXCLUDE, PathRules, mode_rules


@dataclass
class Judge:
    rule_of: Callable[[bytes], Rule] | None  # None: every path under the default rule
    homes: Homes
    root_rules: PathRules | None = None  # for the pub mode: what the root lists cover
    own_rules: PathRules | None = None  # this mode's lines, for what they now exclude

    def finish(self, changes: Iterable[Change], notes: list[str]) -> list[Change]:
        """Mark privilege changes; drop what left the pub snapshot for the root one, and
        what is no longer seen below a directory the scan can no longer look into."""
        kept = []
        handed_over = excluded = 0
        lost: dict[bytes, int] = {}  # directories now blind → entries unseen below
        for change in changes:  # in path order: a directory before what is below it
            if change.kind == REMOVED:
                if self.own_rules is not None and self.own_rules.scope(change.path).excluded:
                    excluded += 1
                    continue
                if self.root_rules is not None and self.root_rules.covers(change.path):
                    handed_over += 1
                    continue
                above = _below(change.path, lost)
                if above is not None:
                    lost[above] += 1
                    continue
            elif change.new is not None and change.new.type == "d" and \
                    watch_state(change) == LOST:
                lost[change.path] = 0
            kept.append(change)
        if handed_over:
            notes.append(f"{handed_over} entr{'y' if handed_over == 1 else 'ies'} the root "
                         "lists cover too left this snapshot: they are scanned and reported "
                         "in root mode only")
        if excluded:
            notes.append(f"{excluded} entr{'y' if excluded == 1 else 'ies'} the lists now "
                         "exclude left this snapshot (not reported as removed)")
        for directory, unseen in lost.items():
            if unseen:
                notes.append(f"{unseen} entr{'y' if unseen == 1 else 'ies'} below "
                             f"{escape(directory)} {'is' if unseen == 1 else 'are'} not seen "
                             "while the scan cannot look into it (not reported as removed)")
        return mark(kept, self.homes)


def _below(path: bytes, directories: dict[bytes, int]) -> bytes | None:
    """The directory of ``directories`` strictly above ``path``, if any."""
    if not directories:
        return None
    parent = path
    while True:
        parent = parent.rpartition(b"/")[0]
        if not parent:
            return None
        if parent in directories:
            return parent


def judge_for(settings: Settings, mode: str) -> Judge:
    """The judge of a mode's changes, from its lists as they are now."""
    book = settings.rule_book
    accounts = accounts_homes(settings.snapshot.passwd)
    homes = sorted({home.path for home in accounts})
    rules = mode_rules(settings, mode, homes)
    rule_of = None
    if any(line.rule != "default" for line in rules.lines):
        def rule_of(path: bytes) -> Rule:
            return book[rules.rule_of(path)]
    root_rules = None
    if mode == "pub":
        root_files = [settings.layout.list_file("root", kind) for kind in ("list", "homelist")]
        if any(p.exists() for p in root_files) and \
                all(os.access(p, os.R_OK) for p in root_files if p.exists()):
            root_rules = mode_rules(settings, "root", homes)
    excluding = rules if any(line.kind == EXCLUDE for line in rules.lines) else None
    return Judge(rule_of, Homes(accounts), root_rules, excluding)
