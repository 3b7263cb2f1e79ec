"""Mailing reports: a real SMTP server on 127.0.0.1, a sendmail stand-in, the spool."""

from __future__ import annotations

import email
import email.policy
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from systraq.config import MailSettings, Settings
from systraq.delivery import deliver, flush_spool, spooled

from .conftest import Workspace
from .diffkit import free_port, settle, snapshot_and_diff, write_config


@dataclass
class Inbox:
    """What the SMTP server accepted, in order."""

    messages: list[email.message.EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.original_content,
                                                      policy=email.policy.default))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        # handled=False: aiosmtpd then answers 535 itself (its default leaves the client hanging)
        return AuthResult(success=auth_data.password == b"s3cret", handled=False)

    @property
    def subjects(self) -> list[str]:
        return [m["Subject"] for m in self.messages]

    def bodies(self) -> list[str]:
        return [m.get_content().replace("\r\n", "\n") for m in self.messages]


class SMTPServer:
    """An aiosmtpd server on a fixed port, started and stopped at will."""

    def __init__(self, port: int, **kwargs: object) -> None:
        self.port = port
        self.inbox = Inbox()
        self.kwargs = kwargs
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port,
                                     **self.kwargs)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    server = SMTPServer(free_port())
    try:
        yield server
    finally:
        server.stop()


def smtp_config(ws: Workspace, port: int, extra: str = "") -> None:
    write_config(ws, f'[mail]\ntransport = "smtp"\nsmtp_host = "127.0.0.1"\n'
                     f'smtp_port = {port}\nto = ["admin@example.org"]\n'
                     f'from = "systraq@example.org"\ntimeout = 5\n{extra}')


def test_report_is_mailed_through_smtp_and_not_printed(ws: Workspace, smtp: SMTPServer) -> None:
    (ws.tree / "f").write_text("x")
    settle(ws)
    smtp.start()
    smtp_config(ws, smtp.port)
    (ws.tree / "f").chmod(0o604)  # not 0666: that is a privilege change, counted apart
    run = snapshot_and_diff(ws, "--mail")
    assert (run.returncode, run.stdout, run.stderr) == (1, "", "")
    [message] = smtp.inbox.messages
    assert message["Subject"].startswith("[Systraq] ")
    assert message["Subject"].endswith(": 1 change")
    assert message["To"] == "admin@example.org" and message["From"] == "systraq@example.org"
    assert message["Date"] and message["Message-ID"]
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert "perms 0644 → 0604" in message.get_content()
    assert smtp.inbox.envelopes == [("systraq@example.org", ["admin@example.org"])]
    quiet = ws.run("diff", "--mail")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert len(smtp.inbox.messages) == 1


def test_smtp_down_spools_and_each_report_is_later_delivered_exactly_once(
        ws: Workspace, smtp: SMTPServer) -> None:
    settle(ws)
    smtp_config(ws, smtp.port)  # nothing listens there yet
    (ws.tree / "first").write_text("1")
    down = snapshot_and_diff(ws, "--mail")
    assert down.returncode == 2 and down.stdout == ""
    assert "mail not delivered" in down.stderr and "Connection refused" in down.stderr
    assert "1 message waits in the spool" in down.stderr
    assert len(list((ws.state / "root" / "spool").glob("*.eml"))) == 1
    # Spooled counts as delivered: the change is not reported (or spooled) again.
    still_down = ws.run("diff", "--mail")
    assert still_down.returncode == 2 and "1 message waits" in still_down.stderr
    assert len(list((ws.state / "root" / "spool").glob("*.eml"))) == 1

    smtp.start()
    (ws.tree / "second").write_text("2")
    up = snapshot_and_diff(ws, "--mail")
    assert (up.returncode, up.stdout, up.stderr) == (1, "", "")
    bodies = smtp.inbox.bodies()
    assert len(bodies) == 2
    assert f"{ws.tree}/first" in bodies[0] and f"{ws.tree}/second" not in bodies[0]
    assert f"{ws.tree}/second" in bodies[1] and f"{ws.tree}/first" not in bodies[1]
    assert list((ws.state / "root" / "spool").glob("*.eml")) == []
    again = snapshot_and_diff(ws, "--mail")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert len(smtp.inbox.messages) == 2


