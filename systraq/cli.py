"""The systraq command: parse options, call the core, render, exit with diff(1)'s codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from systraq import __version__
from systraq.config import (
    DEFAULT_CONFIG_DIR,
    DEFAULT_STATE_DIR,
    HASH_ALGORITHMS,
    Settings,
    load_settings,
)
from systraq.errors import ExitStatus, SystraqError
from systraq.layout import MODES
from systraq.render import Terminal

# The core modules are imported by the commands that use them: each cron job loads only
# what it needs, and starts faster for it.

MODE_CHOICES = click.Choice([*MODES, "all"])


def modes_of(choice: str) -> tuple[str, ...]:
    return MODES if choice == "all" else (choice,)


class Context:
    """What every command needs: settings (read lazily) and the terminal."""

    def __init__(self, config_dir: Path, state_dir: Path) -> None:
        self.config_dir = config_dir
        self.state_dir = state_dir
        self.terminal = Terminal()
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
@click.version_option(__version__, prog_name="systraq")
@click.pass_context
def cli(ctx: click.Context, config_dir: Path, state_dir: Path) -> None:
    """File integrity monitor: snapshot files, report what changed, once."""
    ctx.obj = Context(config_dir, state_dir)


@cli.command()
@click.option("--mode", type=MODE_CHOICES, default="pub", show_default=True,
              help="Which lists to scan: pub (world-readable, scanned unprivileged), root, "
                   "or all.")
@click.option("--full", is_flag=True, help="Rehash every file instead of reusing hashes of "
              "unchanged ones.")
@click.option("--hash", "algorithm", type=click.Choice(HASH_ALGORITHMS), default=None,
              help="Content hash (default from systraq.conf: sha256). xxh3 is fast but not "
                   "collision-resistant.")
@pass_context
def snapshot(obj: Context, mode: str, full: bool, algorithm: str | None) -> None:
    """Stat and hash the listed files into STATE/snapshot_MODE.stat."""
    _snapshot(obj, modes_of(mode), full=full, algorithm=algorithm)


def _snapshot(obj: Context, modes: tuple[str, ...], full: bool = False,
              algorithm: str | None = None) -> None:
    from systraq.snapshot.job import take_snapshot

    for each in modes:
        with obj.terminal.scan_progress(f"snapshot {each}") as progress:
            result = take_snapshot(obj.settings, each, algorithm=algorithm, full=full,
                                   progress=progress)
        obj.terminal.snapshot_summary(result)


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
    from systraq.changes.report import AGAINST_BASELINE, AGAINST_REPORTED, subject
    from systraq.changes.track import run_diff

    settings = obj.settings
    mail = settings.report.mail if mail is None else mail
    result = run_diff(settings, modes, show=lambda report: obj.terminal.report(report, fmt),
                      against=AGAINST_BASELINE if against_baseline else AGAINST_REPORTED,
                      record=not no_record, mail=mail, fmt=fmt)
    mailed = subject(result.report) if mail and result.report.has_news else None
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
    from systraq.changes.track import resolve_modes

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
    from systraq.changes.track import configured_modes

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
    from systraq.changes.track import accept_baseline, resolve_modes

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
@click.option("--mail", is_flag=True, help="Mail the report instead of printing it.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Report as text (what cron mails) or JSON.")
@click.option("--prune", is_flag=True, help="Only delete dated copies older than "
              "--older-than days from BACKUPDIR (FILELIST is not read).")
@click.option("--older-than", type=click.FloatRange(min=0), metavar="DAYS",
              help="With --prune: the age in days (default: filetraq.prune_days, 60).")
@pass_context
def filetraq(obj: Context, filelist: Path | None, backupdir: Path | None, mail: bool,
             fmt: str, prune: bool, older_than: float | None) -> int:
    """Keep the content of the files FILELIST names in the backup store BACKUPDIR.

    Defaults: CONFIG/filetraq.conf and STATE/filetraq. The store has Debian filetraq's
    layout. Reports first backups, a diff of every text change, and, once, every listed
    path whose content is not tracked (not readable by everyone, symlink, fifo, removed).
    Exit status: 0 nothing to report, 1 something reported, 2 trouble.
    """
    from systraq.filetraq.job import mail_filetraq, prune_store, run_filetraq
    from systraq.filetraq.report import filetraq_subject

    if older_than is not None and not prune:
        raise click.UsageError("--older-than goes with --prune")
    if prune:
        if mail:
            raise click.UsageError("--prune reports nothing to mail")
        days = obj.settings.filetraq.prune_days if older_than is None else older_than
        obj.terminal.prune_summary(prune_store(obj.settings, backupdir, days), days, fmt)
        return ExitStatus.OK
    terminal = obj.terminal
    if mail or obj.settings.report.mail:
        report, outcome = mail_filetraq(obj.settings, filelist, backupdir)
        terminal.delivery(outcome, filetraq_subject(report) if report.items else None)
        return ExitStatus.TROUBLE if outcome is not None and not outcome.ok else report.status
    report = run_filetraq(obj.settings, filelist, backupdir,
                          deliver=lambda report: terminal.filetraq_report(report, fmt))
    return report.status


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
    from systraq.changes.track import configured_modes

    obj: Context = ctx.obj
    what = obj.settings.packages.after_dpkg
    if what == "nothing":
        ctx.exit(ExitStatus.OK)
    modes = configured_modes(obj.settings)
    _snapshot(obj, modes)
    ctx.exit(_diff(obj, modes, False, "text", None, False) if what == "check"
             else ExitStatus.OK)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one handler turns every error into one line on stderr and exit 2."""
    terminal = Terminal()
    try:
        status = cli.main(args=argv, prog_name="systraq", standalone_mode=False)
    except click.exceptions.Exit as done:
        status = done.exit_code
    except click.ClickException as err:
        err.show()
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
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = ExitStatus.OK
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        terminal.error(f"{where}{err.strerror or err}")
        status = ExitStatus.TROUBLE
    except Exception as err:
        if os.environ.get("SYSTRAQ_DEBUG"):
            raise
        terminal.error(f"internal error: {type(err).__name__}: {err} "
                       "(set SYSTRAQ_DEBUG=1 for a traceback)")
        status = ExitStatus.TROUBLE
    sys.exit(int(status or 0))
