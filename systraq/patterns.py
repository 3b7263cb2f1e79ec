"""Paths and shell globs: the one place that decides order and matching.

Every command that sorts paths or matches a glob against a path (list files, filetraq's
list, ``baseline PATH``) goes through here, so they agree on what a pattern names.
"""

from __future__ import annotations

import fnmatch
import re

GLOB_CHARS = re.compile(rb"[*?[]")


def order_key(path: bytes) -> bytes:
    """Sort key of a path: component by component, so a directory's subtree stays together."""
    return path.replace(b"/", b"\0")


def components(path: bytes) -> list[bytes]:
    return [part for part in path.split(b"/") if part]


def has_glob(text: bytes) -> bool:
    return GLOB_CHARS.search(text) is not None


def literal(path: bytes) -> bytes:
    """A glob that matches exactly ``path``: every glob character bracketed."""
    return GLOB_CHARS.sub(lambda m: b"[" + m.group() + b"]", path)


def match_name(pattern: bytes, name: bytes) -> bool:
    """Whether one path component matches one glob component, as the shell has it: a
    leading dot must be matched by a leading dot."""
    if name.startswith(b".") and not pattern.startswith(b"."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def covers(pattern: bytes | list[bytes], path: bytes) -> bool:
    """Whether a glob names ``path`` or a directory above it."""
    wanted = components(pattern) if isinstance(pattern, bytes) else pattern
    parts = components(path)
    return len(parts) >= len(wanted) and all(
        match_name(glob, name) for glob, name in zip(wanted, parts, strict=False))


def _tokens(glob: bytes) -> list[bytes | frozenset[int] | None]:
    """A glob component as tokens: b"*", a set of bytes one character may be, None for '?'."""
    out: list[bytes | frozenset[int] | None] = []
    i = 0
    while i < len(glob):
        char = glob[i:i + 1]
        if char == b"*":
            if not out or out[-1] != b"*":
                out.append(b"*")
        elif char == b"?":
            out.append(None)
        elif char == b"[":
            end = glob.find(b"]", i + 2 if glob[i + 1:i + 2] in (b"!", b"^") else i + 1)
            inner = glob[i + 1:end] if end > 0 else b""
            if end < 0 or not inner or inner in (b"!", b"^"):
                out.append(frozenset(b"["))  # no closing bracket: a literal '['
            else:
                negate = inner[:1] in (b"!", b"^")
                members = _class_members(inner[1:] if negate else inner)
                out.append(frozenset(range(256)) - members if negate else members)
                i = end
        else:
            out.append(frozenset(char))
        i += 1
    return out


def _class_members(inner: bytes) -> frozenset[int]:
    members: set[int] = set()
    i = 0
    while i < len(inner):
        if i + 2 < len(inner) and inner[i + 1:i + 2] == b"-":
            members.update(range(inner[i], inner[i + 2] + 1))
            i += 3
        else:
            members.add(inner[i])
            i += 1
    return frozenset(members)


def globs_meet(a: bytes, b: bytes) -> bool:
    """Whether two glob components can match one name (a literal is a glob too)."""
    left, right = _tokens(a), _tokens(b)
    seen: dict[tuple[int, int], bool] = {}

    def meet(i: int, j: int) -> bool:
        if (i, j) in seen:
            return seen[(i, j)]
        seen[(i, j)] = False  # a cycle through stars adds nothing
        if i == len(left) and j == len(right):
            result = True
        elif i < len(left) and left[i] == b"*":
            result = meet(i + 1, j) or (j < len(right) and meet(i, j + 1))
        elif j < len(right) and right[j] == b"*":
            result = meet(i, j + 1) or (i < len(left) and meet(i + 1, j))
        elif i == len(left) or j == len(right):
            result = False
        else:
            x, y = left[i], right[j]
            common = x is None or y is None or bool(x & y)  # type: ignore[operator]
            result = common and meet(i + 1, j + 1)
        seen[(i, j)] = result
        return result

    return meet(0, 0)
