"""Which rule a path falls under, and whether a scan records it: list lines as a walk sees them.

Every line of a mode's lists (homelist lines once per home) covers the paths it matches
and everything below them. Of the lines that cover a path, the one with the most
components names its rule (at equal depth, the later line). A ``!`` line excludes what it
covers, whatever other lines say. The pub scan also *yields* what the root scan records:
a path a root line covers and no root exclusion does is root's alone.

A walk asks a directory's ``Scope`` for each child's: a scope holds only the lines that may
still match below it, so a tree no rule line reaches costs nothing per entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from systraq.config import Settings
from systraq.patterns import components, has_glob, match_name
from systraq.rules import DEFAULT
from systraq.snapshot.listfiles import Pattern, home_directories, parse_homelist, parse_list

INCLUDE, EXCLUDE, YIELD, UNYIELD = range(4)


@dataclass(frozen=True)
class RuleLine:
    """One list line as components (a homelist line joined to one home)."""

    parts: tuple[bytes, ...]
    kind: int  # INCLUDE, EXCLUDE, YIELD (the other mode records it), UNYIELD (it excludes it)
    rule: str = DEFAULT
    growing: bool = False
    order: int = 0


class Scope:
    """What holds at one path: its rule, whether it is recorded, and the lines that may
    still match below it."""

    __slots__ = ("depth", "rule", "growing", "rank", "excluded", "yielded", "unyielded",
                 "pending", "_index", "_plain")

    def __init__(self, depth: int, rule: str, growing: bool, rank: tuple[int, int],
                 excluded: bool, yielded: bool, unyielded: bool,
                 pending: tuple[RuleLine, ...]) -> None:
        self.depth = depth
        self.rule = rule
        self.growing = growing
        self.rank = rank
        self.excluded = excluded
        self.yielded = yielded
        self.unyielded = unyielded
        self.pending = pending
        self._index: tuple[dict[bytes, list[RuleLine]], list[RuleLine]] | None = None
        self._plain: Scope | None = None

    def __getstate__(self) -> tuple:
        # A scope travels to worker processes: without its caches.
        return (self.depth, self.rule, self.growing, self.rank, self.excluded, self.yielded,
                self.unyielded, self.pending)

    def __setstate__(self, state: tuple) -> None:
        self.__init__(*state)  # type: ignore[misc]

    @property
    def skip(self) -> bool:
        """Not recorded: excluded, or the root scan's."""
        return self.excluded or (self.yielded and not self.unyielded)

    @property
    def prune(self) -> bool:
        """Nothing at or below this path is recorded: not even looked into."""
        if self.excluded:
            return True
        return self.skip and not any(line.kind == UNYIELD for line in self.pending)

    def child(self, name: bytes) -> Scope:
        """The scope of ``name`` in this directory."""
        if not self.pending:
            return self
        literal, globs = self._lines_by_name()
        lines = literal.get(name, [])
        if globs:
            lines = lines + [ln for ln in globs if match_name(ln.parts[self.depth], name)]
        if not lines:
            if self._plain is None:
                self._plain = Scope(self.depth + 1, self.rule, self.growing, self.rank,
                                    self.excluded, self.yielded, self.unyielded, ())
            return self._plain
        return _descend(self, lines)

    def _lines_by_name(self) -> tuple[dict[bytes, list[RuleLine]], list[RuleLine]]:
        if self._index is None:
            literal: dict[bytes, list[RuleLine]] = {}
            globs = []
            for line in self.pending:
                part = line.parts[self.depth]
                if has_glob(part):
                    globs.append(line)
                else:
                    literal.setdefault(part, []).append(line)
            self._index = (literal, globs)
        return self._index


def _descend(parent: Scope, lines: Iterable[RuleLine]) -> Scope:
    """The scope one level below ``parent`` where ``lines`` match the name."""
    depth = parent.depth + 1
    rule, growing, rank = parent.rule, parent.growing, parent.rank
    excluded, yielded, unyielded = parent.excluded, parent.yielded, parent.unyielded
    pending = []
    for line in lines:
        if len(line.parts) > depth:
            pending.append(line)
            continue
        if line.kind == INCLUDE:
            if (len(line.parts), line.order) > rank:
                rule, growing, rank = line.rule, line.growing, (len(line.parts), line.order)
        elif line.kind == EXCLUDE:
            excluded = True
        elif line.kind == YIELD:
            yielded = True
        else:
            unyielded = True
    return Scope(depth, rule, growing, rank, excluded, yielded, unyielded, tuple(pending))


