"""System state: release, kernel, load, memory, file systems, RAID, network, services.

Everything that has a file under /proc or /etc is read from the tree (``--root``); the
listening sockets, failed units and largest processes need the running system's tools.
"""

from __future__ import annotations

import contextlib
import os
import re

from systraq.daily.context import DailyContext, Unavailable, printable
from systraq.daily.report import Section, Table
from systraq.fs.nofollow import PSEUDO_FS_TYPES

# File systems whose usage says nothing about the disks.
_SKIPPED_FS = PSEUDO_FS_TYPES | {"tmpfs", "ramfs", "squashfs", "iso9660", "nsfs", "overlay",
                                 "fuse.lxcfs", "devtmpfs"}


def human(size: float) -> str:
    for unit in ("B", "K", "M", "G", "T", "P"):
        if size < 1024 or unit == "P":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.0f}B"


def duration(seconds: float) -> str:
    """``3 days, 4:05`` as uptime(1) says it."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, minutes = rest // 3600, rest % 3600 // 60
    clock = f"{hours}:{minutes:02d}"
    if days:
        return f"{days} day{'s' if days != 1 else ''}, {clock}"
    return clock


def uptime(ctx: DailyContext) -> str:
    """How long the system has been up, or "" when /proc/uptime cannot be read."""
    try:
        return duration(float(ctx.read_text("/proc/uptime", 128).split()[0]))
    except (Unavailable, ValueError, IndexError):
        return ""


def _os_release(ctx: DailyContext) -> str:
    for name in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = ctx.read_text(name, 64 << 10)
        except Unavailable:
            continue
        values = dict(re.findall(r'^([A-Z_]+)="?([^"\n]*)"?$', text, re.MULTILINE))
        return printable(values.get("PRETTY_NAME") or values.get("NAME", "unknown"))
    raise Unavailable("os release: /etc/os-release not present")


def _kernel(ctx: DailyContext) -> str:
    release = ctx.read_text("/proc/sys/kernel/osrelease", 256, "kernel").strip()
    try:
        version = ctx.read_text("/proc/sys/kernel/version", 512).strip()
    except Unavailable:
        version = ""
    return printable(f"{release} {version}".strip())


def _meminfo(ctx: DailyContext) -> dict[str, int]:
    values = {}
    for line in ctx.read_text("/proc/meminfo", 64 << 10, "memory").splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name] = int(parts[0]) * 1024
    return values


def _basics(ctx: DailyContext, section: Section) -> None:
    lines = []
    for label, get in (("os", _os_release), ("kernel", _kernel)):
        try:
            lines.append(f"{label}: {get(ctx)}")
        except Unavailable as why:
            lines.append(str(why))
    up = uptime(ctx)
    lines.append(f"uptime: {up}" if up else "uptime: /proc/uptime not readable")
    try:
        load = ctx.read_text("/proc/loadavg", 256, "load").split()[:3]
        lines.append(f"load: {' '.join(load)}")
    except Unavailable as why:
        lines.append(str(why))
    section.add("", lines)


def _memory(ctx: DailyContext, section: Section) -> None:
    try:
        info = _meminfo(ctx)
    except Unavailable as why:
        section.unavailable(str(why), "memory")
        return
    table = Table(("", "total", "used", "available"))
    total, available = info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))
    table.rows.append(("memory", human(total), human(total - available), human(available)))
    table.marked.append(False)
    swap_total, swap_free = info.get("SwapTotal", 0), info.get("SwapFree", 0)
    table.rows.append(("swap", human(swap_total), human(swap_total - swap_free),
                       human(swap_free)))
    table.marked.append(False)
    section.add("memory", table=table)


def _mounts(ctx: DailyContext) -> list[tuple[str, str, str]]:
    """(device, mount point, type) of the disk file systems in the tree's mount table."""
    for name in ("/proc/self/mounts", "/proc/mounts", "/etc/mtab"):
        try:
            text = ctx.read_text(name, 4 << 20)
        except Unavailable:
            continue
        found, seen = [], set()
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 3 or fields[2] in _SKIPPED_FS:
                continue
            # The mount table escapes blanks as octal (\040).
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
            if point in seen:
                continue
            seen.add(point)
            found.append((fields[0], point, fields[2]))
        return found
    raise Unavailable("file systems: no mount table (/proc/self/mounts) to read")


