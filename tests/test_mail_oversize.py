"""Reports too large to mail arrive as their summary; the full report waits on disk.

A real SMTP server (aiosmtpd) on 127.0.0.1; the CLI runs for real.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
from pathlib import Path

from systraq.config import MailSettings, Settings
from systraq.delivery import build_message, deliver

from .conftest import Workspace
from .diffkit import settle
from .filetraq_support import write_list
from .test_mail import SMTPServer, smtp, smtp_config  # noqa: F401 - smtp is a fixture

LIMIT = 8000
_KEPT = re.compile(r"^  (/\S+\.txt)$", re.MULTILINE)


def _kept_path(body: str) -> Path:
    found = _KEPT.search(body)
    assert found, body
    return Path(found.group(1))


def test_report_over_max_size_is_mailed_as_its_summary_and_kept_whole_on_disk(
        ws: Workspace, smtp: SMTPServer) -> None:  # noqa: F811
    settle(ws)
    smtp.start()
    smtp_config(ws, smtp.port, f"max_size = {LIMIT}\n")
    for number in range(200):
        (ws.tree / f"new-{number:04d}-{'y' * 50}").write_text("y")
    assert ws.run("snapshot").returncode == 0
    printed = ws.run("diff", "--no-record")  # the full report, as it would be mailed
    assert printed.returncode == 1 and len(printed.stdout) > 3 * LIMIT
    run = ws.run("diff", "--mail")
    assert (run.returncode, run.stdout, run.stderr) == (1, "", "")

    [message] = smtp.inbox.messages
    assert message["Subject"].endswith(": 200 changes")
    assert len(message.as_bytes()) <= LIMIT
    body = message.get_content().replace("\r\n", "\n")
    assert body.startswith("This report is too large to mail")
    assert "total: 200 added" in body  # the counts
    kept = _kept_path(body)
    assert kept.parent == ws.state / "root" / "reports"
    assert kept.read_text() == printed.stdout  # the whole report, as printed
    assert kept.stat().st_mode & 0o777 == 0o600
    assert os.stat(kept.parent).st_mode & 0o7777 == 0o700
    first = printed.stdout.splitlines()[:5]
    assert "\n".join(first) in body  # and how it begins
    assert f"more lines in {kept}" in body
    # Mailed as a summary counts as delivered: nothing is reported again.
    again = ws.run("diff", "--mail")
    assert (again.returncode, again.stderr) == (0, "")
    assert len(smtp.inbox.messages) == 1


def test_filetraq_report_over_max_size_is_mailed_as_counts_and_kept(
        ws: Workspace, smtp: SMTPServer) -> None:  # noqa: F811
    smtp.start()
    smtp_config(ws, smtp.port, f"max_size = {LIMIT}\n")
    paths = []
    for number in range(150):
        path = ws.tree / f"conf-{number:03d}-{'z' * 50}"
        path.write_text("z\n")
        paths.append(str(path))
    write_list(ws, *paths)
    run = ws.run("filetraq", "--mail")
    assert (run.returncode, run.stdout, run.stderr) == (1, "", "")
    [message] = smtp.inbox.messages
    body = message.get_content().replace("\r\n", "\n")
    assert "files: 150 created" in body
    kept = _kept_path(body)
    assert kept.read_text().count("Creating first backup of ") == 150


def test_report_within_max_size_is_mailed_whole(ws: Workspace, smtp: SMTPServer) -> None:  # noqa: F811
    settle(ws)
    smtp.start()
    smtp_config(ws, smtp.port, f"max_size = {LIMIT}\n")
    (ws.tree / "one").write_text("1")
    assert ws.run("snapshot").returncode == 0
    assert ws.run("diff", "--mail").returncode == 1
    assert f"{ws.tree}/one" in smtp.inbox.bodies()[0]
    assert not (ws.state / "root" / "reports").exists()


# --- text and HTML (the daily report) ----------------------------------------------------

def _settings(tmp_path: Path, port: int, max_size: int = 1024 * 1024) -> Settings:
    mail = MailSettings(transport="smtp", smtp_host="127.0.0.1", smtp_port=port, timeout=5,
                        to=("root@example.org",), sender="systraq@example.org",
                        max_size=max_size)
    return Settings(config_dir=tmp_path, state_dir=tmp_path / "state", mail=mail)


HTML = "<!DOCTYPE html>\n<html><body><h1>daily → ok</h1></body></html>\n"


def test_report_with_html_arrives_as_text_and_html_alternatives(tmp_path: Path,
                                                                smtp: SMTPServer) -> None:  # noqa: F811
    smtp.start()
    settings = _settings(tmp_path, smtp.port)
    assert build_message(settings, "s", "t").get_content_type() == "text/plain"
    outcome = deliver(settings, "[Systraq] daily", "daily → ok\n", html=HTML)
    assert outcome.ok and outcome.sent == 1
    [message] = smtp.inbox.messages
    assert message.get_content_type() == "multipart/alternative"
    text, html = list(message.iter_parts())
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert text.get_content().replace("\r\n", "\n") == "daily → ok\n"
    assert html.get_content().replace("\r\n", "\n") == HTML


def test_oversized_html_report_is_kept_in_both_forms_and_mailed_as_text(
        tmp_path: Path, smtp: SMTPServer) -> None:  # noqa: F811
    smtp.start()
    settings = _settings(tmp_path, smtp.port, max_size=3000)
    text = "".join(f"line {n}\n" for n in range(1000))
    page = "<html><body>" + "".join(f"<p>{n}</p>" for n in range(1000)) + "</body></html>"
    outcome = deliver(settings, "[Systraq] daily", text, html=page, summary="42 warnings")
    assert outcome.ok and outcome.kept_report is not None
    [message] = smtp.inbox.messages
    assert message.get_content_type() == "text/plain"
    body = message.get_content().replace("\r\n", "\n")
    assert "42 warnings" in body and str(outcome.kept_report) in body
    assert outcome.kept_report.read_text() == text
    assert outcome.kept_report.with_suffix(".html").read_text() == page
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert len(parsed.as_bytes()) <= 3000
