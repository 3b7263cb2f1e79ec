"""Lines of the pub and the root lists that cover the same paths.

What both cover is root's alone (the pub scan yields it, ``pathrules``); the snapshot says
which lines overlap, from the lines themselves: two lines overlap when their components
can match the same names as far as the shorter goes, and the longer one (what both cover)
is excluded by neither mode. Homelist lines are compared as they are when both are
relative; against a list line, a homelist line is joined to every home, and the two
overlap only where what both cover exists (system accounts have homes like /usr/sbin,
under lines that cover their directory, and no start-up files there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from systraq.fs.nofollow import DirCache
from systraq.patterns import components, globs_meet, match_name
from systraq.snapshot.listfiles import Pattern, expand


@dataclass(frozen=True)
class Overlap:
    pub: Pattern
    root: Pattern

    def message(self) -> str:
        return (f"{self.pub.where} ({self.pub.text.decode(errors='replace')}) and "
                f"{self.root.where} ({self.root.text.decode(errors='replace')}) cover the "
                "same paths: those are scanned and reported in root mode only")


def _meet(a: list[bytes], b: list[bytes]) -> list[bytes] | None:
    """The longer of two lines' components when they can cover a common path, else None."""
    if all(globs_meet(x, y) for x, y in zip(a, b, strict=False)):
        return a if len(a) >= len(b) else b
    return None


def _exists(parts: list[bytes], dirs: DirCache) -> bool:
    """Whether anything on disk matches these components (what cannot be looked into
    does not count)."""
    try:
        return next(iter(expand(b"/" + b"/".join(parts), dirs)), None) is not None
    except OSError:
        return False


def _excluded(parts: list[bytes], exclusions: Sequence[list[bytes]]) -> bool:
    return any(len(ex) <= len(parts) and all(e == p or match_name(e, p)
                                             for e, p in zip(ex, parts, strict=False))
               for ex in exclusions)


def overlaps(pub_lists: Sequence[Pattern], pub_homelists: Sequence[Pattern],
             root_lists: Sequence[Pattern], root_homelists: Sequence[Pattern],
             homes: Sequence[bytes]) -> list[Overlap]:
    """The pairs of pub and root lines that cover a path both scans would record."""

    def absolute(patterns: Sequence[Pattern], relative: bool
                 ) -> list[tuple[Pattern, list[bytes]]]:
        if not relative:
            return [(p, components(p.text)) for p in patterns]
        return [(p, components(home + b"/" + p.text)) for p in patterns for home in homes]

    def split(patterns: Sequence[Pattern]) -> tuple[list[Pattern], list[Pattern]]:
        return [p for p in patterns if not p.exclude], [p for p in patterns if p.exclude]

    pub_in, pub_ex = split(pub_lists)
    pub_home_in, pub_home_ex = split(pub_homelists)
    root_in, root_ex = split(root_lists)
    root_home_in, root_home_ex = split(root_homelists)
    exclusions = [parts for _, parts in absolute(pub_ex + root_ex, False)
                  + absolute(pub_home_ex + root_home_ex, True)]
    relative_exclusions = [components(p.text) for p in pub_home_ex + root_home_ex]
    found: dict[tuple[Pattern, Pattern], None] = {}
    # Relative against relative: the same homes on both sides.
    for pub in pub_home_in:
        for root in root_home_in:
            meet = _meet(components(pub.text), components(root.text))
            if meet is not None and not _excluded(meet, relative_exclusions):
                found[(pub, root)] = None
    pairs = [(p, pp, r, rp, False) for p, pp in absolute(pub_in, False)
             for r, rp in absolute(root_in, False)]
    pairs += [(p, pp, r, rp, True) for p, pp in absolute(pub_in, False)
              for r, rp in absolute(root_home_in, True)]
    pairs += [(p, pp, r, rp, True) for p, pp in absolute(pub_home_in, True)
              for r, rp in absolute(root_in, False)]
    with DirCache() as dirs:
        for pub, pub_parts, root, root_parts, in_homes in pairs:
            if (pub, root) in found:
                continue
            meet = _meet(pub_parts, root_parts)
            if meet is None or _excluded(meet, exclusions):
                continue
            if in_homes and not _exists(meet, dirs):
                continue
            found[(pub, root)] = None
    return [Overlap(pub, root) for pub, root in found]