def _filesystems(ctx: DailyContext, section: Section) -> None:
    try:
        mounts = _mounts(ctx)
    except Unavailable as why:
        section.unavailable(str(why), "file systems")
        return
    threshold = ctx.settings.daily.disk_threshold
    table = Table(("mounted on", "type", "size", "used", "avail", "use%", "inodes%"))
    for _, point, fstype in mounts:
        try:
            vfs = os.statvfs(ctx.path(point))
        except OSError:
            continue
        size = vfs.f_blocks * vfs.f_frsize
        if size == 0:
            continue
        free_to_users = vfs.f_bavail * vfs.f_frsize
        used = size - vfs.f_bfree * vfs.f_frsize
        # As df(1): usage of what users can have, rounded up.
        percent = -(-used * 100 // (used + free_to_users)) if used + free_to_users else 0
        inodes = -(-(vfs.f_files - vfs.f_ffree) * 100 // vfs.f_files) if vfs.f_files else 0
        over = percent >= threshold or inodes >= threshold
        table.rows.append((printable(point, 60), fstype, human(size), human(used),
                           human(free_to_users), f"{percent}%", f"{inodes}%"))
        table.marked.append(over)
        if over:
            section.attend(f"file system {printable(point, 60)} is {percent}% full "
                           f"({inodes}% of inodes used)")
    section.add("file systems", table=table)


def _raid(ctx: DailyContext, section: Section) -> None:
    try:
        text = ctx.read("/proc/mdstat", 256 << 10).decode("utf-8", "replace")
    except OSError:
        return  # no md driver: no software RAID, nothing to say
    arrays = re.findall(r"^(md\S+) : (\S+) (.*)\n\s+.*\[([U_]+)\]", text, re.MULTILINE)
    if not arrays:
        return
    lines = []
    for name, state, members, status in arrays:
        degraded = "_" in status
        lines.append(f"{name}: {state} [{status}] {printable(members, 120)}"
                     + ("  <-- degraded" if degraded else ""))
        if degraded:
            section.attend(f"software RAID {name} is degraded [{status}]")
    section.add("software RAID", lines)


def _network(ctx: DailyContext, section: Section) -> None:
    try:
        text = ctx.read_text("/proc/net/dev", 1 << 20, "network interfaces")
    except Unavailable as why:
        section.unavailable(str(why), "network interfaces")
        return
    table = Table(("interface", "rx bytes", "rx errs", "rx drop", "tx bytes", "tx errs",
                   "tx drop"))
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        values = counters.split()
        if len(values) < 16:
            continue
        rx_bytes, rx_errs, rx_drop = values[0], values[2], values[3]
        tx_bytes, tx_errs, tx_drop = values[8], values[10], values[11]
        table.rows.append((printable(name.strip(), 40), human(int(rx_bytes)), rx_errs,
                           rx_drop, human(int(tx_bytes)), tx_errs, tx_drop))
        table.marked.append(rx_errs != "0" or tx_errs != "0")
    section.add("network interfaces", table=table)


def _sockets(ctx: DailyContext, section: Section) -> None:
    try:
        text = ctx.tool(["ss", "-H", "-l", "-t", "-u", "-n", "-p"], what="listening sockets")
    except Unavailable as why:
        section.unavailable(str(why), "listening sockets")
        return
    table = Table(("proto", "local address", "program"))
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        program = ""
        match = re.search(r'users:\(\("([^"]*)",pid=(\d+)', line)
        if match:
            program = f"{match.group(1)}[{match.group(2)}]"
        table.rows.append((fields[0], printable(fields[4], 80), printable(program, 60)))
    table.rows.sort()
    table.marked = [False] * len(table.rows)
    block = section.add("listening sockets", table=table)
    if not ctx.is_root:
        block.lines.append("(programs are shown only when root runs the report)")


def _failed_units(ctx: DailyContext, section: Section) -> None:
    # As sd_booted(3): systemd runs the system only where this directory exists.
    if ctx.live and not os.path.isdir("/run/systemd/system"):
        section.unavailable("failed systemd units: systemd is not running this system",
                            "failed systemd units")
        return
    try:
        text = ctx.tool(["systemctl", "--failed", "--no-legend", "--plain", "--no-pager"],
                        what="failed systemd units")
    except Unavailable as why:
        section.unavailable(str(why), "failed systemd units")
        return
    units = [printable(line.split()[0], 120) for line in text.splitlines() if line.split()]
    for unit in units:
        section.attend(f"systemd unit {unit} has failed")
    section.add("failed systemd units", units or ["none"])


def _processes(ctx: DailyContext, section: Section) -> None:
    try:
        text = ctx.tool(["ps", "-eo", "pid=,user:16=,rss=,pcpu=,etime=,comm=", "--sort=-rss"],
                        what="largest processes")
    except Unavailable as why:
        section.unavailable(str(why), "largest processes")
        return
    table = Table(("pid", "user", "memory", "cpu%", "running", "command"))
    for line in text.splitlines()[:8]:
        fields = line.split(None, 5)
        if len(fields) < 6:
            continue
        pid, user, rss, cpu, elapsed, command = fields
        table.rows.append((pid, printable(user, 16), human(int(rss) * 1024), cpu, elapsed,
                           printable(command, 40)))
        table.marked.append(False)
    section.add("largest processes (by memory)", table=table)


def _reboot(ctx: DailyContext, section: Section) -> None:
    try:
        ctx.read("/run/reboot-required", 1 << 16)
    except FileNotFoundError:
        try:
            ctx.read("/var/run/reboot-required", 1 << 16)
        except OSError:
            section.add("reboot required", ["no"])
            return
    except OSError:
        section.unavailable("reboot required: /run/reboot-required not readable",
                            "reboot required")
        return
    packages = []
    with contextlib.suppress(Unavailable):
        packages = ctx.read_text("/run/reboot-required.pkgs", 64 << 10).split()
    why = f" (by {', '.join(printable(p, 60) for p in sorted(set(packages)))})" \
        if packages else ""
    section.add("reboot required", [f"yes{why}"])
    section.attend(f"a reboot is required{why}")


def collect(ctx: DailyContext) -> Section:
    section = Section("system", "System")
    for part in (_basics, _memory, _filesystems, _raid, _network, _sockets, _failed_units,
                 _processes, _reboot):
        part(ctx, section)
    return section
