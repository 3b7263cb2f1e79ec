"""Commands run with root rights by real users, from the audit log auditd writes.

With the rules ``systraq daily --audit-rules`` prints loaded, the kernel records every
``execve`` of a process whose login user (auid) is a real user; this part keeps those that
ran with euid 0 in the last day and groups them by login user.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict

from systraq.daily.context import DailyContext, capped, printable
from systraq.daily.report import Section

AUDIT_LOG = "/var/log/audit/audit.log"
AUDIT_KEY = "systraq-exec"
AUDIT_RULES = f"""\
# Record the commands real users run, for systraq daily ("Commands run with root rights").
# Put these lines in /etc/audit/rules.d/systraq.rules and run augenrules --load.
-a exit,always -F arch=b64 -F auid!=0 -F auid!=4294967295 -S execve -k {AUDIT_KEY}
-a exit,always -F arch=b32 -F auid!=0 -F auid!=4294967295 -S execve -k {AUDIT_KEY}
"""
_UNSET_AUID = {"4294967295", "-1", "0"}
_READ_LIMIT = 64 << 20
_RECORD = re.compile(r"^type=(\w+) msg=audit\((\d+)(?:\.\d+)?:(\d+)\): (.*)$")
_FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')
_EXECVE_SYSCALLS = {"59", "11", "execve"}  # x86_64, i386; ausearch -i spells the name


def _value(raw: str) -> str:
    """A field as auditd logs it: quoted text, or hex-encoded bytes."""
    if raw.startswith('"'):
        return raw.strip('"')
    if raw != "(null)" and re.fullmatch(r"(?:[0-9A-F]{2})+", raw):
        return bytes.fromhex(raw).decode("utf-8", "replace")
    return raw


def parse(lines: list[str], since: float) -> list[tuple[str, str]]:
    """(auid, command line) of each execve with euid 0 written since ``since``."""
    events: dict[str, dict[str, object]] = defaultdict(dict)
    order: list[str] = []
    for line in lines:
        match = _RECORD.match(line.split("\x1d", 1)[0])  # drop the enriched names
        if not match or int(match.group(2)) < since:
            continue
        kind, serial, rest = match.group(1), match.group(3), match.group(4)
        event = events[serial]
        if not event:
            order.append(serial)
        fields = dict(_FIELD.findall(rest))
        if kind == "SYSCALL":
            event["syscall"] = fields
        elif kind == "EXECVE":
            argc = int(fields.get("argc", "0")) if fields.get("argc", "").isdigit() else 0
            event["argv"] = [_value(fields.get(f"a{i}", "")) for i in range(min(argc, 64))]
    found = []
    for serial in order:
        event = events[serial]
        syscall = event.get("syscall")
        argv = event.get("argv")
        if not isinstance(syscall, dict) or not isinstance(argv, list):
            continue
        if syscall.get("syscall") not in _EXECVE_SYSCALLS or syscall.get("euid") != "0":
            continue
        auid = syscall.get("auid", "")
        if auid in _UNSET_AUID:
            continue
        found.append((auid, " ".join(argv)))
    return found


def _installed(ctx: DailyContext) -> bool:
    return any(os.path.exists(ctx.path(p)) for p in ("/sbin/auditd", "/usr/sbin/auditd"))


def collect(ctx: DailyContext) -> Section:
    section = Section("audit", "Commands run with root rights")
    lines: list[str] = []
    try:
        try:
            if os.stat(ctx.path(AUDIT_LOG + ".1")).st_mtime >= ctx.since:
                lines = ctx.read(AUDIT_LOG + ".1", _READ_LIMIT, tail=True) \
                    .decode("utf-8", "replace").split("\n")
        except FileNotFoundError:
            pass
        lines += ctx.read(AUDIT_LOG, _READ_LIMIT, tail=True).decode("utf-8", "replace") \
            .split("\n")
    except FileNotFoundError:
        if _installed(ctx):
            section.unavailable(f"{AUDIT_LOG}: not present (is auditd running?)")
        else:
            section.unavailable("auditd is not installed: commands are not recorded "
                                "(install auditd and load the rules 'systraq daily "
                                "--audit-rules' prints)")
        return section
    except PermissionError:
        section.unavailable(f"{AUDIT_LOG}: not readable by this user")
        return section
    except OSError as err:
        section.unavailable(f"{AUDIT_LOG}: {err.strerror or err}")
        return section
    commands = parse(lines, ctx.since)
    if not commands and not any(AUDIT_KEY in line or "type=EXECVE" in line for line in lines):
        section.add("", ["no execve records in the audit log: load the rules "
                         "'systraq daily --audit-rules' prints"])
        return section
    by_user: dict[str, Counter[str]] = defaultdict(Counter)
    for auid, command in commands:
        by_user[ctx.user_of(int(auid)) if auid.isdigit() else auid][command] += 1
    if not by_user:
        section.add("", ["none"])
    for user in sorted(by_user):
        counts = by_user[user]
        listed = [printable(command, 200) + (f"  (×{n})" if n > 1 else "")
                  for command, n in counts.most_common()]
        section.add(f"{printable(user, 32)}: {sum(counts.values())} commands",
                    capped(listed, ctx.settings.daily.max_lines))
    return section
