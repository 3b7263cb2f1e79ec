"""Packages: the summary of ``systraq packages`` and the last day's package operations.

The verification comes from ``systraq.packages`` (the dpkg database reader), through one
function this part expects::

    systraq.packages.daily_summary(root: Path, settings: Settings) -> summary

where ``summary`` has ``changed``, ``conffiles`` and ``without_md5sums``, each a list of
one-line strings (files changed outside dpkg, modified conffiles, packages that ship no
md5sums). Where that module is absent, the part says so in one line. The operations are
read from ``/var/log/dpkg.log`` here.
"""

from __future__ import annotations

import importlib
import os
import re
import time
from typing import Any

from systraq.daily.context import DailyContext, capped, printable
from systraq.daily.report import Section

DPKG_LOG = "/var/log/dpkg.log"
_OPERATION = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (install|upgrade|remove|purge|"
                        r"downgrade) (\S+) (\S+) (\S+)$")
_READ_LIMIT = 16 << 20


def _verifier() -> Any | None:
    try:
        module = importlib.import_module("systraq.packages")
    except ImportError:
        return None
    return getattr(module, "daily_summary", None)


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
    verify = _verifier()
    if verify is None:
        section.unavailable("package verification is not available in this systraq "
                            "(no systraq.packages)", "verification")
    else:
        summary = verify(ctx.root, ctx.settings)
        for heading, items in (("changed outside dpkg", summary.changed),
                               ("modified conffiles", summary.conffiles),
                               ("packages without md5sums", summary.without_md5sums)):
            section.add(f"{heading} ({len(items)})",
                        capped([printable(i, 200) for i in items], limit) or ["none"])
        if summary.changed:
            section.attend(f"{len(summary.changed)} package files changed outside dpkg")
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
