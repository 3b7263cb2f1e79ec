"""systraq filetraq --mail through a real SMTP server on loopback, with the shared spool."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Workspace
from .filetraq_support import stored, write_list
from .test_mail import SMTPServer, smtp, smtp_config  # noqa: F401 - smtp is a fixture


@pytest.fixture
def hosts(ws: Workspace) -> Path:
    path = ws.tree / "hosts"
    path.write_text("127.0.0.1 localhost\n")
    write_list(ws, str(path))
    return path


def test_report_is_mailed_not_printed_and_a_quiet_run_sends_nothing(
        ws: Workspace, hosts: Path, smtp: SMTPServer) -> None:  # noqa: F811
    smtp.start()
    smtp_config(ws, smtp.port)
    first = ws.run("filetraq", "--mail")
    assert (first.returncode, first.stdout, first.stderr) == (1, "", "")
    hosts.write_text("127.0.0.1 localhost\n10.0.0.1 evil\n")
    second = ws.run("filetraq", "--mail")
    assert (second.returncode, second.stdout, second.stderr) == (1, "", "")
    quiet = ws.run("filetraq", "--mail")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert [m["Subject"].split(": ", 1)[1] for m in smtp.inbox.messages] == [
        "filetraq, 1 file", "filetraq, 1 file"]
    assert smtp.inbox.bodies()[0] == f"Creating first backup of {hosts}.\n"
    assert "+10.0.0.1 evil\n" in smtp.inbox.bodies()[1]


def test_server_down_spools_the_report_and_the_next_run_delivers_it_once(
        ws: Workspace, hosts: Path, smtp: SMTPServer) -> None:  # noqa: F811
    smtp_config(ws, smtp.port)  # nothing listens yet
    down = ws.run("filetraq", "--mail")
    assert down.returncode == 2
    assert "mail not delivered" in down.stderr and down.stderr.count("\n") == 1
    # Spooled counts as delivered: the store moved on, the change is not reported again.
    assert stored(ws, hosts).exists()
    smtp.start()
    again = ws.run("filetraq", "--mail")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert smtp.inbox.bodies() == [f"Creating first backup of {hosts}.\n"]
    assert ws.run("filetraq", "--mail").returncode == 0
    assert len(smtp.inbox.messages) == 1
