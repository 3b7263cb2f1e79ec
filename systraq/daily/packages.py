"""Packages: the summary of ``systraq packages`` and the last day's package operations.

The verification is ``systraq packages``'s (``packages.summary``), run as root only: its md5
cache is root's, and without it every package file would be read again each day. The
operations are read from ``/var/log/dpkg.log`` here.
"""

from __future__ import annotations

import os
import re
import time

from systraq.daily.context import DailyContext, capped, printable
from systraq.daily.report import Section
from systraq.errors import SystraqError
from systraq.packages.summary import daily_summary

DPKG_LOG = "/var/log/dpkg.log"
_OPERATION = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (install|upgrade|remove|purge|"
                        r"downgrade) (\S+) (\S+) (\S+)$")
_READ_LIMIT = 16 << 20


def operations(ctx: DailyContext) -> list[str]:
    """One line per package operation of the last day, oldest first."""
    lines: list[str] = []
    for name in (DPKG_LOG + ".1", DPKG_LOG):
        try:
            if name.endswith(".1") and os.stat(ctx.path(name)).st_mtime < ctx.since:
                continue
            lines += ctx.read(name, _READ_LIMIT, tail=True).decode("utf-8", "replace") \
                .splitlines()
        except FileNotFoundError:
            continue
    found = []
    for line in lines:
        match = _OPERATION.match(line)
        if not match:
            continue
        when = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
        if when < ctx.since:
            continue
        what, package, old, new = match.group(2, 3, 4, 5)
        versions = {"install": new, "remove": old, "purge": old}.get(what, f"{old} → {new}")
        found.append(printable(f"{match.group(1)[11:16]} {what} {package} {versions}", 200))
    return found


def collect(ctx: DailyContext) -> Section:
    section = Section("packages", "Packages")
    limit = ctx.settings.daily.max_lines
    summary = None
    if os.geteuid() != 0:
        section.unavailable("package verification runs as root (its md5 cache is root's): "
                            "not checked", "verification")
    else:
        try:
            summary = daily_summary(ctx.root, ctx.settings)
        except SystraqError as err:
            section.unavailable(f"package verification: {err}", "verification")
    if summary is not None:
        for heading, items in (("changed outside dpkg", summary.changed),
                               ("modified conffiles", summary.conffiles),
                               ("packages without md5sums", summary.without_md5sums)):
            section.add(f"{heading} ({len(items)})",
                        capped([printable(i, 200) for i in items], limit) or ["none"])
        if summary.changed:
            section.attend(f"{len(summary.changed)} package files changed outside dpkg")
        for problem in summary.problems:
            section.attend(f"package database: {problem}")
    heading = "package operations of the last day"
    try:
        done = operations(ctx)
    except PermissionError:
        section.unavailable(f"{DPKG_LOG}: not readable by this user", heading)
    except OSError as err:
        section.unavailable(f"{DPKG_LOG}: {err.strerror or err}", heading)
    else:
        section.add(f"{heading} ({len(done)})", capped(done, limit) or ["none"])
    return section
