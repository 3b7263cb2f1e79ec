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
    MODES,
    Settings,
    load_settings,
)
from systraq.errors import ExitStatus, SystraqError
from systraq.render import Terminal
from systraq.snapshot import take_snapshot

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
    for each in modes_of(mode):
        with obj.terminal.scan_progress(f"snapshot {each}") as progress:
            result = take_snapshot(obj.settings, each, algorithm=algorithm, full=full,
                                   progress=progress)
        obj.terminal.snapshot_summary(result)


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
