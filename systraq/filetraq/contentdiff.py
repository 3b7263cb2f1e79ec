"""Content diffs for the filetraq report: unified (``diff -u``) or context (``diff -p -C 1``).

Lines are compared as bytes, split on newlines only, as diff(1) does; a last line without a
newline gets diff's ``\\ No newline at end of file``. What is shown is made safe for a
terminal or a mail: invalid UTF-8 and control characters (but tabs) appear as ``\\xHH``.
Binary content (a NUL byte, as diff(1) decides) is never diffed: see ``is_binary``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher

STYLES = ("unified", "context")
ORDERS = ("oldnew", "newold")
NO_NEWLINE = "\\ No newline at end of file"

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_FUNCTION = re.compile(rb"[A-Za-z_$]")  # diff -p: a line starting like a C function
_FUNCTION_WIDTH = 40


def is_binary(*contents: bytes) -> bool:
    """Whether diff(1) would call this binary: a NUL byte in any of the contents."""
    return any(b"\0" in content for content in contents)


def split_lines(data: bytes) -> list[bytes]:
    """Split on b"\\n" only, keeping the newlines; a last partial line stays as it is."""
    lines = [line + b"\n" for line in data.split(b"\n")]
    last = lines.pop()
    if last != b"\n":
        lines.append(last[:-1])
    return lines


def shown(line: bytes) -> str:
    """One content line (newline dropped) as safe, readable text."""
    text = line.rstrip(b"\n").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def timestamp(ns: int) -> str:
    """diff(1)'s header time: 2026-11-23 15:04:01.123456789 +0100 (local time)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    local = time.localtime(seconds)
    return time.strftime("%Y-%m-%d %H:%M:%S", local) + f".{fraction:09d} " + \
        time.strftime("%z", local)


def diff(old: bytes, new: bytes, *, old_label: str, new_label: str, old_time_ns: int,
         new_time_ns: int, style: str = "unified", order: str = "oldnew") -> list[str]:
    """The diff between two contents as lines (without newlines); empty if they are equal.

    ``order`` "newold" diffs new against old, as Debian's filetraq does by default.
    """
    if style not in STYLES or order not in ORDERS:
        raise ValueError(f"unknown diff style {style!r} or order {order!r}")
    first = (old, old_label, old_time_ns)
    second = (new, new_label, new_time_ns)
    if order == "newold":
        first, second = second, first
    a, b = split_lines(first[0]), split_lines(second[0])
    if a == b:
        return []
    heads = (f"{first[1]}\t{timestamp(first[2])}", f"{second[1]}\t{timestamp(second[2])}")
    matcher = SequenceMatcher(None, a, b)
    if style == "unified":
        return [f"--- {heads[0]}", f"+++ {heads[1]}", *_unified(a, b, matcher)]
    return [f"*** {heads[0]}", f"--- {heads[1]}", *_context(a, b, matcher)]


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


def _unified(a: Sequence[bytes], b: Sequence[bytes], matcher: SequenceMatcher
             ) -> Iterable[str]:
    for group in matcher.get_grouped_opcodes(3):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        yield f"@@ -{_range_unified(i1, i2)} +{_range_unified(j1, j2)} @@"
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                yield from _body(" ", a[i1:i2])
                continue
            if tag in ("replace", "delete"):
                yield from _body("-", a[i1:i2])
            if tag in ("replace", "insert"):
                yield from _body("+", b[j1:j2])


def _function_before(a: Sequence[bytes], index: int) -> str:
    for line in reversed(a[:index]):
        if _FUNCTION.match(line):
            return shown(line[:_FUNCTION_WIDTH]).rstrip()
    return ""


def _context(a: Sequence[bytes], b: Sequence[bytes], matcher: SequenceMatcher
             ) -> Iterable[str]:
    marks = {"replace": "! ", "delete": "- ", "insert": "+ ", "equal": "  "}
    for group in matcher.get_grouped_opcodes(1):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        function = _function_before(a, i1)
        yield "***************" + (f" {function}" if function else "")
        yield f"*** {_range_context(i1, i2)} ****"
        if any(tag in ("replace", "delete") for tag, *_ in group):
            for tag, k1, k2, _, _ in group:
                if tag != "insert":
                    yield from _body(marks[tag], a[k1:k2])
        yield f"--- {_range_context(j1, j2)} ----"
        if any(tag in ("replace", "insert") for tag, *_ in group):
            for tag, _, _, k1, k2 in group:
                if tag != "delete":
                    yield from _body(marks[tag], b[k1:k2])
