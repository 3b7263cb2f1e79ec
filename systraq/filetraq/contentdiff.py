"""Content diffs for the filetraq report: unified (``diff -u``) or context (``diff -p -C 1``).

Lines are compared as bytes, split on newlines only, as diff(1) does; a last line without a
newline gets diff's ``\\ No newline at end of file``. What is shown is made safe for a
terminal or a mail: invalid UTF-8 and control characters (but tabs) appear as ``\\xHH``,
characters that are invisible or reorder the text (bidirectional overrides, zero-width
spaces, line separators, fillers: ``pathcodec.INVISIBLE``) as ``\\uHHHH``.
Binary content (a NUL byte, as diff(1) decides) is never diffed: see ``is_binary``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from systraq.filetraq.linediff import WORK_LIMIT, Change, TooCostly, edit_script, split_lines
from systraq.pathcodec import INVISIBLE

STYLES = ("unified", "context")
ORDERS = ("oldnew", "newold")
NO_NEWLINE = "\\ No newline at end of file"

# Control characters but tab, and what is invisible or reorders text (pathcodec.INVISIBLE).
_UNSAFE = re.compile(f"[\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f{INVISIBLE}]")
_FUNCTION = re.compile(rb"[A-Za-z_$]")  # diff -p: a line starting like a C function
_FUNCTION_WIDTH = 40
_C_SPACE = b" \t\n\v\f\r"  # what diff strips from the end of a -p function line

__all__ = ["NO_NEWLINE", "ORDERS", "STYLES", "TooCostly", "diff", "is_binary", "shown",
           "split_lines", "timestamp"]


def is_binary(*contents: bytes) -> bool:
    """Whether diff(1) would call this binary: a NUL byte in any of the contents."""
    return any(b"\0" in content for content in contents)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shown(line: bytes) -> str:
    """One content line (newline dropped) as safe, readable text."""
    text = line.rstrip(b"\n").decode("utf-8", "backslashreplace")
    return _UNSAFE.sub(_escaped, text)


def timestamp(ns: int) -> str:
    """diff(1)'s header time: 2026-11-23 15:04:01.123456789 +0100 (local time)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    local = time.localtime(seconds)
    return time.strftime("%Y-%m-%d %H:%M:%S", local) + f".{fraction:09d} " + \
        time.strftime("%z", local)


def diff(old: bytes, new: bytes, *, old_label: str, new_label: str, old_time_ns: int,
         new_time_ns: int, style: str = "unified", order: str = "oldnew",
         limit: int = WORK_LIMIT) -> list[str]:
    """The diff between two contents as lines (without newlines); empty if they are equal.

    ``order`` "newold" diffs new against old, as Debian's filetraq does by default. Raise
    TooCostly when finding the changed lines would take more than ``limit`` steps.
    """
    if style not in STYLES or order not in ORDERS:
        raise ValueError(f"unknown diff style {style!r} or order {order!r}")
    first = (old, old_label, old_time_ns)
    second = (new, new_label, new_time_ns)
    if order == "newold":
        first, second = second, first
    if first[0] == second[0]:
        return []
    context = 3 if style == "unified" else 1  # diff -u; diff -p -C 1
    script = edit_script(first[0], second[0], horizon=context, limit=limit)
    a, b = split_lines(first[0]), split_lines(second[0])
    heads = (f"{first[1]}\t{timestamp(first[2])}", f"{second[1]}\t{timestamp(second[2])}")
    hunks = _hunks(script.changes, context, len(a), len(b))
    if style == "unified":
        return [f"--- {heads[0]}", f"+++ {heads[1]}", *_unified(a, b, hunks)]
    return [f"*** {heads[0]}", f"--- {heads[1]}", *_context(a, b, hunks)]


@dataclass(frozen=True)
class _Hunk:
    """Changes close enough to share context, and the line ranges shown (ends excluded)."""

    changes: list[Change]
    start0: int
    stop0: int
    start1: int
    stop1: int


