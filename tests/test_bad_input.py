"""Bad input and faults end in one clear line and exit 2: no traceback, no "internal error".

Settings are checked when systraq.conf is loaded, whatever the command, so that a value
that could only fail later (at mail time, or as a wait that never ends) stops everything
at once, naming the file and line, before any state is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from systraq.config import load_settings
from systraq.layout import Layout

from .conftest import Workspace, needs_root
from .filetraq_support import stored, write_list
from .runner import run_in_process


def layout(ws: Workspace) -> Layout:
    return load_settings(ws.config, ws.state).layout


def one_line_error(done: subprocess.CompletedProcess, start: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(start), done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


BAD_SETTINGS = {
    "workers = 1e400": ("[snapshot]\nworkers = 1e400\n", 2,
                        "snapshot.workers must be a finite number (found inf)"),
    "lock_timeout = nan": ("[snapshot]\n\nlock_timeout = nan\n", 3,
                           "snapshot.lock_timeout must be a finite number (found nan)"),
    "lock_timeout = inf": ("[snapshot]\nlock_timeout = inf\n", 2,
                           "snapshot.lock_timeout must be a finite number"),
    "lock_timeout = -1": ("[snapshot]\nlock_timeout = -1\n", 2,
                          "snapshot.lock_timeout must be a number, 0 or more"),
    "lock_timeout of 30 years": ("[snapshot]\nlock_timeout = 1e9\n", 2,
                                 "snapshot.lock_timeout must be from 0 to 86400"),
    "workers = 100000": ("[snapshot]\nworkers = 100000\n", 2,
                         "snapshot.workers must be from 0 to 1024"),
    "NUL in pub_user": ('[snapshot]\npub_user = "sys\\u0000traq"\n', 2,
                        "snapshot.pub_user holds a control character (\\x00)"),
    "pub_user with a space": ('[snapshot]\npub_user = "sys traq"\n', 2,
                              "snapshot.pub_user is not an account name"),
    "mail timeout = 1e300": ("[mail]\ntimeout = 1e300\n", 2,
                             "mail.timeout must be from 0.1 to 3600 (found 1e+300)"),
    "mail timeout = 0 (for ever)": ("[mail]\ntimeout = 0\n", 2,
                                    "mail.timeout must be from 0.1 to 3600"),
    "unbalanced quote in sendmail": ('[mail]\nsendmail = "\\"x"\n', 2,
                                     "mail.sendmail is not a command line: No closing "
                                     "quotation"),
    "sendmail without a path": ('[mail]\nsendmail = "sendmail -t"\n', 2,
                                "mail.sendmail must start with the program's absolute path"),
    "empty sendmail": ('[mail]\nsendmail = ""\n', 2, "mail.sendmail is empty"),
    "header injection in to": ('[mail]\nto = ["a\\nBcc:x"]\n', 2,
                               "mail.to holds a control character (\\n)"),
    "two addresses in one item": ('[mail]\nto = ["a@example.org, b@example.org"]\n', 2,
                                  "mail.to: 'a@example.org, b@example.org' is more than one "
                                  "address"),
    "address the mail parser chokes on": ('[mail]\nto = ["a@"]\n', 2,
                                          "mail.to: 'a@' is not a mail address"),
    "non-ASCII mailbox (sent as an encoded word: lost)": (
        '[mail]\nto = ["zoë@example.org"]\n', 2,
        "mail.to: 'zoë@example.org' is not a mail address (local-part contains non-ASCII "
        "characters)"),
    "no recipient": ("[mail]\nto = []\n", 2, "mail.to must name at least one recipient"),
    "broken from": ('[mail]\nfrom = "x <y"\n', 2, "mail.from: 'x <y' is not a mail address"),
    "carriage return in from": ('[mail]\nfrom = "a@b\\rBcc: x@y"\n', 2,
                                "mail.from holds a control character (\\r)"),
    "port 0": ("[mail]\nsmtp_port = 0\n", 2, "mail.smtp_port must be from 1 to 65535"),
    "host with a space": ('[mail]\nsmtp_host = "mail example"\n', 2,
                          "mail.smtp_host is not a host name or address"),
    "relative password file": ('[mail]\npassword_file = "pw"\n', 2,
                               "mail.password_file must be an absolute path"),
    "max_size of a terabyte": ("[filetraq]\nmax_size = 1e12\n", 2,
                               "filetraq.max_size must be from 0 to 1073741824"),
    "dir_mode with setuid": ("[filetraq]\ndir_mode = 0o4755\n", 2,
                             "filetraq.dir_mode must be from 0o700 to 0o777"),
    "dir_mode the owner cannot enter": ("[filetraq]\ndir_mode = 0o577\n", 2,
                                        "filetraq.dir_mode must be from 0o700 to 0o777"),
    "pub_user root": ('[snapshot]\npub_user = "root"\n', 2,
                      "snapshot.pub_user must be an unprivileged account, not 'root' (uid 0)"),
}


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_a_bad_setting_is_refused_at_load_naming_file_and_line(ws: Workspace, case: str):
    text, line, message = BAD_SETTINGS[case]
    conf = ws.config / "systraq.conf"
    conf.write_text(text)
    ws.write_list("pub", str(ws.tree))
    # snapshot never mails: mail settings are checked all the same, before any work.
    done = ws.run("snapshot")
    one_line_error(done, f"systraq: {conf}:{line}: {message}")
    assert done.stdout == ""
    assert os.listdir(ws.state) == []


def test_good_mail_settings_are_accepted(ws: Workspace):
    ws.write_config(
        '[mail]\nto = ["root", "Ops Team <ops@example.org>", "Zoë <zoe@example.org>", '
        '"x@[192.0.2.1]"]\nfrom = "systraq@example.org"\n'
        'sendmail = "/usr/sbin/sendmail -t -oi -f \'systraq@example.org\'"\n'
        'smtp_host = "::1"\ntimeout = 0.5\npassword_file = "/etc/systraq/smtp-password"\n'
        "[filetraq]\ndir_mode = 0o750\n")
    ws.write_list("pub", str(ws.tree))
    done = ws.run("snapshot")
    assert (done.returncode, done.stderr) == (0, "")


def run_closed_stdout(ws: Workspace, *args: str) -> subprocess.CompletedProcess:
    """The CLI with its standard output closed (``>&-``)."""
    return subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh",
                           *ws.launcher.command(*ws.argv(*args))],
                          stderr=subprocess.PIPE, text=True)


def test_diff_with_standard_output_closed_is_trouble_and_records_nothing(ws: Workspace):
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0
    assert ws.run("diff").returncode == 1
    (ws.tree / "new").write_text("x\n")
    assert ws.run("snapshot").returncode == 0
    done = run_closed_stdout(ws, "diff")
    one_line_error(done, "systraq: standard output is closed: nothing could be reported")
    again = ws.run("diff")
    assert again.returncode == 1 and f"{ws.tree}/new" in again.stdout


def test_report_to_a_full_device_names_standard_output(ws: Workspace):
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0
    with open("/dev/full", "w") as full:  # a real process: its stdout is /dev/full
        done = subprocess.run(ws.launcher.command(*ws.argv("diff")), stdout=full,
                              stderr=subprocess.PIPE, text=True)
    one_line_error(done, "systraq: standard output: No space left on device")


# -- full and read-only file systems: a private mount namespace, as root -------------------

def in_namespace(ws: Workspace, mount: str, *args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a private mount namespace after the shell commands ``mount``."""
    needs_root()
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs a private mount namespace (unshare --mount), to mount a tmpfs")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           f'{mount} && exec "$@"', "sh",
                           *ws.launcher.command(*ws.argv(*args))],
                          capture_output=True, text=True)


