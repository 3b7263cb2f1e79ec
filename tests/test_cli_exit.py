"""Exit status and stderr of the systraq command, one case for each way a run can end.

diff(1)'s codes: 0 nothing to report, 1 differences, 2 trouble in one line on stderr; 130
when interrupted. Where the cause cannot be made to happen for real (click's Abort, which
only a prompt raises and systraq has none; a disk that fails with EIO; a bug), the core
call is replaced by one that raises it, as said at each test.
"""

from __future__ import annotations

import errno
import os
import signal

import click
import pytest

from systraq.config import load_settings
from systraq.fs.lock import locked

from .conftest import Workspace, needs_root
from .diffkit import settle
from .runner import wait_until_all_have_open


def raising(error: BaseException):
    def take_snapshot(*args: object, **kwargs: object) -> None:
        raise error

    return take_snapshot


def test_help_and_version_exit_0(ws: Workspace) -> None:
    for args in (("--help",), ("snapshot", "--help"), ("--version",)):
        done = ws.run(*args)
        assert (done.returncode, done.stderr) == (0, ""), args
        assert done.stdout


def test_usage_error_is_clicks_message_and_exit_2(ws: Workspace) -> None:
    done = ws.run("snapshot", "--bogus")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("Usage: systraq snapshot [OPTIONS]\n"
                           "Try 'systraq snapshot --help' for help.\n\n"
                           "Error: No such option '--bogus'.\n")


def test_trouble_is_one_line_naming_the_file_and_exit_2(ws: Workspace) -> None:
    done = ws.run("snapshot")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"systraq: {ws.config}: nothing to snapshot in pub mode")
    assert done.stderr.count("\n") == 1


def test_abort_is_one_line_and_exit_2(ws: Workspace, monkeypatch) -> None:
    # Mocked: only a click prompt raises Abort, and systraq has none.
    monkeypatch.setattr("systraq.snapshot.job.take_snapshot", raising(click.Abort()))
    ws.write_list("pub", str(ws.tree))
    done = ws.run("snapshot")
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "systraq: aborted\n")


def test_system_error_names_the_file_and_exits_2(ws: Workspace, monkeypatch) -> None:
    # Mocked: a disk that answers EIO cannot be had here.
    failing = OSError(errno.EIO, os.strerror(errno.EIO), "/dev/sdz1")
    monkeypatch.setattr("systraq.snapshot.job.take_snapshot", raising(failing))
    ws.write_list("pub", str(ws.tree))
    done = ws.run("snapshot")
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "", "systraq: /dev/sdz1: Input/output error\n")


def test_internal_error_is_one_line_with_the_debug_hint_and_exit_2(ws: Workspace,
                                                                   monkeypatch) -> None:
    # Mocked: a bug, by definition not found in the code yet.
    monkeypatch.setattr("systraq.snapshot.job.take_snapshot", raising(RuntimeError("boom")))
    ws.write_list("pub", str(ws.tree))
    done = ws.run("snapshot")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("systraq: internal error: RuntimeError: boom "
                           "(set SYSTRAQ_DEBUG=1 for a traceback)\n")
    with pytest.raises(RuntimeError, match="boom"):  # the traceback, with SYSTRAQ_DEBUG
        ws.run("snapshot", env={"SYSTRAQ_DEBUG": "1"})


def test_interrupt_says_so_and_exits_130(ws: Workspace) -> None:
    needs_root()  # root's own snapshot: its lock is root's, as this test's
    ws.write_list("root", str(ws.tree))
    assert ws.run("snapshot", "--mode", "root").returncode == 0
    ws.write_config("[snapshot]\nlock_timeout = 60\n")
    layout = load_settings(ws.config, ws.state).layout
    before = layout.snapshot("root").read_bytes()
    (ws.tree / "new").write_text("x")
    with locked(layout.snapshot_lock("root"), 1):  # the run waits for it until interrupted
        # As on a terminal: SIGINT not ignored (a shell's background job inherits it ignored).
        run = ws.spawn("snapshot", "--mode", "root",
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        wait_until_all_have_open(layout.snapshot_lock("root"), [run])
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    assert (run.returncode, out, err) == (130, "", "systraq: interrupted\n")
    assert layout.snapshot("root").read_bytes() == before


def test_output_closed_early_is_no_error_and_the_report_comes_again(ws: Workspace) -> None:
    settle(ws)
    (ws.tree / "new").write_text("x")
    assert ws.run("snapshot").returncode == 0
    (ws.config / "filetraq.conf").write_text(f"{ws.tree}/new\n")
    for args in (("--help",), ("diff",), ("filetraq",)):
        read_end, write_end = os.pipe()
        os.close(read_end)  # as `systraq diff | head` once head has exited
        try:
            run = ws.spawn(*args, stdout=write_end)
        finally:
            os.close(write_end)
        _, err = run.communicate(timeout=60)
        assert (run.returncode, err) == (0, ""), args
    # The reports were not read: they are not recorded as delivered.
    again = ws.run("diff")
    assert again.returncode == 1 and f"{ws.tree}/new" in again.stdout
    again = ws.run("filetraq")
    assert (again.returncode, again.stdout) == (1, f"Creating first backup of {ws.tree}/new.\n")


def test_a_run_in_the_test_process_says_what_a_real_process_says(ws: Workspace) -> None:
    # The suite runs the CLI in process; this holds it to the installed command's words.
    for args in (("--help",), ("diff", "--help"), ("--version",), ("diff",),
                 ("diff", "--mode", "x"), ("filetraq",), ("baseline", "--bogus")):
        real, here = ws.run(*args, process=True), ws.run(*args)
        assert (here.returncode, here.stdout, here.stderr) == (
            real.returncode, real.stdout, real.stderr), args
