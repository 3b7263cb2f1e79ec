"""systraq daily against what a local user controls: their home's files, the bytes they
get into the logs, names in the snapshots. Nothing hangs, nothing is followed, nothing
forges a line of the report or markup in its HTML."""

from __future__ import annotations

import os

import pytest

from systraq.config import load_settings
from systraq.daily.html import render_html
from systraq.daily.job import build_report
from systraq.daily.report import render_text

from .conftest import Workspace
from .dailykit import HOUR, FakeSystem, block, daily_json


@pytest.fixture
def system(ws: Workspace) -> FakeSystem:
    return FakeSystem(ws.root / "sys")


def test_a_fifo_or_a_symlink_as_a_startup_file_is_not_opened(ws: Workspace,
                                                               system: FakeSystem) -> None:
    system.add_account("mallory", 1000, "/home/mallory")
    home = system.root / "home/mallory"
    os.mkfifo(home / ".bashrc")  # opening it for reading would block forever
    secret = system.write("etc/secret-profile", "umask 000\n", mode=0o600)
    os.symlink(secret, home / ".profile")
    done = ws.run("daily", "--format", "json", "--root", str(system.root), timeout=60)
    assert done.returncode in (0, 1), done.stderr
    import json

    found = block(json.loads(done.stdout), "security", "shell start-up files")
    assert found["lines"] == ["none"]


def test_control_characters_in_log_lines_cannot_forge_report_lines(
        ws: Workspace, system: FakeSystem) -> None:
    ws.write_config("[daily]\njournal = false\n")
    system.log("syslog", (system.now - HOUR, "evil[1]: \x1b[2J\r== Accounts ==\x07 <b>hi</b>"))
    settings = load_settings(ws.config, ws.state)
    report = build_report(settings, system.root, system.now, keep_history=False)
    text = render_text(report)
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert "  evil[1]: \\x1b[2J\\x0d== Accounts ==\\x07 <b>hi</b>" in text
    assert text.count("== Accounts ==\n") == 1
    html = render_html(report)
    assert "<b>hi</b>" not in html and "&lt;b&gt;hi&lt;/b&gt;" in html


def test_a_huge_log_is_read_only_as_far_as_the_limit(ws: Workspace, system: FakeSystem
                                                      ) -> None:
    ws.write_config("[daily]\njournal = false\n")
    from .dailykit import syslog_time

    line = f"{syslog_time(system.now - HOUR)} fakehost app[1]: ".ljust(1023, "x") + "\n"
    system.write("var/log/syslog", line * (40 * 1024))  # 40 MiB of the last day
    document = daily_json(ws, system.root)
    head = block(document, "logs", "")["lines"][0]
    count = int(head.split()[0])
    assert 32767 <= count <= 32768  # the last 32 MiB only
