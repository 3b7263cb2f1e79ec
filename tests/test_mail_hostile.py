"""Another account against the mail spool: a planted message is never sent, a queued report
is never handed to it, and nothing in the spool that is not ours is removed.

The attacks run as nobody (setpriv) in the shared state dir, against the real CLI as root;
sendmail is a small script that records what it is given (the recipients of ``sendmail -t``
come from the message itself, which is what makes a planted message dangerous).
"""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import UNPRIVILEGED, Workspace, needs_root
from .diffkit import settle, snapshot_and_diff, write_config
from .test_mail import fake_sendmail

PLANTED = ("From: root\nTo: attacker@example.org\nBcc: attacker@example.org\n"
           "Subject: planted\n\nplanted by another account\n")
PLANTED_NAME = "00000000000000000001-1.eml"


def as_nobody(script: str, made: Path) -> None:
    """Plant ``made`` in root's own state directory as if another account had made it.

    Nobody cannot write in STATE/root itself (the first test shows that), so the test puts
    the directory there as root and gives it to nobody: the mail code must still refuse it.
    """
    subprocess.run(["sh", "-euc", script], check=True, timeout=30)
    subprocess.run(["chown", "-hR", "nobody:nogroup", str(made)], check=True)


def test_another_account_cannot_make_anything_in_roots_state_directory(ws: Workspace) -> None:
    needs_root()
    settle(ws)
    attempt = subprocess.run([*UNPRIVILEGED, "sh", "-c", f"mkdir {ws.state}/root/spool; "
                              f"ln -s /tmp {ws.state}/root/dead-letters"],
                             capture_output=True, text=True, timeout=30)
    assert attempt.stderr.count("Permission denied") == 2
    assert sorted(p.name for p in (ws.state / "root").iterdir()) == [
        "diff_pub.run", "report.lock", "reported_pub.stat"]


def sent_messages(out: Path) -> list[email.message.EmailMessage]:
    paths = sorted(out.glob("*.eml"), key=lambda p: int(p.stem))
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in paths]