def test_spool_is_flushed_by_a_mailing_run_with_nothing_new(ws: Workspace,
                                                            smtp: SMTPServer) -> None:
    settle(ws)
    smtp_config(ws, smtp.port)
    (ws.tree / "f").write_text("1")
    assert snapshot_and_diff(ws, "--mail").returncode == 2
    smtp.start()
    run = ws.run("diff", "--mail")
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    assert len(smtp.inbox.messages) == 1
    assert f"{ws.tree}/f" in smtp.inbox.bodies()[0]


def test_smtp_login_reads_the_password_file(ws: Workspace) -> None:
    server = SMTPServer(free_port(), authenticator=None, auth_require_tls=False)
    server.kwargs["authenticator"] = server.inbox.authenticate
    server.start()
    try:
        secret = ws.root / "smtp-password"
        secret.write_text("s3cret\n")
        settle(ws)
        smtp_config(ws, server.port, f'username = "systraq"\npassword_file = "{secret}"\n')
        (ws.tree / "f").write_text("1")
        assert snapshot_and_diff(ws, "--mail").returncode == 1
        assert server.inbox.logins == [(b"systraq", b"s3cret")]
        assert len(server.inbox.messages) == 1
        secret.write_text("wrong")
        (ws.tree / "g").write_text("1")
        refused = snapshot_and_diff(ws, "--mail")
        assert refused.returncode == 2 and "535" in refused.stderr
        assert len(list((ws.state / "root" / "spool").glob("*.eml"))) == 1
    finally:
        server.stop()


SENDMAIL = """#!/bin/sh
n=$(ls {out} | wc -l)
printf '%s\\n' "$@" > {out}/$n.args
cat > {out}/$n.eml
exit {status}
"""


def fake_sendmail(ws: Workspace, status: int = 0) -> Path:
    out = ws.root / "sent"
    out.mkdir(exist_ok=True)
    script = ws.root / "sendmail"
    script.write_text(SENDMAIL.format(out=out, status=status))
    script.chmod(0o755)
    write_config(ws, f'[mail]\nsendmail = "{script} -t -oi -f systraq"\nto = ["root", '
                     '"ops@example.org"]\n')
    return out


def test_sendmail_transport_hands_the_message_to_the_configured_command(ws: Workspace) -> None:
    settle(ws)
    out = fake_sendmail(ws)
    (ws.tree / "f").write_text("x")
    run = snapshot_and_diff(ws, "--mail")
    assert (run.returncode, run.stdout, run.stderr) == (1, "", "")
    assert (out / "0.args").read_text().split() == ["-t", "-oi", "-f", "systraq"]
    message = email.message_from_bytes((out / "0.eml").read_bytes(),
                                       policy=email.policy.default)
    assert message["To"] == "root, ops@example.org"
    assert message["Subject"].startswith("[Systraq] ")
    assert message["MIME-Version"] == "1.0" and message["Date"] and message["Message-ID"]
    assert f"{ws.tree}/f" in message.get_content()
    assert ws.run("diff", "--mail").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["0.args", "0.eml"]


def test_failing_sendmail_spools_the_report(ws: Workspace) -> None:
    settle(ws)
    out = fake_sendmail(ws, status=75)
    (ws.tree / "f").write_text("x")
    run = snapshot_and_diff(ws, "--mail")
    assert run.returncode == 2
    assert "exited with status 75" in run.stderr and "waits in the spool" in run.stderr
    fake_sendmail(ws, status=0)
    assert ws.run("diff", "--mail").returncode == 0
    delivered = [p for p in out.iterdir() if p.suffix == ".eml" and p.stat().st_size]
    assert len(delivered) == 2  # the failed hand-over, then the spooled copy
    assert list((ws.state / "root" / "spool").glob("*.eml")) == []


