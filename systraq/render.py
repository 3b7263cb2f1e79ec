"""Everything the terminal sees: plain text for cron and pipes, rich on a terminal.

The only module that imports rich; commands call a ``Terminal`` and never print directly.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from rich.console import Console
from rich.progress import (
    FileSizeColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from systraq.snapshot import SnapshotResult


def human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"


class Terminal:
    """Owns stdout/stderr; decides between plain text and rich output."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None,
                 interactive: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.interactive = self.out.isatty() if interactive is None else interactive
        self.console = Console(file=self.out, highlight=False,
                               force_terminal=self.interactive or None)
        self.err_console = Console(file=self.err, highlight=False, stderr=True)

    def error(self, message: str) -> None:
        print(f"systraq: {message}", file=self.err, flush=True)

    def warning(self, message: str) -> None:
        print(f"systraq: warning: {message}", file=self.err, flush=True)

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    @contextlib.contextmanager
    def scan_progress(self, label: str) -> Iterator[Callable[[int, int], None] | None]:
        """A live progress bar (entries, bytes, rate) on a terminal; nothing otherwise."""
        if not self.interactive:
            yield None
            return
        columns = (SpinnerColumn(), TextColumn("{task.description}"),
                   TextColumn("{task.fields[entries]:,} entries"), FileSizeColumn(),
                   TransferSpeedColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(label, total=None, entries=0)

            def advance(entries: int, size: int) -> None:
                bar.update(task, completed=size, entries=entries)

            yield advance

    def snapshot_summary(self, result: SnapshotResult) -> None:
        """One line on a terminal; nothing when cron runs it (quiet on success)."""
        if not self.interactive:
            return
        stats = result.stats
        parts = [f"{result.entries:,} entries", f"{stats.files_hashed:,} files hashed "
                 f"({human_size(stats.bytes_hashed)})"]
        if stats.hashes_reused:
            parts.append(f"{stats.hashes_reused:,} hashes reused")
        for count, what in ((stats.unreadable, "unreadable"), (stats.raced, "changed while "
                            "scanned"), (result.unreachable, "not reachable as "
                            f"{result.scanned_as}"), (len(result.unmatched),
                            "list lines matching nothing")):
            if count:
                parts.append(f"{count:,} {what}")
        self.console.print(f"[bold]snapshot {result.mode}[/]: {', '.join(parts)} in "
                           f"{result.seconds:.1f}s → {result.path}", soft_wrap=True)