def snapshot_of(directory: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every name below a directory with its inode, owner, mode and mtime (to see that
    nothing was removed, replaced or added)."""
    found = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), directory)] = (
                st.st_ino, st.st_uid, st.st_mode, st.st_mtime_ns)
    return found


def assert_only_the_report_was_sent(out: Path, ws: Workspace, changed: str) -> None:
    [message] = sent_messages(out)
    assert message["To"] == "root, ops@example.org" and "attacker" not in message.as_string()
    assert f"{ws.tree}/{changed}" in message.get_content()


@pytest.mark.parametrize("mode", ["700", "777"])
def test_spool_made_first_by_another_account_is_refused_and_its_message_never_sent(
        ws: Workspace, mode: str) -> None:
    needs_root()
    settle(ws)
    out = fake_sendmail(ws)
    spool = ws.state / "root" / "spool"
    as_nobody(f"mkdir -m {mode} {spool} && printf '%s' '{PLANTED}' > {spool}/{PLANTED_NAME}"
              f" && chmod 600 {spool}/{PLANTED_NAME}", spool)
    before = snapshot_of(spool)
    (ws.tree / "f").write_text("x")
    run = snapshot_and_diff(ws, "--mail")
    assert run.returncode == 2 and run.stdout == ""
    assert f"{spool}: mail spool refused: owned by uid 65534 with mode 0{mode}" in run.stderr
    assert_only_the_report_was_sent(out, ws, "f")  # the report itself still goes out
    assert snapshot_of(spool) == before  # nothing read away, removed or added
    # Said on every mailing run until someone looks, and never sent.
    again = ws.run("diff", "--mail")
    assert again.returncode == 2 and "mail spool refused" in again.stderr
    assert len(sent_messages(out)) == 1 and snapshot_of(spool) == before


@pytest.mark.parametrize("target_owner", ["nobody", "root"])
def test_spool_that_is_a_symlink_is_refused_wherever_it_points(ws: Workspace,
                                                               target_owner: str) -> None:
    needs_root()
    settle(ws)
    out = fake_sendmail(ws)
    # A directory full of message-like files: the attacker's own, or one of root's that the
    # attacker can name but not read (its 0600 root files would pass a per-file check).
    target = ws.root / "elsewhere"
    target.mkdir(mode=0o700)
    (target / PLANTED_NAME).write_text(PLANTED)
    (target / PLANTED_NAME).chmod(0o600)
    if target_owner == "nobody":
        subprocess.run(["chown", "-R", "nobody:nogroup", str(target)], check=True)
    as_nobody(f"ln -s {target} {ws.state}/root/spool", ws.state / "root" / "spool")
    (ws.tree / "f").write_text("x")
    run = snapshot_and_diff(ws, "--mail")
    assert run.returncode == 2 and "mail spool refused: a symlink is in the way" in run.stderr
    assert_only_the_report_was_sent(out, ws, "f")
    assert (target / PLANTED_NAME).read_text() == PLANTED
    assert [p.name for p in target.iterdir()] == [PLANTED_NAME]


def test_queued_report_is_never_handed_to_a_spool_another_account_made(ws: Workspace) -> None:
    needs_root()
    settle(ws)
    spool = ws.state / "root" / "spool"
    as_nobody(f"mkdir -m 777 {spool}", spool)
    out = fake_sendmail(ws, status=75)  # the mail system is down: the report would wait
    (ws.tree / "f").write_text("x")
    run = snapshot_and_diff(ws, "--mail")
    assert run.returncode == 2 and "cannot wait in the spool" in run.stderr
    assert list(spool.iterdir()) == []  # nothing of root's went there
    # Not delivered, so not recorded: once the spool is sorted out the report goes out.
    subprocess.run(["rm", "-r", str(spool)], check=True)
    fake_sendmail(ws, status=0)
    for old in out.iterdir():
        old.unlink()
    later = ws.run("diff", "--mail")
    assert (later.returncode, later.stderr) == (1, "")
    assert_only_the_report_was_sent(out, ws, "f")
    assert os.stat(spool).st_uid == 0 and os.stat(spool).st_mode & 0o7777 == 0o700


def test_dead_letters_planted_by_another_account_are_never_told_of_or_touched(
        ws: Workspace) -> None:
    needs_root()
    settle(ws)
    out = fake_sendmail(ws)
    dead = ws.state / "root" / "dead-letters"
    as_nobody(f"mkdir -m 777 {dead} {dead}/new {dead}/cur {dead}/tmp && "
              f"printf '%s' '{PLANTED}' > {dead}/new/{PLANTED_NAME}", dead)
    before = snapshot_of(dead)
    (ws.tree / "f").write_text("x")
    run = snapshot_and_diff(ws, "--mail")
    assert run.returncode == 2 and "dead-letter directory refused" in run.stderr
    assert_only_the_report_was_sent(out, ws, "f")
    assert "NOTE" not in sent_messages(out)[0].get_content()
    assert snapshot_of(dead) == before


def test_full_report_is_never_kept_in_a_directory_another_account_made(ws: Workspace) -> None:
    needs_root()
    settle(ws)
    out = fake_sendmail(ws)
    config = ws.config / "systraq.conf"
    write_config(ws, config.read_text().replace("[mail]\n", "[mail]\nmax_size = 2000\n"))
    reports = ws.state / "root" / "reports"
    as_nobody(f"mkdir -m 777 {reports}", reports)
    for number in range(60):
        (ws.tree / f"f{number:03d}-{'r' * 40}").write_text("x")
    run = snapshot_and_diff(ws, "--mail")
    assert run.returncode == 2 and "report directory refused" in run.stderr
    assert list(reports.iterdir()) == [] and sent_messages(out) == []
    subprocess.run(["rm", "-r", str(reports)], check=True)
    later = ws.run("diff", "--mail")  # not recorded above: reported now, as a summary
    assert (later.returncode, later.stderr) == (1, "")
    [message] = sent_messages(out)
    assert "too large to mail" in message.get_content()


def test_spool_files_that_are_not_ours_are_never_sent_or_removed(ws: Workspace) -> None:
    needs_root()
    settle(ws)
    out = fake_sendmail(ws, status=75)
    (ws.tree / "queued").write_text("x")
    assert snapshot_and_diff(ws, "--mail").returncode == 2  # a real spooled report
    spool = ws.state / "root" / "spool"
    [queued] = spool.glob("*.eml")
    # Files that reached root's spool some other way (not written by this account's
    # systraq): a symlink to a readable message, a FIFO (which would hang a reader), a
    # world-readable file, another account's file, and a file with a second name.
    elsewhere = ws.root / "msg.eml"
    elsewhere.write_text(PLANTED)
    elsewhere.chmod(0o600)
    planted = {"00000000000000000002-1.eml": "symlink", "00000000000000000003-1.eml": "fifo",
               "00000000000000000004-1.eml": "0644", "00000000000000000005-1.eml": "nobody",
               "00000000000000000006-1.eml": "hardlink"}
    for name, kind in planted.items():
        path = spool / name
        if kind == "symlink":
            path.symlink_to(elsewhere)
        elif kind == "fifo":
            os.mkfifo(path, 0o600)
        elif kind == "hardlink":
            os.link(elsewhere, path)
        else:
            path.write_text(PLANTED)
            path.chmod(0o644 if kind == "0644" else 0o600)
            if kind == "nobody":
                os.chown(path, 65534, 65534)
    before = {name: (spool / name).lstat().st_ino for name in planted}
    fake_sendmail(ws, status=0)
    for old in out.iterdir():
        old.unlink()
    (ws.tree / "new").write_text("x")
    run = snapshot_and_diff(ws, "--mail")
    assert run.returncode == 2
    for name, what in (("2", "a symlink"), ("3", "a FIFO"), ("4", "mode 0644"),
                       ("5", "of uid 65534"), ("6", "2 links")):
        line = next(ln for ln in run.stderr.splitlines() if f"{int(name):020d}-1.eml" in ln)
        assert what in line and "not sent, left in place" in line
    sent = sent_messages(out)
    assert [f"{ws.tree}/queued" in m.get_content() for m in sent] == [True, False]
    assert f"{ws.tree}/new" in sent[1].get_content()
    assert not any("planted" in m.as_string() for m in sent)
    assert {name: (spool / name).lstat().st_ino for name in planted} == before
    assert not queued.exists()  # ours, sent: removed
