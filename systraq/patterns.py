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