def _hunks(changes: Sequence[Change], context: int, lines0: int, lines1: int) -> list[_Hunk]:
    """Group changes as diff does: apart by more than twice the context, a new hunk."""
    groups: list[list[Change]] = []
    for change in changes:
        if groups and change.old - (groups[-1][-1].old + groups[-1][-1].deleted) <= 2 * context:
            groups[-1].append(change)
        else:
            groups.append([change])
    return [_Hunk(group, max(group[0].old - context, 0),
                  min(group[-1].old + group[-1].deleted + context, lines0),
                  max(group[0].new - context, 0),
                  min(group[-1].new + group[-1].inserted + context, lines1))
            for group in groups]


def _body(prefix: str, lines: Iterable[bytes]) -> Iterable[str]:
    for line in lines:
        yield prefix + shown(line)
        if not line.endswith(b"\n"):
            yield NO_NEWLINE


def _range_unified(start: int, stop: int) -> str:
    length = stop - start
    first = start + 1 if length else start
    return str(first) if length == 1 else f"{first},{length}"


def _range_context(start: int, stop: int) -> str:
    length = stop - start
    first = start + 1 if length else start
    return str(first) if length <= 1 else f"{first},{first + length - 1}"


def _unified(a: Sequence[bytes], b: Sequence[bytes], hunks: Iterable[_Hunk]) -> Iterable[str]:
    for hunk in hunks:
        yield f"@@ -{_range_unified(hunk.start0, hunk.stop0)} " \
            f"+{_range_unified(hunk.start1, hunk.stop1)} @@"
        at = hunk.start0
        for change in hunk.changes:
            yield from _body(" ", a[at:change.old])
            yield from _body("-", a[change.old:change.old + change.deleted])
            yield from _body("+", b[change.new:change.new + change.inserted])
            at = change.old + change.deleted
        yield from _body(" ", a[at:hunk.stop0])


class _FunctionFinder:
    """diff -p: the last line before a hunk that starts like a C function.

    Each search starts where the previous one did, as in diff, so all hunks together
    cost one pass over the file.
    """

    def __init__(self, lines: Sequence[bytes]) -> None:
        self.lines = lines
        self.searched = 0  # lines before this were searched already
        self.found: bytes | None = None

    def before(self, index: int) -> str:
        for line in reversed(self.lines[self.searched:index]):
            if _FUNCTION.match(line):
                self.found = line
                break
        self.searched = max(self.searched, index)
        if self.found is None:
            return ""
        return shown(self.found[:_FUNCTION_WIDTH].rstrip(_C_SPACE))


def _context(a: Sequence[bytes], b: Sequence[bytes], hunks: Iterable[_Hunk]) -> Iterable[str]:
    functions = _FunctionFinder(a)
    for hunk in hunks:
        function = functions.before(hunk.start0)
        yield "***************" + (f" {function}" if function else "")
        yield f"*** {_range_context(hunk.start0, hunk.stop0)} ****"
        if any(change.deleted for change in hunk.changes):
            yield from _context_side(a, hunk.changes, hunk.start0, hunk.stop0, old=True)
        yield f"--- {_range_context(hunk.start1, hunk.stop1)} ----"
        if any(change.inserted for change in hunk.changes):
            yield from _context_side(b, hunk.changes, hunk.start1, hunk.stop1, old=False)


def _context_side(lines: Sequence[bytes], changes: Sequence[Change], start: int, stop: int,
                  *, old: bool) -> Iterable[str]:
    """One side of a context hunk: "! " for a line replaced, "- "/"+ " deleted/added."""
    at = start
    for change in changes:
        first, count = (change.old, change.deleted) if old else (change.new, change.inserted)
        yield from _body("  ", lines[at:first])
        mark = "! " if change.deleted and change.inserted else ("- " if old else "+ ")
        yield from _body(mark, lines[first:first + count])
        at = first + count
    yield from _body("  ", lines[at:stop])
