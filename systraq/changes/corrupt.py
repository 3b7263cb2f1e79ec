"""A reported or baseline copy that fails its checks: a finding, set aside, never a wedge.

A copy that is truncated, edited or not of its mode would otherwise stop every later diff.
Instead the report says so loudly, the bad file is renamed beside it
(``NAME.corrupt-STAMP``) for inspection, and the comparison falls back on the next copy
that is sound: the baseline for the reported copy, else a first report. The run that
records the report renames the bad copy once the report is delivered and makes a new
copy, so the next run is quiet again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from systraq.errors import StateError
from systraq.fs.atomic import fsync_dir
from systraq.layout import BASELINE, Layout
from systraq.pathcodec import escape


def names(err: StateError, path: Path) -> bool:
    """Whether ``err`` is about the file at ``path``."""
    return err.path is not None and os.fsencode(err.path) == os.fsencode(path)


@dataclass(frozen=True)
class SetAside:
    """A corrupt copy and the name it is kept under, renamed once the report that says so
    was delivered (a report lost on the way says it again next time)."""

    copy: Path
    kept: Path

    def apply(self) -> None:
        """Rename the copy (the caller holds the report lock)."""
        os.rename(self.copy, self.kept)
        fsync_dir(self.copy.parent)


def plan_set_aside(layout: Layout, copy: Path) -> SetAside:
    """Where a corrupt copy will be kept: beside it, under a name no run reads."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    kept, extra = layout.set_aside(copy, stamp), 0
    while os.path.lexists(kept):
        extra += 1
        kept = layout.set_aside(copy, f"{stamp}.{extra}")
    return SetAside(copy, kept)


def finding(kind: str, mode: str, err: StateError, kept: Path | None, instead: str) -> str:
    """The report's line about a corrupt copy: what failed, where it went, what was done."""
    what = "accepted baseline" if kind == BASELINE else "copy of the last report"
    where = f" (line {err.line})" if err.line is not None else ""
    shown = escape(os.fsencode(err.path if err.path is not None else ""))
    kept_words = f"set aside as {escape(os.fsencode(kept))} for inspection" \
        if kept is not None else "left in place (this run records nothing)"
    return (f"CORRUPT STATE: the {mode} {what} {shown} failed its check{where}: "
            f"{err.message}; {kept_words}; {instead}")