class PathRules:
    """The rule lines of one mode, asked path by path or walked directory by directory."""

    CACHE = 4096  # directory scopes kept for path-by-path questions

    def __init__(self, lines: Sequence[RuleLine]) -> None:
        self.lines = tuple(lines)
        # Above "/": lines of no component ("/") cover everything and apply at the top.
        above = Scope(-1, DEFAULT, False, (-1, -1), False, False, False, ())
        self.top = _descend(above, self.lines)
        self._cache: dict[bytes, Scope] = {}

    @property
    def empty(self) -> bool:
        return not self.lines

    @property
    def affects_scan(self) -> bool:
        """Whether a scan has anything to ask: a line that skips, or a growing rule."""
        return any(line.kind != INCLUDE or line.growing for line in self.lines)

    def scope(self, path: bytes) -> Scope:
        """The scope of an absolute path."""
        parts = components(path)
        if not parts:
            return self.top
        parent = b"/".join(parts[:-1])
        scope = self._cache.get(parent)
        if scope is None:
            scope = self.top
            for part in parts[:-1]:
                scope = scope.child(part)
            if len(self._cache) >= self.CACHE:
                self._cache.clear()
            self._cache[parent] = scope
        return scope.child(parts[-1])

    def rule_of(self, path: bytes) -> str:
        return self.scope(path).rule

    def covers(self, path: bytes) -> bool:
        """Whether a line of this mode's own covers ``path`` and no exclusion does."""
        scope = self.scope(path)
        return scope.rank[0] >= 0 and not scope.excluded

    def pruned(self, path: bytes) -> bool:
        """Whether nothing at or below ``path`` is recorded."""
        return self.scope(path).prune

    def skipped(self, path: bytes) -> bool:
        """Whether ``path`` itself is not recorded (excluded, or the root scan's)."""
        return self.scope(path).skip


def rule_lines(lists: Sequence[Pattern], homelists: Sequence[Pattern], homes: Sequence[bytes],
               growing_rules: Iterable[str], *, yield_to: Sequence[Pattern] = (),
               yield_homelists: Sequence[Pattern] = ()) -> list[RuleLine]:
    """The lines of one mode (and, for the pub scan, those of the root lists it yields to)."""
    growing = frozenset(growing_rules)
    out: list[RuleLine] = []

    def add(patterns: Sequence[Pattern], home_relative: bool, other: bool) -> None:
        for pattern in patterns:
            if other:
                kind = UNYIELD if pattern.exclude else YIELD
            else:
                kind = EXCLUDE if pattern.exclude else INCLUDE
            texts = [home + b"/" + pattern.text for home in homes] if home_relative \
                else [pattern.text]
            for text in texts:
                out.append(RuleLine(tuple(components(text)), kind, pattern.rule,
                                    pattern.rule in growing, len(out)))

    add(lists, False, False)
    add(homelists, True, False)
    add(yield_to, False, True)
    add(yield_homelists, True, True)
    return out


def mode_lists(settings: Settings, mode: str) -> tuple[list[Pattern], list[Pattern]]:
    """A mode's list and homelist lines (none where the file is absent)."""
    names = tuple(settings.rule_book)
    list_file = settings.layout.list_file(mode, "list")
    home_file = settings.layout.list_file(mode, "homelist")
    lists = parse_list(list_file, names) if list_file.exists() else []
    homelists = parse_homelist(home_file, names) if home_file.exists() else []
    return lists, homelists


def mode_rules(settings: Settings, mode: str, homes: Sequence[bytes] | None = None
               ) -> PathRules:
    """The rule lines of a mode's lists, as a report judges its paths by them."""
    lists, homelists = mode_lists(settings, mode)
    if homes is None:
        homes = home_directories(settings.snapshot.passwd) if homelists else []
    growing = [name for name, rule in settings.rule_book.items() if rule.growing]
    return PathRules(rule_lines(lists, homelists, homes, growing))