@pytest.fixture
def odd_state(ws: Workspace) -> Workspace:
    """A state dir whose name holds a newline: messages must show it escaped."""
    odd = ws.root / "st\nate"
    odd.mkdir(mode=0o777)
    odd.chmod(0o777)
    ws.state = odd
    return ws


def test_a_full_disk_names_the_state_file_escaped(odd_state: Workspace):
    ws = odd_state
    for n in range(400):
        (ws.tree / f"file-with-a-long-name-to-fill-the-state-{n:04d}").write_text("x")
    ws.write_list("pub", str(ws.tree))
    snapshot = str(layout(ws).snapshot("pub")).replace("\n", "\\n")
    done = in_namespace(ws, f"mount -t tmpfs -o size=16k tmpfs '{ws.state}'", "snapshot")
    # As root, the pub snapshot is written by the pub account ("as nobody: ").
    one_line_error(done, "systraq: ")
    assert done.stderr.rstrip("\n").endswith(f"{snapshot}: No space left on device")


def test_a_read_only_state_dir_names_the_file_escaped(odd_state: Workspace):
    ws = odd_state
    ws.write_list("pub", str(ws.tree))
    state = str(ws.state).replace("\n", "\\n")
    done = in_namespace(ws, f"mount -t tmpfs -o ro tmpfs '{ws.state}'", "snapshot")
    one_line_error(done, f"systraq: {state}/")
    assert "Read-only file system" in done.stderr


