"""One refused message never blocks later mail: dead letters, and the notice of them.

A real SMTP server (aiosmtpd) on 127.0.0.1 refuses messages over its size limit with 552,
as a real server does; time for ``mail.dead_after`` comes from the test, not the host clock.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import mailbox
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from systraq.config import MailSettings, Settings
from systraq.delivery import build_message, deliver, flush_spool, spooled
from systraq.delivery.deadletter import HEADER, DeadLetters, notice
from systraq.delivery.spool import message_name

from .conftest import Workspace
from .diffkit import free_port, settle, snapshot_and_diff
from .test_mail import SMTPServer, fake_sendmail, smtp, smtp_config  # noqa: F401 - fixture

SMALL_LIMIT = 6000  # bytes the server takes; a report of many long names is larger


def _many_files(ws: Workspace, count: int, tag: str) -> None:
    for number in range(count):
        (ws.tree / f"{tag}-{number:04d}-{'x' * 60}").write_text(tag)


def _dead(ws: Workspace, sub: str = "new") -> list[Path]:
    directory = ws.state / "root" / "dead-letters" / sub
    return sorted(directory.iterdir()) if directory.is_dir() else []


def test_message_refused_as_too_large_is_set_aside_and_the_next_report_arrives_saying_so(
        ws: Workspace) -> None:
    server = SMTPServer(free_port(), data_size_limit=SMALL_LIMIT)
    server.start()
    try:
        settle(ws)
        smtp_config(ws, server.port, "max_size = 0\n")  # no cap: the server decides
        _many_files(ws, 150, "big")
        refused = snapshot_and_diff(ws, "--mail")
        assert refused.returncode == 2 and refused.stdout == ""
        assert "552" in refused.stderr and "set aside" in refused.stderr
        [letter] = _dead(ws)
        assert letter.stat().st_mode & 0o777 == 0o600
        kept = email.message_from_bytes(letter.read_bytes(), policy=email.policy.default)
        assert "552" in kept[HEADER] and kept["Subject"].endswith(": 150 changes")
        assert f"{ws.tree}/big-0149-" in kept.get_content()
        assert spooled(_settings_of(ws)) == []  # nothing waits to block the next report

        (ws.tree / "small").write_text("1")
        after = snapshot_and_diff(ws, "--mail")
        assert (after.returncode, after.stdout, after.stderr) == (1, "", "")
        [message] = server.inbox.messages
        assert message["Subject"].endswith(": 1 change")
        first_lines = message.get_content().splitlines()[:4]
        assert first_lines[0].startswith("NOTE: 1 earlier message was not delivered")
        assert first_lines[1].endswith(': 150 changes" (' + kept["Date"] + ")")
        assert first_lines[2].startswith("    why: SMTP server") and "552" in first_lines[2]
        told = ws.state / "root" / "dead-letters" / "cur" / letter.name
        assert first_lines[3] == f"    kept in {told}"
        assert _dead(ws) == [] and told.exists()  # told of once: moved to cur/

        (ws.tree / "again").write_text("1")
        assert snapshot_and_diff(ws, "--mail").returncode == 1
        assert "NOTE" not in server.inbox.messages[1].get_content()
    finally:
        server.stop()


def _settings_of(ws: Workspace) -> Settings:
    return Settings(config_dir=ws.config, state_dir=ws.state)


def test_spooled_message_refused_later_does_not_hold_back_the_ones_behind_it(
        ws: Workspace) -> None:
    server = SMTPServer(free_port(), data_size_limit=SMALL_LIMIT)
    settle(ws)
    smtp_config(ws, server.port, "max_size = 0\n")  # nothing listens yet
    _many_files(ws, 150, "big")
    assert snapshot_and_diff(ws, "--mail").returncode == 2  # spooled: server down
    (ws.tree / "second").write_text("2")
    assert snapshot_and_diff(ws, "--mail").returncode == 2
    assert len(spooled(_settings_of(ws))) == 2
    server.start()
    try:
        (ws.tree / "third").write_text("3")
        run = snapshot_and_diff(ws, "--mail")
        assert run.returncode == 2 and "552" in run.stderr  # told once, loudly
        subjects = [m["Subject"].split(": ", 1)[1] for m in server.inbox.messages]
        assert subjects == ["1 change", "1 change"]
        bodies = server.inbox.bodies()
        assert f"{ws.tree}/second" in bodies[0] and f"{ws.tree}/third" in bodies[1]
        assert bodies[1].startswith("NOTE: 1 earlier message was not delivered")
        assert spooled(_settings_of(ws)) == []
        assert [p.name for p in _dead(ws, "cur")] and _dead(ws) == []
        quiet = ws.run("diff", "--mail")
        assert (quiet.returncode, quiet.stderr) == (0, "")
    finally:
        server.stop()


def test_sendmail_refusing_a_message_for_good_sets_it_aside(ws: Workspace) -> None:
    settle(ws)
    out = fake_sendmail(ws, status=65)  # EX_DATAERR: this message, for good
    (ws.tree / "f").write_text("x")
    refused = snapshot_and_diff(ws, "--mail")
    assert refused.returncode == 2 and "EX_DATAERR" in refused.stderr
    assert len(_dead(ws)) == 1 and spooled(_settings_of(ws)) == []
    fake_sendmail(ws, status=0)
    (ws.tree / "g").write_text("x")
    assert snapshot_and_diff(ws, "--mail").returncode == 1
    delivered = sorted(out.glob("*.eml"), key=lambda p: int(p.stem))[-1]
    body = email.message_from_bytes(delivered.read_bytes(), policy=email.policy.default)
    assert body.get_content().startswith("NOTE: 1 earlier message was not delivered")
    assert f"{ws.tree}/g" in body.get_content()


# --- age: mail.dead_after, with the test's clock -----------------------------------------

HOUR = 3600.0
T0 = 1_700_000_000.0


def _api_settings(tmp_path: Path, port: int, dead_after: float = 120.0) -> Settings:
    mail = MailSettings(transport="smtp", smtp_host="127.0.0.1", smtp_port=port, timeout=5,
                        to=("root@example.org",), sender="systraq@example.org",
                        dead_after=dead_after)
    return Settings(config_dir=tmp_path, state_dir=tmp_path / "state", mail=mail)


def test_message_undelivered_longer_than_dead_after_is_set_aside_and_told_of(
        tmp_path: Path) -> None:
    server = SMTPServer(free_port())
    settings = _api_settings(tmp_path, server.port)  # nothing listens yet
    assert deliver(settings, "report 0", "zero\n", clock=lambda: T0).spooled
    assert deliver(settings, "report 1", "one\n", clock=lambda: T0 + 119 * HOUR).spooled
    assert len(spooled(settings)) == 2
    # 120 hours after the first: it is set aside, the second (1 hour old) still waits.
    late = deliver(settings, "report 2", "two\n", clock=lambda: T0 + 120 * HOUR)
    assert not late.ok and late.spooled is not None and late.pending == 2
    [letter] = late.dead
    assert letter.subject == "report 0" and "not delivered for 120 hours" in letter.reason
    assert "Connection refused" in letter.reason
    assert [t.subject for t in late.told] == ["report 0"]  # the spooled report 2 tells
    dead_dir = settings.state_dir / "root" / "dead-letters"
    [kept] = mailbox.Maildir(dead_dir, create=False)
    assert kept["Subject"] == "report 0" and "120 hours" in kept[HEADER]

    server.start()
    try:
        flushed = flush_spool(settings, clock=lambda: T0 + 121 * HOUR)
        assert (flushed.ok, flushed.sent, flushed.pending) == (True, 2, 0)
        assert server.inbox.subjects == ["report 1", "report 2"]
        one, two = server.inbox.bodies()
        assert one == "one\n"
        assert two.startswith("NOTE: 1 earlier message was not delivered")
        assert "report 0" in two.splitlines()[1] and two.endswith("\ntwo\n")
        later = deliver(settings, "report 3", "three\n", clock=lambda: T0 + 122 * HOUR)
        assert later.ok and later.told == [] and server.inbox.bodies()[-1] == "three\n"
    finally:
        server.stop()


def test_dead_after_zero_keeps_retrying_however_old(tmp_path: Path) -> None:
    settings = _api_settings(tmp_path, free_port(), dead_after=0)
    deliver(settings, "old", "old\n", clock=lambda: T0)
    outcome = deliver(settings, "new", "new\n", clock=lambda: T0 + 10_000 * HOUR)
    assert outcome.dead == [] and outcome.pending == 2
    assert not (settings.state_dir / "root" / "dead-letters").exists()


def test_dead_letters_are_private_to_the_sending_account(tmp_path: Path) -> None:
    server = SMTPServer(free_port(), data_size_limit=1000)
    server.start()
    try:
        settings = _api_settings(tmp_path, server.port)
        outcome = deliver(settings, "big", "x" * 5000 + "\n", clock=lambda: T0)
        [letter] = outcome.dead
        assert "552" in letter.reason and outcome.spooled is None
        for directory in ("dead-letters", "dead-letters/new", "dead-letters/cur"):
            st = os.stat(settings.state_dir / "root" / directory)
            assert (st.st_uid, st.st_mode & 0o7777) == (os.geteuid(), 0o700)
        assert letter.path.stat().st_mode & 0o777 == 0o600
    finally:
        server.stop()


# --- the notice, whatever the server said ------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(reason=st.text(max_size=300), subject=st.text(max_size=80))
def test_notice_shows_any_reply_and_subject_on_its_own_escaped_lines(
        reason: str, subject: str) -> None:
    """Whatever a server answers (newlines, bidi overrides, NULs), each dead letter takes
    exactly its three lines of the notice and no control or format character."""
    root = Path(tempfile.mkdtemp(prefix="systraq-dead-", dir="/tmp"))
    try:
        config = Settings(config_dir=root, state_dir=root / "state")
        try:
            data = build_message(config, subject, "body\n").as_bytes()
        except ValueError:
            assume(False)  # a subject the email package itself refuses never gets this far
        dead = DeadLetters.open(config)
        assert dead is not None
        with contextlib.closing(dead):
            dead.add(message_name(1), data, reason, T0)
            problems: list[str] = []
            untold = dead.untold(problems)
        assert problems == [] and len(untold) == 1
        lines = notice(untold).splitlines()
        assert len(lines) == 5 and lines[-1] == ""  # headline, 3 lines, a blank line
        for line in lines:
            assert all(ch.isprintable() for ch in line), line
        assert lines[2].startswith("    why: ")
    finally:
        shutil.rmtree(root)
