"""Everything the terminal sees: plain text for cron and pipes, rich on a terminal.

The only module that imports rich; commands call a ``Terminal`` and never print directly.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TextIO

from systraq.changes.report import Report, render_json, render_text, report_lines
from systraq.filetraq.report import FiletraqReport, format_item, format_text, to_json
from systraq.pathcodec import escape

if TYPE_CHECKING:
    from rich.console import Console

    from systraq.changes.baseline import BaselineOutcome
    from systraq.daily.report import DailyReport
    from systraq.daily.sums import UpdateResult, Verification
    from systraq.delivery import DeliveryOutcome
    from systraq.filetraq.conf import ConfResult
    from systraq.filetraq.store import PruneResult
    from systraq.packages.verify import Verification as PackageVerification
    from systraq.setup.plan import Plan, StepDone
    from systraq.snapshot.job import SnapshotResult


def markup_escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def rich_text(text: str, **style: object) -> object:
    """A rich Text: shown as it is, never read as markup."""
    from rich.text import Text

    return Text(text, **style)  # type: ignore[arg-type]

# Styles of diff lines on a terminal, by their first characters.
_DIFF_STYLES = (("+++ ", "bold"), ("--- ", "bold"), ("*** ", "bold"), ("@@", "cyan"),
                ("***************", "cyan"), ("+", "green"), ("-", "red"), ("! ", "yellow"))


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
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        """rich's console, made on first use: cron runs that print nothing never load rich."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.out, highlight=False,
                                    force_terminal=self.interactive or None)
        return self._console

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
        from rich.progress import (
            FileSizeColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

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
        if stats.rehashed:
            parts.append(f"{stats.rehashed:,} read again (rolling rehash)")
        for count, what in ((stats.unreadable, "unreadable"), (stats.partial, "hashed only "
                            "in part (snapshot.hash_limit)"), (stats.raced, "changed while "
                            "scanned"), (result.unreachable, "not reachable as "
                            f"{result.scanned_as}"), (len(result.unmatched),
                            "list lines matching nothing")):
            if count:
                parts.append(f"{count:,} {what}")
        self.console.print(f"[bold]snapshot {result.mode}[/]: {', '.join(parts)} in "
                           f"{result.seconds:.1f}s → {result.path}", soft_wrap=True)

    # --- change reports ----------------------------------------------------------------

    def report(self, report: Report, fmt: str = "text") -> None:
        """A change report: JSON, plain text (cron, pipes) or coloured on a terminal."""
        if fmt == "json":
            self.out.write(render_json(report))
            self.out.flush()
        elif not self.interactive:
            self.out.write(render_text(report))
            self.out.flush()
        else:
            self._rich_report(report)

    # Styles of the text report's lines on a terminal, by what each line is.
    _REPORT_STYLES = {"title": "bold", "mode": "bold cyan", "first": "", "note": "magenta",
                      "fault": "bold red",
                      "kind changed": "bold yellow", "kind added": "bold green",
                      "kind removed": "bold red", "path changed": "yellow",
                      "path added": "green", "path removed": "red", "field": "",
                      "summary": "bold", "kind attention": "bold white on red",
                      "path attention": "bold red", "reason": "red",
                      "kind lost": "bold magenta", "path lost": "magenta",
                      "kind regained": "bold green", "path regained": "green"}

    def _rich_report(self, report: Report) -> None:
        # File names are data: rich Text, never markup, never :emoji: codes.
        for line in report_lines(report):
            self.console.print(rich_text(line.text, style=self._REPORT_STYLES.get(line.role, "")),
                               soft_wrap=True)

    def delivery(self, outcome: DeliveryOutcome | None, mailed: str | None = None) -> None:
        """Trouble with the mail on stderr; a word on a terminal when it went well."""
        if outcome is None:
            return
        if not outcome.ok:
            for message in outcome.messages():
                self.error(message)
        elif self.interactive and (outcome.sent or mailed):
            what = f"mailed: {mailed}" if mailed else ""
            if mailed and outcome.sent > 1:
                what += f" (and {outcome.sent - 1} spooled before)"
            elif not mailed:
                what = f"sent {outcome.sent} spooled message(s)"
            self.console.print(markup_escape(what))

    def baseline_summary(self, outcome: BaselineOutcome, partial: bool,
                         explained: bool = False) -> None:
        """One line per mode saying what was accepted; a warning per PATH that matched nothing."""
        for result in outcome.results:
            for fault in result.faults:
                self.warning(f"{result.mode}: {fault}")
            if result.unchanged:
                line = (f"{result.mode}: the baseline already is the newest snapshot "
                        f"({result.entries:,} entries)")
            elif result.first and not partial:
                line = f"{result.mode}: accepted {result.entries:,} entries as the first baseline"
            elif not partial:
                count = len(result.accepted)
                line = (f"{result.mode}: accepted {result.entries:,} entries as the baseline; "
                        f"{count:,} differed from the previous baseline")
            else:
                where = "explained by package operations" if explained else \
                    "at the given paths"
                line = (f"{result.mode}: accepted {len(result.accepted):,} "
                        f"difference{'s' if len(result.accepted) != 1 else ''} {where}; "
                        f"{result.remaining:,} still "
                        f"differ{'s' if result.remaining == 1 else ''} from the baseline")
            self.line(line)
        for argument in outcome.unmatched:
            self.warning(f"{argument}: no difference from the baseline there")

    def filetraq_report(self, report: FiletraqReport, fmt: str = "text") -> None:
        """The filetraq report: plain text for cron (nothing when nothing changed), colour
        on a terminal, or JSON; warnings and problems on stderr."""
        for warning in report.warnings:
            self.warning(warning)
        for problem in report.problems:
            self.error(problem)
        if fmt == "json":
            self.line(json.dumps(to_json(report), indent=2, ensure_ascii=False))
            return
        if not self.interactive:
            text = format_text(report)
            if text:
                self.out.write(text)
                self.out.flush()
            return
        for item in report.sorted_items():
            for number, line in enumerate(format_item(item)):
                self.console.print(rich_text(line, style="bold" if number == 0 else
                                        _diff_style(line)), soft_wrap=True)
        summary = f"filetraq: {report.checked:,} listed paths checked"
        if not report.items:
            summary += ", nothing to report"
        self.console.print(rich_text(f"{summary} in {report.seconds:.1f}s", style="dim"))

    def prune_summary(self, result: PruneResult, days: float, fmt: str = "text") -> None:
        """JSON when asked; one line on a terminal; nothing for cron."""
        if fmt == "json":
            self.line(json.dumps({"command": "filetraq-prune", "older_than_days": days,
                                  "removed": [escape(p) for p in result.removed],
                                  "kept": result.kept}, indent=2, ensure_ascii=False))
        elif self.interactive:
            self.console.print(rich_text(f"filetraq --prune: removed {len(result.removed):,} "
                                    f"dated copies older than {days:g} days, kept "
                                    f"{result.kept:,}"))

    def packages_report(self, result: PackageVerification, fmt: str = "text",
                        changed: bool = False) -> None:
        """``systraq packages``: grouped text, paths only, or JSON; trouble on stderr."""
        from systraq.packages import report

        for warning in result.warnings:
            self.warning(warning)
        for problem in result.problems:
            self.error(problem)
        if fmt == "json":
            self.out.write(report.render_json(result))
        elif changed:
            self.out.write(report.render_paths(result))
            for package in result.without_md5sums:
                self.warning(f"no md5sums for {package.name} {package.version}")
        else:
            self.out.write(report.render_text(result))
            if self.interactive:
                self.console.print(rich_text(
                    f"{result.packages:,} packages, {result.files:,} paths checked, "
                    f"{result.hashed:,} files hashed, {result.reused:,} md5s reused, in "
                    f"{result.seconds:.1f}s", style="dim"))
        self.out.flush()

    def filetraq_conf_summary(self, result: ConfResult) -> None:
        """One line on a terminal; nothing for cron or the apt hook."""
        if not self.interactive:
            return
        what = "written" if result.changed else "unchanged"
        skipped = f", {result.skipped} names skipped (a list line cannot hold them)" \
            if result.skipped else ""
        self.console.print(rich_text(f"{result.path}: {result.entries:,} entries, {what} "
                                f"(listed as {result.generated_as}){skipped}"))

    # -- systraq init ------------------------------------------------------------------

    def setup_plan(self, plan: Plan, dry_run: bool = False) -> None:
        """The plan: numbered steps, notes, then what stops it (on stderr)."""
        if plan.nothing_to_do:
            self.line(f"systraq is set up ({plan.config_dir}, {plan.state_dir}, scheduled by "
                      f"{plan.scheduler}): nothing to change.")
        else:
            migrating = f", taking over from {' and '.join(plan.migrating_from)}" \
                if plan.migrating_from else ""
            head = "would do" if dry_run else "will do"
            self.line(f"systraq init {head} ({plan.config_dir}, {plan.state_dir}{migrating}):")
            for number, step in enumerate(plan.steps, 1):
                self.line(f"  {number}. {step.says}")
            if not plan.steps:
                self.line("  nothing, until what is below is resolved")
        if plan.notes:
            self.line("notes:")
            for note in plan.notes:
                self.line(f"  - {note}")
        for blocker in plan.blockers:
            self.error(f"cannot go on: {blocker}")
        if plan.nothing_to_do or (dry_run and not plan.blockers):
            self._next_steps(plan)

    def setup_step_done(self, done: StepDone) -> None:
        self.line(f"done {done.number}. {done.said or done.says}")

    def setup_done(self, plan: Plan) -> None:
        self.line("systraq is set up.")
        self._next_steps(plan)

    def _next_steps(self, plan: Plan) -> None:
        self.line("what comes next:")
        for line in plan.next_steps:
            self.line(f"  - {line}")


    # --- the daily report --------------------------------------------------------------

    def daily_report(self, report: DailyReport, fmt: str = "text") -> None:
        """The daily report: JSON, plain text (cron), or with the attention items in colour
        on a terminal."""
        from systraq.daily.report import render_json, render_text

        if fmt == "json":
            self.out.write(render_json(report))
        elif not self.interactive:
            self.out.write(render_text(report))
        else:
            for line in render_text(report).splitlines():
                style = ""
                if line.startswith("== "):
                    style = "bold cyan"
                elif line.startswith("  * ") or line.endswith("<-- !"):
                    style = "bold red"
                elif line.endswith("need attention:"):
                    style = "bold"
                self.console.print(rich_text(line, style=style), soft_wrap=True)
        self.out.flush()

    def sums_verification(self, result: Verification) -> None:
        """What sha256sum -c --quiet says: FAILED lines and warnings (nothing when all match)."""
        for line in result.lines():
            self.line(line)
        if self.interactive and not result.problems:
            self.console.print(rich_text(f"{result.checked:,} files checked, all match"))

    def sums_update(self, result: UpdateResult) -> None:
        for skipped in result.skipped:
            self.warning(f"{skipped}: not listed")
        if self.interactive:
            self.console.print(rich_text(f"{result.path}: {result.files:,} files"))


def _diff_style(line: str) -> str:
    for prefix, style in _DIFF_STYLES:
        if line.startswith(prefix):
            return style
    return ""
