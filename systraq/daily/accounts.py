"""Accounts: uid 0 other than root, and accounts anyone could log in to without a password."""

from __future__ import annotations

from systraq.daily.context import DailyContext, Unavailable, printable
from systraq.daily.report import Section


def _shadow_passwords(ctx: DailyContext) -> dict[str, str]:
    """Account name → password field of ``/etc/shadow`` (only whether it is empty is used)."""
    text = ctx.read_text("/etc/shadow", 8 << 20, "shadow")
    fields = (line.split(":") for line in text.splitlines())
    return {f[0]: f[1] for f in fields if len(f) >= 2}


def collect(ctx: DailyContext) -> Section:
    section = Section("accounts", "Accounts")
    try:
        accounts = ctx.accounts
    except Unavailable as why:
        section.unavailable(str(why))
        return section
    superusers = [a.name for a in accounts if a.uid == 0 and a.name != "root"]
    for name in superusers:
        section.attend(f"account {printable(name, 64)} has uid 0")
    section.add("accounts with uid 0 other than root",
                [printable(n, 64) for n in superusers] or ["none"])

    # An empty password field lets anyone in without a password; "x" defers to shadow.
    empty = [a.name for a in accounts if a.password == ""]
    block = section.add("accounts with an empty password")
    try:
        shadow = _shadow_passwords(ctx)
    except Unavailable as why:
        block.lines.append(f"{why}: only the passwd file was checked")
    else:
        empty += [a.name for a in accounts if a.password == "x" and shadow.get(a.name) == ""]
    empty = sorted(set(empty))
    for name in empty:
        section.attend(f"account {printable(name, 64)} has an empty password")
    block.lines[:0] = [printable(n, 64) for n in empty] or ["none"]
    return section
