"""The daily job: every enabled part in order, history, then the report shown or mailed."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from systraq.config import Settings
from systraq.daily import (
    accounts,
    audit,
    extension,
    health,
    history,
    logins,
    logs,
    packages,
    security,
    sums,
    system,
)
from systraq.daily.context import DailyContext, Unavailable
from systraq.daily.report import DailyReport, Section, render_text, subject
from systraq.delivery import DeliveryOutcome, deliver
from systraq.errors import ExitStatus

Collect = Callable[[DailyContext], Section]

# The built-in parts in report order, by the names daily.disable uses.
PARTS: dict[str, tuple[str, Collect]] = {
    "system": ("System", system.collect),
    "accounts": ("Accounts", accounts.collect),
    "logins": ("Logins", logins.collect),
    "logs": ("Log highlights", logs.collect),
    "audit": ("Commands run with root rights", audit.collect),
    "security": ("Security checks", security.collect),
    "packages": ("Packages", packages.collect),
    "sums": ("Local checksums", sums.collect),
    "health": ("Integrity and systraq's health", health.collect),
}


def _run_part(ctx: DailyContext, key: str, title: str, collect: Collect) -> Section:
    """One part; whatever goes wrong in it becomes one line, and the report goes on."""
    try:
        return collect(ctx)
    except Unavailable as why:
        section = Section(key, title)
        section.unavailable(str(why))
        return section
    except Exception as err:  # a part's bug must not cost the other parts
        section = Section(key, title)
        section.unavailable(f"could not run: {type(err).__name__}: {err}")
        return section


def build_report(settings: Settings, root: Path = Path("/"), now: float | None = None,
                 keep_history: bool = True) -> DailyReport:
    """Collect every enabled part into a report (and update the history, if allowed)."""
    ctx = DailyContext(settings, root, time.time() if now is None else now)
    report = DailyReport(host=_host(ctx), created=ctx.now, uptime=system.uptime(ctx))
    disabled = set(settings.daily.disable)
    for key, (title, collect) in PARTS.items():
        if key not in disabled:
            report.sections.append(_run_part(ctx, key, title, collect))
    if "extensions" not in disabled:
        try:
            report.sections.extend(extension.collect(ctx))
        except Exception as err:
            section = Section("extensions", "Local parts")
            section.unavailable(f"could not run: {type(err).__name__}: {err}")
            report.sections.append(section)
    if keep_history:
        report.history, notes = history.update(ctx, len(report.attention))
        health_section = next((s for s in report.sections if s.key == "health"), None)
        if notes and health_section is not None:
            health_section.add("history", notes)
    else:
        report.history = history.read_only(ctx)
    return report


def _host(ctx: DailyContext) -> str:
    if ctx.live:
        return socket.gethostname()
    try:
        return ctx.read_text("/etc/hostname", 256).strip() or socket.gethostname()
    except Unavailable:
        return socket.gethostname()


@dataclass
class DailyResult:
    report: DailyReport
    delivery: DeliveryOutcome | None = None

    @property
    def status(self) -> ExitStatus:
        if self.delivery is not None and not self.delivery.ok:
            return ExitStatus.TROUBLE
        return ExitStatus.DIFFERENCES if self.report.attention else ExitStatus.OK


def mail_report(settings: Settings, report: DailyReport) -> DeliveryOutcome:
    """Send the report as text with an HTML alternative (spooled when the mail system
    cannot take it now)."""
    from systraq.daily.html import render_html

    return deliver(settings, subject(report), render_text(report), html=render_html(report))


def run_daily(settings: Settings, root: Path = Path("/"), mail: bool = False,
              now: float | None = None) -> DailyResult:
    """Build the report; with ``mail``, deliver it (the caller prints it otherwise)."""
    root = Path(os.path.abspath(root))
    report = build_report(settings, root, now)
    outcome = mail_report(settings, report) if mail else None
    return DailyResult(report, outcome)