def test_missing_sendmail_spools_the_report(ws: Workspace) -> None:
    settle(ws)
    write_config(ws, f'[mail]\nsendmail = "{ws.root}/no-such-sendmail -t"\n')
    (ws.tree / "f").write_text("x")
    run = snapshot_and_diff(ws, "--mail")
    assert run.returncode == 2 and "no-such-sendmail: not found" in run.stderr


def test_report_mail_setting_mails_without_the_flag(ws: Workspace) -> None:
    settle(ws)
    out = fake_sendmail(ws)
    config = ws.config / "systraq.conf"
    config.write_text(config.read_text() + "[report]\nmail = true\n")
    (ws.tree / "f").write_text("x")
    run = snapshot_and_diff(ws)
    assert (run.returncode, run.stdout) == (1, "")
    assert (out / "0.eml").exists()
    (ws.tree / "g").write_text("x")
    printed = snapshot_and_diff(ws, "--no-mail")
    assert printed.returncode == 1 and f"{ws.tree}/g" in printed.stdout


def test_nothing_to_report_touches_no_mail_system(ws: Workspace) -> None:
    settle(ws)
    out = fake_sendmail(ws)
    run = snapshot_and_diff(ws, "--mail")
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    assert list(out.iterdir()) == []


def test_first_report_is_mailed_with_the_entry_count(ws: Workspace) -> None:
    ws.write_list("pub", str(ws.tree))
    out = fake_sendmail(ws)
    assert ws.run("snapshot").returncode == 0
    assert ws.run("diff", "--mail").returncode == 1
    message = email.message_from_bytes((out / "0.eml").read_bytes(),
                                       policy=email.policy.default)
    assert "first report" in message["Subject"] and "pub entries recorded" in message["Subject"]


def test_report_that_cannot_be_spooled_is_not_lost(ws: Workspace) -> None:
    settle(ws)
    write_config(ws, f'[mail]\nsendmail = "{ws.root}/no-such-sendmail"\n')
    (ws.state / "root" / "spool").write_text("in the way")  # the spool cannot be created
    (ws.tree / "f").write_text("x")
    run = snapshot_and_diff(ws, "--mail")
    assert run.returncode == 2 and "mail spool" in run.stderr
    (ws.state / "root" / "spool").unlink()
    out = fake_sendmail(ws)
    assert ws.run("diff", "--mail").returncode == 1  # reported now, not lost
    assert f"{ws.tree}/f" in (out / "0.eml").read_text()


# --- the delivery API, in process -------------------------------------------------------

def _settings(tmp_path: Path, port: int) -> Settings:
    mail = MailSettings(transport="smtp", smtp_host="127.0.0.1", smtp_port=port, timeout=5,
                        to=("root@example.org",), sender="systraq@example.org")
    return Settings(config_dir=tmp_path, state_dir=tmp_path / "state", mail=mail)


def test_deliver_sends_spooled_messages_oldest_first(tmp_path: Path, smtp: SMTPServer) -> None:
    settings = _settings(tmp_path, smtp.port)
    for number in range(3):
        outcome = deliver(settings, f"report {number}", f"body {number} ✓\n")
        assert not outcome.ok and outcome.spooled is not None
        assert outcome.pending == number + 1
    assert [p.name for p in spooled(settings)] == sorted(p.name for p in spooled(settings))
    assert os.stat(settings.state_dir / "root" / "spool").st_mode & 0o777 == 0o700
    smtp.start()
    outcome = deliver(settings, "report 3", "body 3\n")
    assert (outcome.ok, outcome.sent, outcome.pending) == (True, 4, 0)
    assert smtp.inbox.subjects == [f"report {n}" for n in range(4)]
    assert smtp.inbox.bodies()[0] == "body 0 ✓\n"
    assert flush_spool(settings).sent == 0
    assert len(smtp.inbox.messages) == 4
