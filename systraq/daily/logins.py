"""Logins of the last day (wtmp), failed logins (btmp), and failed ssh and sudo attempts
grouped by source and account (auth.log, or the journal where there is no auth.log)."""

from __future__ import annotations

import re
import struct
from collections import Counter

from systraq.daily.context import DailyContext, Unavailable, local_time, printable
from systraq.daily.logs import journal_lines, recent_lines
from systraq.daily.report import Section, Table

# struct utmp on Linux (glibc, 64-bit and 32-bit alike): 384 bytes.
_UTMP = struct.Struct("<hxxi32s4s32s256shhiii16s20x")
USER_PROCESS = 7
_WTMP_LIMIT = 64 << 20  # the end of the file: the last day is there

_SSH_FAILED = re.compile(r"sshd\[\d+\]: Failed \S+ for (?:invalid user )?(\S*) from (\S+)")
_SSH_INVALID = re.compile(r"sshd\[\d+\]: Invalid user (\S*) from (\S+)")
_SUDO_WRONG = re.compile(r"sudo(?:\[\d+\])?: +(\S+) : (?:(\d+) incorrect password attempts?"
                         r"|user NOT in sudoers|command not allowed)")
_SU_FAILED = re.compile(r"su(?:\[\d+\])?: (?:FAILED SU|pam_unix\(su(?:-l)?:auth\): "
                        r"authentication failure).*?(?:ruser=|by )(\S+)")


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def read_utmp(ctx: DailyContext, absolute: str) -> list[tuple[int, str, str, str, float]]:
    """(type, user, line, host, time) of each record written since ``ctx.since``."""
    data = ctx.read(absolute, _WTMP_LIMIT, tail=True)
    data = data[len(data) % _UTMP.size:]  # a tail read may start inside a record
    records = []
    for fields in _UTMP.iter_unpack(data):
        kind, _pid, line, _id, user, host, _term, _exit, _session, sec, usec, _addr = fields
        if sec + usec / 1e6 < ctx.since:
            continue
        records.append((kind, _text(user), _text(line), _text(host), float(sec)))
    return records


def _wtmp(ctx: DailyContext, section: Section) -> None:
    try:
        records = read_utmp(ctx, "/var/log/wtmp")
    except FileNotFoundError:
        section.unavailable("/var/log/wtmp: not present", "logins")
        return
    except OSError as err:
        section.unavailable(f"/var/log/wtmp: {err.strerror or err}", "logins")
        return
    rows = [(printable(user, 32), printable(line, 32), printable(host, 64) or "-",
             local_time(when))
            for kind, user, line, host, when in records if kind == USER_PROCESS and user]
    limit = ctx.settings.daily.max_lines
    table = Table(("user", "line", "from", "when"), rows[-limit:], [False] * len(rows[-limit:]))
    block = section.add(f"logins ({len(rows)})", [] if rows else ["none"],
                        table=table if rows else None)
    if len(rows) > limit:
        block.lines.append(f"(the last {limit}; {len(rows) - limit} earlier)")


def _btmp(ctx: DailyContext, section: Section) -> None:
    try:
        records = read_utmp(ctx, "/var/log/btmp")
    except FileNotFoundError:
        section.unavailable("/var/log/btmp: not present", "failed logins")
        return
    except PermissionError:
        section.unavailable("/var/log/btmp: not readable by this user", "failed logins")
        return
    except OSError as err:
        section.unavailable(f"/var/log/btmp: {err.strerror or err}", "failed logins")
        return
    counts = Counter((host or "local", user or "?") for _, user, _, host, _ in records)
    _grouped(ctx, section, "failed logins (btmp)", counts)


def _grouped(ctx: DailyContext, section: Section, heading: str,
             counts: Counter[tuple[str, str]]) -> None:
    table = Table(("source", "account", "attempts"))
    for (source, account), count in counts.most_common(ctx.settings.daily.max_lines):
        table.rows.append((printable(source, 64), printable(account, 32), str(count)))
        table.marked.append(False)
    total = sum(counts.values())
    block = section.add(f"{heading}: {total}", [] if counts else ["none"],
                        table=table if counts else None)
    if len(counts) > len(table.rows):
        block.lines.append(f"and {len(counts) - len(table.rows)} more sources")


def auth_lines(ctx: DailyContext) -> tuple[list[str], str]:
    """The last day of auth.log, or of the journal's auth facilities; and where from."""
    try:
        return recent_lines(ctx, "/var/log/auth.log"), "/var/log/auth.log"
    except FileNotFoundError:
        pass
    except PermissionError:
        raise Unavailable("/var/log/auth.log: not readable by this user") from None
    except OSError as err:
        raise Unavailable(f"/var/log/auth.log: {err.strerror or err}") from None
    if not ctx.settings.daily.journal:
        raise Unavailable("/var/log/auth.log: not present (and daily.journal is off)")
    try:
        return journal_lines(ctx, "SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10"), "the journal"
    except Unavailable as why:
        raise Unavailable(f"/var/log/auth.log: not present; {why}") from None


def _attempts(ctx: DailyContext, section: Section) -> None:
    try:
        lines, source = auth_lines(ctx)
    except Unavailable as why:
        section.unavailable(str(why), "failed ssh and sudo attempts")
        return
    ssh: Counter[tuple[str, str]] = Counter()
    sudo: Counter[tuple[str, str]] = Counter()
    for line in lines:
        match = _SSH_FAILED.search(line) or _SSH_INVALID.search(line)
        if match:
            ssh[(match.group(2), match.group(1) or "?")] += 1
            continue
        match = _SUDO_WRONG.search(line)
        if match:  # sudo logs one line for up to three wrong passwords
            sudo[("sudo", match.group(1))] += int(match.group(2) or 1)
            continue
        match = _SU_FAILED.search(line)
        if match:
            sudo[("su", match.group(1))] += 1
    _grouped(ctx, section, f"failed ssh logins ({source})", ssh)
    _grouped(ctx, section, f"failed sudo and su attempts ({source})", sudo)
    if sudo:
        section.attend(f"{sum(sudo.values())} failed sudo/su attempts")


def collect(ctx: DailyContext) -> Section:
    section = Section("logins", "Logins")
    for part in (_wtmp, _btmp, _attempts):
        part(ctx, section)
    return section
