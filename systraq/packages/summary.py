"""What the daily report says of the packages: the findings of ``systraq packages``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from systraq.config import Settings
from systraq.packages.verify import Verification, run_packages
from systraq.pathcodec import escape


@dataclass
class DailySummary:
    """One line per finding, changed package files first."""

    changed: list[str] = field(default_factory=list)  # files changed outside dpkg
    conffiles: list[str] = field(default_factory=list)  # conffiles edited (normal)
    without_md5sums: list[str] = field(default_factory=list)  # packages with no md5sums
    problems: list[str] = field(default_factory=list)  # what could not be checked


def _lines(result: Verification) -> list[str]:
    return [f"{escape(f.path)}: {f.problem} ({f.package.name} {f.package.version})"
            for f in result.findings]


def daily_summary(root: Path, settings: Settings) -> DailySummary:
    """Package files and conffiles checked against their packages, with root's md5 cache."""
    tree = str(root) if os.fspath(root) != "/" else None
    files = run_packages(settings, tree)
    conffiles = run_packages(settings, tree, conffiles=True)
    return DailySummary(
        changed=_lines(files), conffiles=_lines(conffiles),
        without_md5sums=[f"{p.name} {p.version}: no md5sums (debsums --generate=missing "
                         "makes them)" for p in files.without_md5sums],
        problems=[*files.problems, *conffiles.problems])
