"""A fake system tree for the daily report: passwd, shadow, homes, logs, /proc, dpkg log.

Everything a part reads from ``--root`` is made here, with times relative to the test's
clock, so the tests never depend on the host's accounts, logs or uptime.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

from .conftest import Workspace

UTMP = struct.Struct("<hxxi32s4s32s256shhiii16s20x")
USER_PROCESS, LOGIN_PROCESS = 7, 6
HOUR = 3600


def utmp(kind: int, user: str, line: str, host: str, when: float) -> bytes:
    return UTMP.pack(kind, 1234, line.encode(), b"ts/0", user.encode(), host.encode(), 0, 0,
                     0, int(when), 0, b"")


def syslog_time(when: float) -> str:
    """Traditional syslog time, as rsyslog writes it without RFC 3339."""
    stamp = time.localtime(when)
    return time.strftime("%b ", stamp) + f"{stamp.tm_mday:2d}" + time.strftime(" %H:%M:%S",
                                                                               stamp)


def iso_time(when: float) -> str:
    """RFC 3339 time, as Debian 12's rsyslog writes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime(when))


class FakeSystem:
    """A tree below ``root`` that looks enough like a Debian system for every part."""

    def __init__(self, root: Path, now: float | None = None) -> None:
        self.root = root
        self.now = time.time() if now is None else now
        for directory in ("etc/skel", "etc/profile.d", "home", "var/log/audit", "proc/net",
                          "proc/sys/kernel", "run"):
            self.dir(directory)
        self.write("etc/hostname", "fakehost\n")
        self.write("etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
        self.write("proc/uptime", "273600.50 1000.00\n")  # 3 days, 4:00
        self.write("proc/loadavg", "0.10 0.20 0.30 1/100 4242\n")
        self.write("proc/sys/kernel/osrelease", "6.1.0-fake-amd64\n")
        self.write("proc/meminfo", "MemTotal: 2048000 kB\nMemFree: 1024000 kB\n"
                                   "MemAvailable: 1536000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n")
        self.write("proc/mounts", "/dev/vda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n")
        self.write("proc/net/dev",
                   "Inter-|   Receive |  Transmit\n face |bytes packets errs drop\n"
                   "    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n"
                   "  eth0: 5000 50 7 0 0 0 0 0 4000 40 0 0 0 0 0 0\n")
        self.accounts: list[tuple[str, int, str, str]] = []
        self.add_account("root", 0, "/root", shadow="$6$salt$hash")
        self.add_account("daemon", 1, "/usr/sbin", shadow="*")

    # -- files --------------------------------------------------------------------------

    def dir(self, relative: str, mode: int = 0o755) -> Path:
        path = self.root / relative
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
        return path

    def write(self, relative: str, text: str | bytes, mode: int = 0o644,
              mtime: float | None = None) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        path.chmod(mode)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    # -- accounts -----------------------------------------------------------------------

    def add_account(self, name: str, uid: int, home: str, password: str = "x",
                    shadow: str = "!") -> None:
        self.accounts.append((name, uid, home, password, shadow))
        self.write("etc/passwd", "".join(f"{n}:{p}:{u}:{u}::{h}:/bin/bash\n"
                                         for n, u, h, p, _ in self.accounts))
        self.write("etc/shadow", "".join(f"{n}:{s}:19000:0:99999:7:::\n"
                                         for n, _, _, _, s in self.accounts), mode=0o600)
        self.write("etc/group", "".join(f"{n}:x:{u}:\n" for n, u, *_ in self.accounts))
        if home.startswith("/home/"):
            self.dir(home.lstrip("/"))

    # -- logs ---------------------------------------------------------------------------

    def wtmp(self, *records: bytes) -> None:
        self.write("var/log/wtmp", b"".join(records), mode=0o664)

    def btmp(self, *records: bytes) -> None:
        self.write("var/log/btmp", b"".join(records), mode=0o600)

    def log(self, name: str, *lines: tuple[float, str], iso: bool = False,
            mode: int = 0o640) -> Path:
        """A syslog file: (time, 'program[pid]: message') lines on host fakehost."""
        stamp = iso_time if iso else syslog_time
        return self.write(f"var/log/{name}", "".join(f"{stamp(when)} fakehost {text}\n"
                                                     for when, text in lines), mode=mode)


def record_runs(ws: Workspace, now: float, **ages_in_hours: float) -> None:
    """Write job run records as if each job last succeeded that many hours ago."""
    from systraq.config import load_settings
    from systraq.runlog import WATCHED_JOBS, record

    layout = load_settings(ws.config, ws.state).layout
    for job, mode in WATCHED_JOBS:
        key = f"{job}_{mode}" if mode else job
        age = ages_in_hours.get(key, 0.1)
        layout.run_record(job, mode).parent.mkdir(exist_ok=True)
        record(layout, job, mode, True, now_ns=int((now - age * HOUR) * 1e9))


def daily_json(ws: Workspace, root: Path, *args: str, user: str | None = None) -> dict:
    done = ws.run("daily", "--format", "json", "--root", str(root), *args, user=user)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def section(document: dict, key: str) -> dict:
    return next(s for s in document["sections"] if s["key"] == key)


def block(document: dict, key: str, heading_start: str) -> dict:
    return next(b for b in section(document, key)["blocks"]
                if b["heading"].startswith(heading_start))