def test_a_full_backup_store_names_the_file_escaped(odd_state: Workspace):
    ws = odd_state
    for n in range(40):
        (ws.tree / f"f{n}").write_text("x" * 4000)
    write_list(ws, str(ws.tree))
    state = str(ws.state).replace("\n", "\\n")
    done = in_namespace(ws, f"mount -t tmpfs -o size=64k tmpfs '{ws.state}'", "filetraq")
    one_line_error(done, "systraq: ")
    assert "No space left on device" in done.stderr
    # Either a file of the store, or the listed file whose copy could not be written.
    assert f"{state}/filetraq/" in done.stderr or f"{ws.tree}/f" in done.stderr


# -- list lines that can match nothing --------------------------------------------------

def test_a_list_line_with_an_over_long_name_is_named_and_the_rest_is_scanned(
        ws: Workspace):
    (ws.tree / "kept").write_text("x\n")
    long_name = "n" * 300
    lists = ws.write_list("pub", f"{ws.tree}/{long_name}", str(ws.tree),
                          f"{ws.tree}/{'g' * 256}*")
    done = ws.run("snapshot")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"systraq: warning: {lists}:1: a name in this line is 300 bytes long, over the "
        "255-byte limit of file names: it can match nothing",
        f"systraq: warning: {lists}:3: a name in this line is 257 bytes long, over the "
        "255-byte limit of file names: it can match nothing"]
    report = ws.run("diff")
    assert report.returncode == 1 and "first report" in report.stdout
    assert b"/kept\t" in layout(ws).snapshot("pub").read_bytes()


def test_filetraq_names_an_over_long_line_once_and_tracks_the_others(ws: Workspace):
    kept = ws.tree / "kept"
    kept.write_text("x\n")
    conf = write_list(ws, f"{ws.tree}/{'n' * 300}", str(kept))
    done = ws.run("filetraq")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert f"Creating first backup of {kept}." in lines
    assert f"({conf}, line 1: a name in this line is 300 bytes long, over the 255-byte " \
           "limit of file names: it can match nothing)." in done.stdout
    assert stored(ws, kept).read_text() == "x\n"
    assert ws.run("filetraq").returncode == 0  # said once


def test_the_state_dir_named_in_an_error_is_escaped(ws: Workspace):
    odd = Path(str(ws.root) + "/no\nsuch")
    ws.write_list("pub", str(ws.tree))
    done = run_in_process(["--config-dir", str(ws.config), "--state-dir", str(odd), "diff"],
                          cwd=ws.root)
    one_line_error(done, f"systraq: {ws.root}/no\\nsuch: ")
