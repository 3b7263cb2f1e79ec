"""Setting a host up: ``systraq init``, and the check scheduled jobs make before running.

A host is *set up* once ``systraq init`` has written its marker, ``STATE/initialized``, as
its very last step (after the account, the state directory, the first snapshots and the
baseline). The marker also names the scheduler init chose, cron or systemd timers. A job
started by a scheduler (``systraq --scheduled-by cron|timers COMMAND``) runs only when the
marker exists and names that scheduler: before init it prints one line saying so and
exits 0; when init chose the other scheduler, it exits 0 silently, so the cron file and
the timers can both be installed without a job ever running twice.

This module is imported by every scheduled run: it needs nothing but the standard library.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from systraq.layout import Layout

SCHEDULERS = ("cron", "timers")
NOT_SET_UP = "systraq is not set up yet: run systraq init"


@dataclass(frozen=True)
class Marker:
    """What ``STATE/initialized`` records."""

    scheduler: str = "cron"
    version: str = ""
    initialized: str = ""
    migrated_from: tuple[str, ...] = field(default_factory=tuple)


def read_marker(path: Path) -> Marker | None:
    """The marker, or None when it does not exist. A marker that cannot be read or parsed
    counts as one naming cron: a job that runs is better than one that keeps quiet."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return Marker()
    scheduler = data.get("scheduler")
    migrated = data.get("migrated_from", ())
    return Marker(
        scheduler=scheduler if scheduler in SCHEDULERS else "cron",
        version=str(data.get("version", "")),
        initialized=str(data.get("initialized", "")),
        migrated_from=tuple(str(m) for m in migrated) if isinstance(migrated, list) else (),
    )


def format_marker(marker: Marker) -> str:
    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    migrated = ", ".join(quoted(m) for m in marker.migrated_from)
    return ("# Written by `systraq init` as its last step. The scheduled jobs run only once\n"
            "# this file exists, and only those of the scheduler it names (see systraq(8)).\n"
            f"version = {quoted(marker.version)}\n"
            f"initialized = {quoted(marker.initialized)}\n"
            f"scheduler = {quoted(marker.scheduler)}\n"
            f"migrated_from = [{migrated}]\n")


@dataclass(frozen=True)
class Gate:
    """Whether a scheduled job goes on, and the line it prints when it does not."""

    run: bool
    message: str = ""


def scheduled_gate(layout: Layout, scheduled_by: str) -> Gate:
    """Decide whether a job started by ``scheduled_by`` (cron or timers) runs."""
    marker = read_marker(layout.setup_marker)
    if marker is None:
        return Gate(run=False, message=NOT_SET_UP)
    if marker.scheduler != scheduled_by:
        return Gate(run=False)
    return Gate(run=True)
