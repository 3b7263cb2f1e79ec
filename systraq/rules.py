"""Rules: what a path's changes are judged on, named after the path in a list line.

A rule is a set of compared fields plus a behaviour. Five are shipped; ``systraq.conf``
may define more in ``[rules]`` (systraq.conf(5)):

``default``  the fields of ``report.fields``
``growing``  the same, but the size may grow as long as the old content stays a prefix
             (a log): such a file is hashed with its old length's prefix too
``perms``    type, permissions, owner, group and extended attributes only
``content``  content hash and size only
``exists``   present or not
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from systraq.changes.compare import REPORTABLE_FIELDS

DEFAULT = "default"
GROWING = "growing"
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_PERMS_FIELDS = ("type", "perms", "uid", "gid", "caps", "acl", "label", "xattrs")
_CONTENT_FIELDS = ("size", "hash")
SHIPPED = (DEFAULT, GROWING, "perms", "content", "exists")
# What a rule in systraq.conf may say.
KEYS = ("fields", "growing")


@dataclass(frozen=True)
class Rule:
    name: str
    fields: tuple[str, ...]
    growing: bool = False  # size may grow while the old content stays a prefix

    @property
    def compares_status(self) -> bool:
        """Whether a scan status (unreadable, changed while scanned) counts: it says
        whether the content was checked, which only a rule comparing content cares about."""
        return "hash" in self.fields


def shipped(report_fields: tuple[str, ...]) -> dict[str, Rule]:
    """The shipped rules; ``default`` and ``growing`` compare ``report.fields``."""
    return {
        DEFAULT: Rule(DEFAULT, report_fields),
        GROWING: Rule(GROWING, _with_content(report_fields), growing=True),
        "perms": Rule("perms", _PERMS_FIELDS),
        "content": Rule("content", _CONTENT_FIELDS),
        "exists": Rule("exists", ()),
    }


def _with_content(fields: tuple[str, ...]) -> tuple[str, ...]:
    return fields + tuple(f for f in _CONTENT_FIELDS if f not in fields)


class RuleError(ValueError):
    """A rule definition that cannot be used; ``key`` is what the message is about."""

    def __init__(self, message: str, name: str, key: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.key = key


def parse_rule(name: str, value: object) -> Rule:
    """One ``[rules]`` entry (``NAME = { fields = [...], growing = false }``) as a Rule."""
    where = f"rules.{name}"
    if not NAME.fullmatch(name):
        raise RuleError(f"{where}: a rule name is a letter, then letters, digits, '_' or "
                        "'-' (64 at most)", name)
    if name in SHIPPED:
        raise RuleError(f"{where}: {name!r} is a shipped rule and cannot be redefined "
                        f"(shipped: {', '.join(SHIPPED)}; the default rule compares "
                        "report.fields)", name)
    if not isinstance(value, Mapping):
        raise RuleError(f"{where} must be a table: {name} = {{ fields = [...] }}", name)
    for key in value:
        if key not in KEYS:
            raise RuleError(f"{where}: unknown key {key!r} (known: {', '.join(KEYS)})",
                            name, key)
    fields = value.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise RuleError(f"{where}.fields must be a list of field names (known: "
                        f"{', '.join(REPORTABLE_FIELDS)})", name, "fields")
    unknown = [f for f in fields if f not in REPORTABLE_FIELDS]
    if unknown:
        raise RuleError(f"{where}.fields: unknown field {unknown[0]!r} (known: "
                        f"{', '.join(REPORTABLE_FIELDS)})", name, "fields")
    growing = value.get("growing", False)
    if not isinstance(growing, bool):
        raise RuleError(f"{where}.growing must be true or false", name, "growing")
    if growing and not all(f in fields for f in _CONTENT_FIELDS):
        raise RuleError(f"{where}: growing = true judges size and content, so fields must "
                        "include size and hash", name, "growing")
    ordered = tuple(f for f in REPORTABLE_FIELDS if f in fields)
    return Rule(name, ordered, growing)


def book(report_fields: tuple[str, ...], defined: Mapping[str, Rule]) -> dict[str, Rule]:
    """Every rule a list line may name: the shipped ones, then those of systraq.conf."""
    return {**shipped(report_fields), **defined}
