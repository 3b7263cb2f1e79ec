"""Which lines changed between two texts, chosen as GNU diff chooses them, at a bounded cost.

The steps are GNU diff's (diffutils 3.8): trim the identical ends (keeping ``horizon`` lines
of each for the later steps), set aside lines that match nothing in the other text, find a
shortest edit script by Myers' O(ND) algorithm searching from both ends (E. W. Myers, "An
O(ND) Difference Algorithm and its Variations", 1986, section 4.2) with diff's "too
expensive" cut-off, then slide each run of changes as far down as it can go. Doing the same
steps is what makes the output the same as ``diff -u`` on ordinary files, where two edit
scripts of one length can differ (which of two blank lines was deleted).

diff's own cut-off still lets one pass cost about 16 million steps, which C does in a
fraction of a second and Python does not. So every step counts against ``limit``: past it
the search stops with ``TooCostly`` and the caller says less (sizes and hashes) instead of
spending minutes on content an attacker can craft.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

WORK_LIMIT = 3_000_000  # steps for one file: about a second of Python on this hardware
_MIN_TOO_EXPENSIVE = 4096  # diff(1)'s lower bound for its cut-off (diffutils >= 3.5)
_NEWLINE = 0x0A


class TooCostly(Exception):
    """The edit script would take more than the work limit to find."""

    def __init__(self, work: int, limit: int) -> None:
        super().__init__(f"more than {limit} steps to compare (stopped after {work})")
        self.work = work
        self.limit = limit


@dataclass(frozen=True)
class Change:
    """Lines ``old`` .. ``old + deleted`` become lines ``new`` .. ``new + inserted``."""

    old: int
    new: int
    deleted: int
    inserted: int


@dataclass(frozen=True)
class Script:
    changes: list[Change]
    work: int  # the steps it took, never more than the limit it was given


def edit_script(old: bytes, new: bytes, *, horizon: int, limit: int = WORK_LIMIT) -> Script:
    """The changes from ``old`` to ``new`` (0-based line numbers), as diff(1) would find them.

    ``horizon`` is diff's context (3 for ``-u``, 1 for ``-C 1``): it decides how much of the
    identical ends the later steps still see. Raise TooCostly past ``limit`` steps.
    """
    if old == new:
        return Script([], 0)
    return _Comparison(old, new, horizon, limit).run()


def split_lines(data: bytes) -> list[bytes]:
    """Split on b"\\n" only, keeping the newlines; a last partial line stays as it is."""
    lines = data.split(b"\n")
    last = lines.pop()
    out = [line + b"\n" for line in lines]
    if last:
        out.append(last)
    return out


def _common_prefix(x: bytes, y: bytes) -> int:
    """Length of the common start of two byte strings (slices compare at memcmp speed)."""
    n = min(len(x), len(y))
    if x[:n] == y[:n]:
        return n
    low, high = 0, n  # x[:low] == y[:low], x[:high] != y[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if x[low:middle] == y[low:middle]:
            low = middle
        else:
            high = middle
    return low


def _common_suffix(x: bytes, y: bytes, cap: int) -> int:
    """Length of the common end of two byte strings, at most ``cap``."""
    if cap <= 0:
        return 0
    if x[len(x) - cap:] == y[len(y) - cap:]:
        return cap
    low, high = 0, cap
    while high - low > 1:
        middle = (low + high) // 2
        if x[len(x) - middle: len(x) - low] == y[len(y) - middle: len(y) - low]:
            low = middle
        else:
            high = middle
    return low


def identical_ends(old: bytes, new: bytes, horizon: int) -> tuple[int, int, int]:
    """Byte offsets diff(1) compares between: (prefix end, suffix start in old, in new).

    Both texts get a final newline if they lack one, as in diff; the prefix end is backed
    up ``horizon`` lines and the suffix start moved on ``horizon`` lines, so the boundary
    sliding later has room.
    """
    missing0 = bool(old) and old[-1] != _NEWLINE
    missing1 = bool(new) and new[-1] != _NEWLINE
    x = old + b"\n" if missing0 else old
    y = new + b"\n" if missing1 else new
    n0, n1 = len(x), len(y)
    p = _common_prefix(x, y)
    # A final newline that was added is not part of the prefix (unless both lack one).
    if (n0 - missing0 < p) != (n1 - missing1 < p):
        p -= 1
    hor = horizon
    while p:
        if x[p - 1] != _NEWLINE:
            p = x.rfind(b"\n", 0, p) + 1
            continue
        if hor == 0:
            break
        hor -= 1
        p -= 1
    prefix_end = p
    if missing0 != missing1:
        return prefix_end, n0, n1
    begin = prefix_end + max(0, n0 - n1)
    length = _common_suffix(x, y, n0 - begin)
    p0 = n0 - length
    p1 = p0 + (n1 - n0)
    at_line_starts = (p0 == 0 or x[p0 - 1] == _NEWLINE) and (p1 == 0 or y[p1 - 1] == _NEWLINE)
    skip = horizon + (not at_line_starts)
    while skip and p0 != n0:
        p0 = x.index(b"\n", p0) + 1
        skip -= 1
    return prefix_end, p0, p0 + (n1 - n0)


class _Comparison:
    """One comparison's state: the lines as numbers, what changed, the work so far."""

    def __init__(self, old: bytes, new: bytes, horizon: int, limit: int) -> None:
        self.old, self.new, self.horizon, self.limit = old, new, horizon, limit
        self.work = 0

    def spend(self, steps: int) -> None:
        self.work += steps
        if self.work > self.limit:
            raise TooCostly(self.work, self.limit)

    def run(self) -> Script:
        old, new = self.old, self.new
        prefix_end, suffix0, suffix1 = identical_ends(old, new, self.horizon)
        first = old.count(b"\n", 0, prefix_end)  # lines before the compared region
        lines0 = split_lines(old[prefix_end:suffix0])
        lines1 = split_lines(new[prefix_end:suffix1])
        self.spend(len(lines0) + len(lines1))
        classes: dict[bytes, int] = {}
        # Equal lines get one number; setdefault runs in C, len() before the insertion.
        eq0 = [classes.setdefault(line, len(classes)) for line in lines0]
        eq1 = [classes.setdefault(line, len(classes)) for line in lines1]
        # changed[n] is 0 and so is changed[-1]: the sentinels at both ends of diff's table.
        self.changed0 = [0] * (len(eq0) + 1)
        self.changed1 = [0] * (len(eq1) + 1)
        kept0, kept1 = self.discard_confusing_lines(eq0, eq1)
        self.xv = [eq0[i] for i in kept0]
        self.yv = [eq1[i] for i in kept1]
        self.real0, self.real1 = kept0, kept1
        diagonals = len(self.xv) + len(self.yv) + 3
        self.offset = len(self.yv) + 1
        self.fd = [0] * diagonals
        self.bd = [0] * diagonals
        too_expensive = 1
        while diagonals:
            too_expensive <<= 1
            diagonals >>= 2
        self.too_expensive = max(_MIN_TOO_EXPENSIVE, too_expensive)
        self.compareseq(0, len(self.xv), 0, len(self.yv))
        self.shift_boundaries(self.changed0, self.changed1, eq0)
        self.shift_boundaries(self.changed1, self.changed0, eq1)
        return Script(self.build_script(first, len(eq0), len(eq1)), self.work)

    # -- lines that match nothing -----------------------------------------------------

    def discard_confusing_lines(self, eq0: list[int], eq1: list[int]
                                ) -> tuple[list[int], list[int]]:
        """Set aside lines with no match (changed for sure) and runs of very common ones.

        Return the indexes of the lines the search still considers, in each text.
        """
        counts0, counts1 = Counter(eq0), Counter(eq1)
        kept = []
        for eqs, other, changed in ((eq0, counts1, self.changed0),
                                    (eq1, counts0, self.changed1)):
            many = 5
            tem = len(eqs) >> 6
            while (tem := tem >> 2) > 0:
                many *= 2
            # 1: no match in the other text; 2: matches so often it may go too.
            discards = [0 if 0 < other[e] <= many else (1 if other[e] == 0 else 2)
                        for e in eqs]
            self.spend(len(eqs))
            self._settle_provisional(discards)
            indexes = []
            for i, mark in enumerate(discards):
                if mark:
                    changed[i] = 1
                else:
                    indexes.append(i)
            kept.append(indexes)
        return kept[0], kept[1]

    def _settle_provisional(self, discards: list[int]) -> None:
        """Keep a provisional discard only inside a run of real ones, as diff does."""
        end = len(discards)
        i = 0
        while i < end:
            if discards[i] == 2:
                discards[i] = 0
            elif discards[i]:
                j, provisional = i, 0
                while j < end and discards[j]:
                    provisional += discards[j] == 2
                    j += 1
                while j > i and discards[j - 1] == 2:
                    j -= 1
                    discards[j] = 0
                    provisional -= 1
                length = j - i
                self.spend(length)
                if provisional * 4 > length:
                    for k in range(i, j):
                        if discards[k] == 2:
                            discards[k] = 0
                else:
                    self._trim_run(discards, i, length)
                    i += length - 1
            i += 1

    @staticmethod
    def _trim_run(discards: list[int], i: int, length: int) -> None:
        minimum = 1
        tem = length >> 2
        while (tem := tem >> 2) > 0:
            minimum <<= 1
        minimum += 1
        # Cancel every subrun of `minimum` or more provisional discards.
        j = consec = 0
        while j < length:
            if discards[i + j] != 2:
                consec = 0
            else:
                consec += 1
                if consec == minimum:
                    j -= consec  # back to the subrun's start: cancel all of it
                elif consec > minimum:
                    discards[i + j] = 0
            j += 1
        # From each end, cancel provisionals until three real discards in a row (or the
        # first real one at least 8 lines in).
        for step in (1, -1):
            start = i if step == 1 else i + length - 1
            consec = 0
            for j in range(length):
                k = start + step * j
                if j >= 8 and discards[k] == 1:
                    break
                if discards[k] == 2:
                    consec = 0
                    discards[k] = 0
                elif discards[k] == 0:
                    consec = 0
                else:
                    consec += 1
                if consec == 3:
                    break

    # -- the search -------------------------------------------------------------------

    def compareseq(self, xoff: int, xlim: int, yoff: int, ylim: int) -> None:
        """Mark the changes between xv[xoff:xlim] and yv[yoff:ylim] (diff's compareseq)."""
        xv, yv = self.xv, self.yv
        todo = [(xoff, xlim, yoff, ylim, False)]
        while todo:
            xoff, xlim, yoff, ylim, minimal = todo.pop()
            span = xlim - xoff
            while xoff < xlim and yoff < ylim and xv[xoff] == yv[yoff]:
                xoff += 1
                yoff += 1
            while xoff < xlim and yoff < ylim and xv[xlim - 1] == yv[ylim - 1]:
                xlim -= 1
                ylim -= 1
            slid = span - (xlim - xoff)
            self.spend(1 + slid + (ylim - yoff if xoff == xlim else 0)
                       + (xlim - xoff if yoff == ylim else 0))
            if xoff == xlim:
                for k in range(yoff, ylim):
                    self.changed1[self.real1[k]] = 1
                continue
            if yoff == ylim:
                for k in range(xoff, xlim):
                    self.changed0[self.real0[k]] = 1
                continue
            xmid, ymid, lo_minimal, hi_minimal = self.diag(xoff, xlim, yoff, ylim, minimal)
            todo.append((xmid, xlim, ymid, ylim, hi_minimal))
            todo.append((xoff, xmid, yoff, ymid, lo_minimal))

    def diag(self, xoff: int, xlim: int, yoff: int, ylim: int, minimal: bool
             ) -> tuple[int, int, bool, bool]:
        """The middle of a shortest edit script, searched from both ends at once.

        Past diff's "too expensive" cost, the point that got furthest is taken instead.
        """
        xv, yv, fd, bd, off = self.xv, self.yv, self.fd, self.bd, self.offset
        dmin, dmax = xoff - ylim, xlim - yoff
        fmid, bmid = xoff - yoff, xlim - ylim
        fmin = fmax = fmid
        bmin = bmax = bmid
        odd = (fmid - bmid) & 1
        fd[fmid + off] = xoff
        bd[bmid + off] = xlim
        beyond = xlim + ylim + 1  # diff's OFFSET_MAX: larger than any x
        budget = self.limit - self.work  # checked at every diagonal: a pass can be long
        cost = 0
        while True:
            cost += 1
            if fmin > dmin:
                fmin -= 1
                fd[fmin - 1 + off] = -1
            else:
                fmin += 1
            if fmax < dmax:
                fmax += 1
                fd[fmax + 1 + off] = -1
            else:
                fmax -= 1
            for d in range(fmax, fmin - 1, -2):
                low, high = fd[d - 1 + off], fd[d + 1 + off]
                x = high if low < high else low + 1
                x0, y = x, x - d
                while x < xlim and y < ylim and xv[x] == yv[y]:
                    x += 1
                    y += 1
                budget -= 1 + x - x0
                if budget < 0:
                    self.spend(self.limit - self.work - budget)
                fd[d + off] = x
                if odd and bmin <= d <= bmax and bd[d + off] <= x:
                    self.work = self.limit - budget
                    return x, y, True, True
            if bmin > dmin:
                bmin -= 1
                bd[bmin - 1 + off] = beyond
            else:
                bmin += 1
            if bmax < dmax:
                bmax += 1
                bd[bmax + 1 + off] = beyond
            else:
                bmax -= 1
            for d in range(bmax, bmin - 1, -2):
                low, high = bd[d - 1 + off], bd[d + 1 + off]
                x = low if low < high else high - 1
                x0, y = x, x - d
                while xoff < x and yoff < y and xv[x - 1] == yv[y - 1]:
                    x -= 1
                    y -= 1
                budget -= 1 + x0 - x
                if budget < 0:
                    self.spend(self.limit - self.work - budget)
                bd[d + off] = x
                if not odd and fmin <= d <= fmax and x <= fd[d + off]:
                    self.work = self.limit - budget
                    return x, y, True, True
            if not minimal and cost >= self.too_expensive:
                self.work = self.limit - budget
                return self._best_so_far(xoff, xlim, yoff, ylim, fmin, fmax, bmin, bmax)

    def _best_so_far(self, xoff: int, xlim: int, yoff: int, ylim: int, fmin: int,
                     fmax: int, bmin: int, bmax: int) -> tuple[int, int, bool, bool]:
        """diff's give-up point: the forward or backward diagonal that got furthest."""
        fd, bd, off = self.fd, self.bd, self.offset
        fxybest, fxbest = -1, 0
        for d in range(fmax, fmin - 1, -2):
            x = min(fd[d + off], xlim)
            y = x - d
            if ylim < y:
                x, y = ylim + d, ylim
            if fxybest < x + y:
                fxybest, fxbest = x + y, x
        bxybest, bxbest = xlim + ylim + 1, 0
        for d in range(bmax, bmin - 1, -2):
            x = max(xoff, bd[d + off])
            y = x - d
            if y < yoff:
                x, y = yoff + d, yoff
            if x + y < bxybest:
                bxybest, bxbest = x + y, x
        self.spend(fmax - fmin + bmax - bmin + 2)
        if (xlim + ylim) - bxybest < fxybest - (xoff + yoff):
            return fxbest, fxybest - fxbest, True, False
        return bxbest, bxybest - bxbest, False, True

    # -- making it look like diff -----------------------------------------------------

    def shift_boundaries(self, changed: list[int], other: list[int], equivs: list[int]
                         ) -> None:
        """Slide each run of changes down as far as equal lines allow, merging runs, then
        back up to line up with a run of changes in the other text (diff's choice)."""
        i = j = steps = 0
        end = len(equivs)
        while True:
            while i < end and not changed[i]:
                while other[j]:
                    j += 1
                j += 1
                i += 1
            if i == end:
                break
            start = i
            i += 1
            while changed[i]:
                i += 1
            while other[j]:
                j += 1
            while True:
                runlength = i - start
                while start and equivs[start - 1] == equivs[i - 1]:
                    start -= 1
                    changed[start] = 1
                    i -= 1
                    changed[i] = 0
                    while changed[start - 1]:
                        start -= 1
                    j -= 1
                    while other[j]:
                        j -= 1
                    steps += 1
                corresponding = i if other[j - 1] else end
                while i != end and equivs[start] == equivs[i]:
                    changed[start] = 0
                    start += 1
                    changed[i] = 1
                    i += 1
                    while changed[i]:
                        i += 1
                    j += 1
                    while other[j]:
                        corresponding = i
                        j += 1
                    steps += 1
                if runlength == i - start:
                    break
            while corresponding < i:
                start -= 1
                changed[start] = 1
                i -= 1
                changed[i] = 0
                j -= 1
                while other[j]:
                    j -= 1
                steps += 1
            if steps > 1024:
                self.spend(steps)
                steps = 0
        self.spend(steps + end)

    def build_script(self, first: int, n0: int, n1: int) -> list[Change]:
        """The runs of changed lines as changes, in absolute line numbers."""
        changed0, changed1 = self.changed0, self.changed1
        changes = []
        i0 = i1 = 0
        while i0 < n0 or i1 < n1:
            if changed0[i0] or changed1[i1]:
                line0, line1 = i0, i1
                while changed0[i0]:
                    i0 += 1
                while changed1[i1]:
                    i1 += 1
                changes.append(Change(first + line0, first + line1, i0 - line0, i1 - line1))
            i0 += 1
            i1 += 1
        return changes

