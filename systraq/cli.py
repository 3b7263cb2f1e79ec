"""The systraq command: parse options, call the core, render, exit with diff(1)'s codes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

import click

from systraq import __version__
from systraq.config import (
    DEFAULT_CONFIG_DIR,
    DEFAULT_STATE_DIR,
    Settings,
    load_settings,
)
from systraq.errors import ConfigError, ExitStatus, SystraqError
from systraq.layout import MODES, Layout
from systraq.render import Terminal
from systraq.setup import SCHEDULERS, scheduled_gate
from systraq.snapshot.hashing import ALGORITHMS

# The core modules are imported by the commands that use them: each cron job loads only
# what it needs, and starts faster for it.

MODE_CHOICES = click.Choice([*MODES, "all"])


def modes_of(choice: str) -> tuple[str, ...]:
    return MODES if choice == "all" else (choice,)


class Context:
    """What every command needs: settings (read lazily) and the terminal."""

    def __init__(self, config_dir: Path, state_dir: Path, terminal: Terminal) -> None:
        self.config_dir = config_dir
        self.state_dir = state_dir
        self.terminal = terminal
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_dir, self.state_dir)
        return self._settings


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config-dir", type=click.Path(path_type=Path), envvar="SYSTRAQ_CONFIG_DIR",
              default=DEFAULT_CONFIG_DIR, show_default=True, show_envvar=True,
              help="Where systraq.conf and the list files are.")
@click.option("--state-dir", type=click.Path(path_type=Path), envvar="SYSTRAQ_STATE_DIR",
              default=DEFAULT_STATE_DIR, show_default=True, show_envvar=True,
              help="Where snapshots, reports and the backup store are kept.")
@click.option("--scheduled-by", type=click.Choice(SCHEDULERS), default=None,
              help="Given by the cron file and the systemd units: until `systraq init` has "
                   "run, say so in one line and exit 0; when init chose the other "
                   "scheduler, exit 0 silently.")
@click.version_option(__version__, prog_name="systraq")
@click.pass_context
def cli(ctx: click.Context, config_dir: Path, state_dir: Path, scheduled_by: str | None
        ) -> None:
    """File integrity monitor: snapshot files, report what changed, once."""
    # run() hands in its Terminal as the context object; cli used on its own has none.
    terminal = ctx.obj if isinstance(ctx.obj, Terminal) else Terminal()
    ctx.obj = Context(config_dir, state_dir, terminal)
    if scheduled_by and not {"--help", "-h"} & set(ctx.protected_args + ctx.args):
        gate = scheduled_gate(Layout(config_dir, state_dir), scheduled_by)
        if not gate.run:
            if gate.message:
                ctx.obj.terminal.line(gate.message)
            ctx.exit(ExitStatus.OK)


@cli.command()
@click.option("--mode", type=MODE_CHOICES, default=None,
              help="Which lists to scan: pub (world-readable, scanned unprivileged), root, "
                   "or all (default: every mode with a list file; for an account other "
                   "than root, those it can take).")
@click.option("--full", is_flag=True, help="Rehash every file instead of reusing hashes of "
              "unchanged ones.")
@click.option("--hash", "algorithm", type=click.Choice(tuple(ALGORITHMS)), default=None,
              help="Content hash (default from systraq.conf: sha256). xxh3 is fast but not "
                   "collision-resistant.")
@pass_context
def snapshot(obj: Context, mode: str, full: bool, algorithm: str | None) -> None:
    """Stat and hash the listed files into STATE/snapshot_MODE.stat."""
    from systraq.snapshot.job import default_modes

    _snapshot(obj, modes_of(mode) if mode else default_modes(obj.settings), full=full,
              algorithm=algorithm)


def _snapshot(obj: Context, modes: tuple[str, ...], full: bool = False,
              algorithm: str | None = None) -> None:
    from systraq.snapshot.job import take_snapshot

    for each in modes:
        with obj.terminal.scan_progress(f"snapshot {each}") as progress:
            result = take_snapshot(obj.settings, each, algorithm=algorithm, full=full,
                                   progress=progress)
        obj.terminal.snapshot_summary(result)
        for message in result.warnings:
            obj.terminal.warning(message)
        # Overlapping lines: said when they change (cron hears it once), and on a terminal.
        if result.overlaps_new or obj.terminal.interactive:
            for message in result.overlaps:
                obj.terminal.warning(message)
        for pattern in result.unmatched:  # lines that can never match: every run says so
            if pattern.problem:
                obj.terminal.warning(str(ConfigError(pattern.problem, pattern.source,
                                                     pattern.line)))


def report_options(command: click.decorators.FC) -> click.decorators.FC:
    """The options diff and check share."""
    for option in reversed((
        click.option("--baseline", "against_baseline", is_flag=True,
                     help="Compare with the accepted baseline instead of the last report; "
                          "records nothing."),
        click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                     show_default=True, help="Report as text (coloured on a terminal) or "
                                             "one JSON object."),
        click.option("--mail/--no-mail", default=None,
                     help="Send the report by mail instead of printing it (default from "
                          "systraq.conf: report.mail)."),
        click.option("--no-record", is_flag=True,
                     help="Compare without making the snapshot the reported copy."),
    )):
        command = option(command)
    return command


def _diff(obj: Context, modes: tuple[str, ...], against_baseline: bool, fmt: str,
          mail: bool | None, no_record: bool) -> int:
    from systraq.changes.diff import run_diff
    from systraq.changes.report import AGAINST_BASELINE, AGAINST_REPORTED, subject

    result = run_diff(obj.settings, modes, show=lambda report: obj.terminal.report(report, fmt),
                      against=AGAINST_BASELINE if against_baseline else AGAINST_REPORTED,
                      record=not no_record, mail=mail, fmt=fmt)
    mailed = subject(result.report) if result.mailed and result.report.has_news else None
    obj.terminal.delivery(result.delivery, mailed)
    return int(result.status)


@cli.command()
@click.option("--mode", type=MODE_CHOICES, default=None,
              help="Which snapshots to compare (default: every mode that has one).")
@report_options
@click.pass_context
def diff(ctx: click.Context, mode: str | None, against_baseline: bool, fmt: str,
         mail: bool | None, no_record: bool) -> None:
    """Report what changed since the last report, once.

    Compares the newest snapshot of each mode with what the last delivered report covered
    (or, with --baseline, with the accepted baseline). Exit status: 0 nothing to report (and
    no output), 1 differences reported, 2 trouble.
    """
    from systraq.changes.copies import resolve_modes

    obj: Context = ctx.obj
    modes = resolve_modes(obj.settings, mode)
    ctx.exit(_diff(obj, modes, against_baseline, fmt, mail, no_record))


@cli.command()
@click.option("--mode", type=MODE_CHOICES, default=None,
              help="Which lists to scan and compare (default: every mode with a list file).")
@report_options
@click.pass_context
def check(ctx: click.Context, mode: str | None, against_baseline: bool, fmt: str,
          mail: bool | None, no_record: bool) -> None:
    """Take a snapshot, then diff it (same options as diff)."""
    from systraq.changes.copies import configured_modes

    obj: Context = ctx.obj
    modes = modes_of(mode) if mode else configured_modes(obj.settings)
    _snapshot(obj, modes)
    ctx.exit(_diff(obj, modes, against_baseline, fmt, mail, no_record))


@cli.command()
@click.option("--mode", type=MODE_CHOICES, default=None,
              help="Which snapshots to accept (default: every mode that has one).")
@click.option("--explained", is_flag=True,
              help="Accept only the differences package operations explain (dpkg installed "
                   "exactly what the package ships), leaving every other one standing.")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@pass_context
def baseline(obj: Context, mode: str | None, explained: bool, paths: tuple[str, ...]) -> None:
    """Accept the newest snapshot as the trusted baseline.

    With PATHs (absolute paths or globs; a directory covers everything below it), accept
    only the differences at those paths and leave every other difference standing.
    """
    from systraq.changes.baseline import accept_baseline
    from systraq.changes.copies import resolve_modes

    if explained and paths:
        raise click.UsageError("--explained takes no PATH")
    modes = resolve_modes(obj.settings, mode)
    terminal = obj.terminal
    show = (lambda report: terminal.report(report)) if terminal.interactive else None
    outcome = accept_baseline(obj.settings, modes, paths, show=show, explained=explained)
    terminal.baseline_summary(outcome, partial=bool(paths) or explained,
                              explained=explained)


@cli.command()
@click.argument("filelist", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.argument("backupdir", required=False, type=click.Path(path_type=Path))
@click.option("--mail/--no-mail", default=None,
              help="Send the report by mail instead of printing it (default from "
                   "systraq.conf: report.mail).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Report as text (what cron mails) or JSON.")
@click.option("--prune", is_flag=True, help="Only delete dated copies older than "
              "--older-than days from BACKUPDIR (FILELIST is not read).")
@click.option("--older-than", type=click.FloatRange(min=0), metavar="DAYS",
              help="With --prune: the age in days (default: filetraq.prune_days, 60).")
@pass_context
def filetraq(obj: Context, filelist: Path | None, backupdir: Path | None, mail: bool | None,
             fmt: str, prune: bool, older_than: float | None) -> int:
    """Keep the content of the files FILELIST names in the backup store BACKUPDIR.

    Defaults: CONFIG/filetraq.conf and STATE/filetraq. The store has Debian filetraq's
    layout. Reports first backups, a diff of every text change, and, once, every listed
    path whose content is not tracked (not readable by everyone, symlink, fifo, removed).
    Exit status: 0 nothing to report, 1 something reported, 2 trouble.
    """
    from systraq.filetraq.job import prune_store, run_filetraq

    if older_than is not None and not prune:
        raise click.UsageError("--older-than goes with --prune")
    if prune:
        if mail:
            raise click.UsageError("--prune reports nothing to mail")
        days = obj.settings.filetraq.prune_days if older_than is None else older_than
        obj.terminal.prune_summary(prune_store(obj.settings, backupdir, days), days, fmt)
        return ExitStatus.OK
    terminal = obj.terminal
    result = run_filetraq(obj.settings, filelist, backupdir, mail=mail,
                          show=lambda report: terminal.filetraq_report(report, fmt))
    terminal.delivery(result.delivery, result.subject)
    return result.status


@cli.command("filetraq-conf")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write this file instead of CONFIG/filetraq.conf.")
@click.option("--dir", "dirs", multiple=True, type=click.Path(path_type=Path),
              help="A directory to list world-readable files from (repeatable; default "
                   "/etc).")
@pass_context
def filetraq_conf(obj: Context, output: Path | None, dirs: tuple[Path, ...]) -> None:
    """Regenerate CONFIG/filetraq.conf, the list systraq filetraq reads.

    Lists every world-readable file under /etc, users' ~/.ssh/authorized_keys*, systraq's
    own configuration, then CONFIG/filetraq.tail.conf as it is. Sorted, replaced
    atomically and only when it changes. Run by the apt hook after package operations.
    """
    from systraq.filetraq.conf import write_filetraq_conf

    result = write_filetraq_conf(obj.settings, output, [*dirs] or None)
    obj.terminal.filetraq_conf_summary(result)


@cli.command()
@click.option("--mail", is_flag=True, help="Mail the report (text with an HTML alternative) "
              "instead of printing it.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Report as text (what cron mails) or one JSON object.")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=Path("/"),
              show_default=True, help="Read passwd, shadow, homes, logs, /proc and the dpkg "
              "database of the system mounted here.")
@click.option("--audit-rules", is_flag=True, help="Print the auditd rules that record the "
              "commands real users run, and exit.")
@pass_context
def daily(obj: Context, mail: bool, fmt: str, root: Path, audit_rules: bool) -> int:
    """The daily status report: system state, security checks, logs, checksums, health.

    Opens with the host, its uptime and every item that needs attention. Each part says in
    one line when it cannot run. Exit status: 0 nothing needs attention, 1 something does,
    2 trouble (the mail could neither be sent nor spooled).
    """
    if audit_rules:
        from systraq.daily.audit import AUDIT_RULES

        obj.terminal.out.write(AUDIT_RULES)
        return ExitStatus.OK
    from systraq.daily.job import run_daily
    from systraq.daily.report import subject

    if mail and fmt != "text":
        raise click.UsageError("--mail sends the text and HTML report; --format goes without it")
    result = run_daily(obj.settings, root, mail=mail)
    if mail:
        obj.terminal.delivery(result.delivery, subject(result.report))
    else:
        obj.terminal.daily_report(result.report, fmt)
    return result.status


@cli.command()
@click.option("--update", is_flag=True, help="Regenerate STATE/systraq.sums from the "
              "directories (default: daily.sums_dirs, /usr/local/{bin,sbin,lib,share}).")
@click.argument("dirs", nargs=-1, metavar="[DIR]...", type=click.Path(path_type=Path))
@pass_context
def sums(obj: Context, update: bool, dirs: tuple[Path, ...]) -> int:
    """Verify the local checksums in STATE/systraq.sums (sha256sum -c format).

    Prints what sha256sum -c --quiet would (FAILED lines). With --update, write the file
    anew: the sha256 of every regular file below each DIR, sorted, replaced atomically.
    Exit status: 0 all match, 1 a file failed, 2 trouble.
    """
    from systraq.daily import sums as local_sums

    layout = obj.settings.layout
    if not update:
        if dirs:
            raise click.UsageError("DIR arguments go with --update")
        sources = [layout.sums, layout.legacy_sums]
        if not any(p.exists() for p in sources):
            raise SystraqError("no such file: create it with 'systraq sums --update'",
                               layout.sums)
        result = local_sums.verify(sources)
        obj.terminal.sums_verification(result)
        if result.errors:
            return ExitStatus.TROUBLE
        return ExitStatus.DIFFERENCES if result.problems else ExitStatus.OK
    chosen = [*dirs] or [Path(d) for d in obj.settings.daily.sums_dirs]
    outcome = local_sums.update(layout.sums, chosen)
    obj.terminal.sums_update(outcome)
    return ExitStatus.OK


def _claim_standard_streams() -> list[int]:
    """Put /dev/null on each of descriptors 0-2 that is closed; return those that were.

    Else the next file opened would get that number, and a report printed to standard
    output would land in whatever file it was (a state file, a lock).
    """
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
    for fd in closed:
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    if 2 in closed:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 (the process's own stderr)
    return closed


@cli.command()
@click.option("--create-user", is_flag=True,
              help="Create the pub account (snapshot.pub_user, default systraq) when it is "
                   "missing: a system account with its own group, no login.")
@click.option("--scheduler", type=click.Choice(SCHEDULERS), default=None,
              help="Who runs the jobs: cron (/etc/cron.d/systraq) or the systemd timers "
                   "(default: the one chosen before, else cron).")
@click.option("--mail-to", multiple=True, metavar="ADDRESS",
              help="Where reports go (mail.to; repeatable; default: root).")
@click.option("--yes", "-y", "assume_yes", is_flag=True,
              help="Do it without asking.")
@click.option("--dry-run", is_flag=True, help="Show the plan and change nothing.")
@click.pass_context
def init(ctx: click.Context, create_user: bool, scheduler: str | None,
         mail_to: tuple[str, ...], assume_yes: bool, dry_run: bool) -> None:
    """Set this host up, or take over from Debian's systraq and filetraq.

    Plans, shows the plan, then (asked, or with --yes) creates the config dir from the
    shipped examples (never over a file), the account and the state directory, takes over
    what Debian's systraq and filetraq left, takes the first snapshots, the first filetraq
    run and the baseline, and says what comes next. A second run changes nothing.
    Exit status: 0 done (or nothing to do), 2 trouble or not confirmed.
    """
    from systraq.setup.init import InitOptions, carry_out, make_plan

    obj: Context = ctx.obj
    terminal = obj.terminal
    options = InitOptions(create_user=create_user, scheduler=scheduler, mail_to=mail_to)
    plan = make_plan(obj.settings, options, commands=cli.commands)
    terminal.setup_plan(plan, dry_run=dry_run)
    if dry_run or plan.nothing_to_do:
        ctx.exit(ExitStatus.TROUBLE if plan.blockers else ExitStatus.OK)
    if plan.blockers:
        ctx.exit(ExitStatus.TROUBLE)
    if os.geteuid() != 0:
        raise SystraqError("systraq init changes the system (accounts, owners): run it as root")
    if not assume_yes:
        if not sys.stdin.isatty():
            raise SystraqError("not confirmed: run systraq init --yes to go ahead without "
                               "being asked")
        if not click.confirm("Go ahead?", default=False):
            raise SystraqError("nothing changed")
    for done in carry_out(plan):
        terminal.setup_step_done(done)
    terminal.setup_done(plan)


@cli.command()
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Check the packages installed in this tree, by its own dpkg database "
                   "(default from systraq.conf: packages.root, /).")
@click.option("--admindir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The dpkg database directory (default: ROOT/var/lib/dpkg).")
@click.option("--changed", is_flag=True,
              help="Print only the paths that differ from their package, one per line "
                   "(as debsums -c).")
@click.option("--conffiles", is_flag=True,
              help="Check conffiles instead of the other files (as debsums -e): an edited "
                   "conffile is normal, so they are checked apart.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Report as text grouped by package, or one JSON object.")
@pass_context
def packages(obj: Context, root: Path | None, admindir: Path | None, changed: bool,
             conffiles: bool, fmt: str) -> int:
    """Check installed package files against dpkg's md5sums (debsums, dpkg --verify).

    Reports files whose content differs, files missing, and packages without md5sums;
    with --conffiles, conffiles instead. md5s of unchanged files are reused from the
    cache in the state dir. Exit status: 0 all match, 1 findings, 2 trouble.
    """
    from systraq.packages.verify import run_packages

    result = run_packages(obj.settings, None if root is None else str(root),
                          None if admindir is None else str(admindir), conffiles=conffiles)
    obj.terminal.packages_report(result, fmt, changed)
    return result.status


@cli.command("after-dpkg")
@click.pass_context
def after_dpkg(ctx: click.Context) -> None:
    """Run by the apt hook after each package operation: what packages.after_dpkg says.

    nothing (the default); snapshot: a snapshot of every mode with a list file, so the
    files are recorded as dpkg left them; check: that snapshot, then a diff, so the
    report covers the package operation alone and a later change is reported apart.
    """
    from systraq.changes.copies import configured_modes

    obj: Context = ctx.obj
    what = obj.settings.packages.after_dpkg
    if what == "nothing":
        ctx.exit(ExitStatus.OK)
    modes = configured_modes(obj.settings)
    _snapshot(obj, modes)
    ctx.exit(_diff(obj, modes, False, "text", None, False) if what == "check"
             else ExitStatus.OK)


def run(argv: Sequence[str] | None = None, terminal: Terminal | None = None) -> int:
    """The command line as a function: all output goes to ``terminal``; returns the exit
    status. One handler turns every error into one line on stderr and exit 2."""
    terminal = terminal or Terminal()
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # click prints --help, --version and usage errors itself: to the same streams. The
        # command is invoked directly, not through click's main(), which would turn Ctrl-C
        # into Abort and a closed pipe into exit 1 before the handlers below saw them.
        with contextlib.redirect_stdout(terminal.out), contextlib.redirect_stderr(terminal.err), \
                cli.make_context("systraq", args, obj=terminal) as ctx:
            status = cli.invoke(ctx)
    except click.exceptions.Exit as done:
        status = done.exit_code
    except click.ClickException as err:
        err.show(terminal.err)
        status = ExitStatus.TROUBLE
    except click.exceptions.Abort:
        terminal.error("aborted")
        status = ExitStatus.TROUBLE
    except SystraqError as err:
        terminal.error(str(err))
        status = err.status
    except KeyboardInterrupt:
        terminal.error("interrupted")
        status = 130
    except BrokenPipeError:
        # Output closed early (| head): not an error worth a traceback.
        _discard(terminal.out)
        status = ExitStatus.OK
    except OSError as err:
        from systraq.fs.oserror import describe

        terminal.error(describe(err))
        status = ExitStatus.TROUBLE
    except Exception as err:
        if os.environ.get("SYSTRAQ_DEBUG"):
            raise
        terminal.error(f"internal error: {type(err).__name__}: {err} "
                       "(set SYSTRAQ_DEBUG=1 for a traceback)")
        status = ExitStatus.TROUBLE
    return int(status or 0)


def _discard(stream: TextIO) -> None:
    """Point a closed output at /dev/null, so that flushing it at exit stays quiet."""
    with contextlib.suppress(OSError, ValueError):
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the systraq command: the process's own streams, made safe, for run()."""
    closed = _claim_standard_streams()
    if 1 in closed:
        # Nothing could be reported, and a report not seen must not be recorded as seen.
        print("systraq: standard output is closed: nothing could be reported",
              file=sys.stderr, flush=True)
        sys.exit(ExitStatus.TROUBLE)
    from systraq.fs.oserror import NamedStream

    # A write error on standard output (a full disk, /dev/full) says where it happened.
    sys.stdout = NamedStream(sys.stdout, "standard output")  # type: ignore[assignment]
    status = run(argv)
    # Output that could not be written (a full disk) is still buffered: flushed at
    # interpreter exit, it would fail again as "Exception ignored" and exit 120, after run()
    # has already said what failed.
    try:
        sys.stdout.flush()
    except OSError:
        _discard(sys.stdout)
    sys.exit(status)
