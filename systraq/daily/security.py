"""Security checks: setuid/setgid changes since the baseline and world-writable entries,
both from the snapshots (no fresh walk of the disks), and shell start-up files that set a
loose umask or an unsafe PATH."""

from __future__ import annotations

import glob
import os
import re
import stat
from collections.abc import Iterator

from systraq.changes.compare import difference, merge
from systraq.daily.context import DailyContext, Unavailable, capped, present, printable
from systraq.daily.report import Section
from systraq.errors import StateError
from systraq.layout import BASELINE, MODES
from systraq.pathcodec import escape
from systraq.snapshot.entry import Entry
from systraq.snapshot.state import StateReader

SETID = stat.S_ISUID | stat.S_ISGID
STARTUP_NAMES = (".profile", ".bash_profile", ".bash_login", ".bashrc", ".zshenv",
                 ".zprofile", ".zshrc", ".zlogin", ".cshrc", ".tcshrc", ".login", ".kshrc",
                 ".mkshrc")
SYSTEM_STARTUP = ("/etc/profile", "/etc/bash.bashrc", "/etc/environment", "/etc/login.defs",
                  "/etc/zsh/zshenv", "/etc/zsh/zprofile", "/etc/zsh/zshrc", "/etc/zsh/zlogin",
                  "/etc/csh.cshrc", "/etc/csh.login", "/etc/mkshrc")
_STARTUP_LIMIT = 1 << 20
_UMASK = re.compile(r"(?:^|[;&|{(\s])umask\s+(?:-S\s+)?([0-7]{1,4})\b")
_LOGIN_DEFS_UMASK = re.compile(r"^\s*UMASK\s+([0-7]{1,4})\b")
_PATH = re.compile(r"(?:^|[;&|{(\s])(?:export\s+|declare\s+-x\s+|readonly\s+|typeset\s+-x\s+)?"
                   r"PATH=(\"[^\"]*\"|'[^']*'|[^\s;&|)]*)")
_SETENV_PATH = re.compile(r"(?:^|[;\s])setenv\s+PATH\s+(\"[^\"]*\"|'[^']*'|\S+)")
_CSH_PATH = re.compile(r"(?:^|[;\s])set\s+path\s*=\s*\(([^)]*)\)")


# --- from the snapshots ------------------------------------------------------------------

def _setid(entry: Entry | None) -> bool:
    return entry is not None and entry.type == "f" and bool(entry.perms & SETID)


def _describe(entry: Entry) -> str:
    return f"{entry.perms:04o} {entry.user or entry.uid}:{entry.group or entry.gid}"


def setid_changes(ctx: DailyContext, mode: str) -> Iterator[str]:
    """Setuid/setgid files that appeared, vanished or changed since the mode's baseline."""
    fields = ctx.settings.report.fields
    with StateReader(ctx.layout.snapshot(mode)) as new, \
            StateReader(ctx.layout.copy(BASELINE, mode)) as old:
        for a, b in merge(old, new):
            if not (_setid(a) or _setid(b)):
                continue
            if a is None and b is not None:
                yield f"appeared: {escape(b.path)} ({_describe(b)})"
            elif b is None and a is not None:
                yield f"vanished: {escape(a.path)} (was {_describe(a)})"
            elif a is not None and b is not None:
                change = difference(a, b, fields)
                if change is None:
                    continue
                if not _setid(a):
                    yield f"became setuid/setgid: {escape(b.path)} ({_describe(b)})"
                elif not _setid(b):
                    yield f"no longer setuid/setgid: {escape(b.path)} ({_describe(b)})"
                else:
                    what = ", ".join(sorted(change.fields))
                    yield f"changed ({what}): {escape(b.path)} ({_describe(b)})"


def world_writable(ctx: DailyContext, mode: str) -> Iterator[str]:
    """Entries of the newest snapshot anyone may write, directories without the sticky bit."""
    with StateReader(ctx.layout.snapshot(mode)) as reader:
        for entry in reader:
            if entry.type == "l" or not entry.perms & stat.S_IWOTH:
                continue
            if entry.type == "d" and entry.perms & stat.S_ISVTX:
                continue
            kind = {"d": "directory", "f": "file"}.get(entry.type, "entry")
            yield f"{kind} {escape(entry.path)} ({_describe(entry)})"


def _from_snapshots(ctx: DailyContext, section: Section) -> None:
    limit = ctx.settings.daily.max_lines
    for mode in MODES:
        snapshot = ctx.layout.snapshot(mode)
        if not present(snapshot):
            continue
        if not os.access(snapshot, os.R_OK):
            section.unavailable(f"{mode} snapshot: not readable by this user",
                                f"{mode}: setuid/setgid and world-writable")
            continue
        heading = f"{mode}: setuid/setgid files changed since the baseline"
        if not present(ctx.layout.copy(BASELINE, mode)):
            section.unavailable(f"no {mode} baseline yet (accept one with 'systraq baseline')",
                                heading)
        else:
            try:
                changes = list(setid_changes(ctx, mode))
            except StateError as err:
                section.unavailable(str(err), heading)
            else:
                section.add(heading, capped(changes, limit) or ["none"])
                if changes:
                    section.attend(f"{len(changes)} setuid/setgid change"
                                   f"{'s' if len(changes) != 1 else ''} since the {mode} "
                                   "baseline")
        heading = f"{mode}: world-writable, without the sticky bit"
        try:
            writable = list(world_writable(ctx, mode))
        except StateError as err:
            section.unavailable(str(err), heading)
            continue
        section.add(heading, capped(writable, limit) or ["none"])
        if writable:
            section.attend(f"{len(writable)} world-writable entr"
                           f"{'ies' if len(writable) != 1 else 'y'} in the {mode} snapshot")
    if not any(present(ctx.layout.snapshot(m)) for m in MODES):
        section.unavailable("no snapshot yet: run 'systraq snapshot'",
                            "setuid/setgid and world-writable")


# --- shell start-up files ------------------------------------------------------------------

def path_problems(value: str) -> list[str]:
    """What is wrong with a PATH value: '.', an empty entry, a relative directory."""
    value = value.strip("\"'")
    problems = []
    for entry in value.split(":"):
        if entry == ".":
            problems.append('"."')
        elif entry == "":
            problems.append("an empty entry")
        elif not entry.startswith(("/", "$", "~", "`")):
            problems.append(f"relative directory {entry!r}")
    return problems


def check_startup(text: str, login_defs: bool = False) -> list[tuple[int, str, str]]:
    """(line number, problem, the offending value) of each umask or PATH line."""
    found = []
    for number, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("#"):
            continue
        umask = (_LOGIN_DEFS_UMASK if login_defs else _UMASK).search(line)
        if umask and (int(umask.group(1), 8) & 0o022) != 0o022:
            found.append((number, "umask looser than 022", umask.group(1)))
        for match in (*_PATH.finditer(line), *_SETENV_PATH.finditer(line)):
            problems = path_problems(match.group(1))
            if problems:
                found.append((number, f"PATH with {', '.join(dict.fromkeys(problems))}",
                              match.group(1)))
        csh = _CSH_PATH.search(line)
        if csh:
            problems = path_problems(":".join(csh.group(1).split()))
            if problems:
                found.append((number, f"path with {', '.join(dict.fromkeys(problems))}",
                              csh.group(1)))
    return found


def _read_at(dir_fd: int, name: str) -> tuple[str, bool] | None:
    """A start-up file's text and whether everyone may read it; None when it is not a
    regular file there (absent, a symlink, a fifo)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        data = os.read(fd, _STARTUP_LIMIT)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace"), bool(st.st_mode & stat.S_IROTH)


def _startup_files(ctx: DailyContext) -> Iterator[tuple[str, str, str]]:
    """(directory, name, shown as) of every start-up file to check: system ones, /etc/skel,
    each home's. A home is opened without following a symlink at its last component."""
    for path in SYSTEM_STARTUP:
        yield os.path.dirname(path), os.path.basename(path), path
    profile_d = ctx.path("/etc/profile.d")
    for found in sorted(glob.glob(os.path.join(glob.escape(str(profile_d)), "*.sh"))):
        name = os.path.basename(found)
        yield "/etc/profile.d", name, f"/etc/profile.d/{name}"
    homes = ["/etc/skel"]
    for account in ctx.accounts_or_empty():
        if account.home not in homes and account.home.startswith("/") and account.home != "/":
            homes.append(account.home)
    for home in homes:
        for name in STARTUP_NAMES:
            yield home, name, f"{home.rstrip('/')}/{name}"


def _shell_startup(ctx: DailyContext, section: Section) -> None:
    heading = "shell start-up files: umask and PATH"
    try:
        ctx.accounts  # noqa: B018 - read now so its trouble is said once, here
    except Unavailable as why:
        section.unavailable(f"{why}: homes not checked", heading)
    findings, unreadable, dirs = [], 0, {}
    for directory, name, shown in _startup_files(ctx):
        if directory not in dirs:
            try:
                dirs[directory] = os.open(ctx.path(directory), os.O_RDONLY | os.O_DIRECTORY
                                          | os.O_NOFOLLOW | os.O_CLOEXEC)
            except PermissionError:
                dirs[directory] = -1
                unreadable += 1
            except OSError:
                dirs[directory] = None
        dir_fd = dirs[directory]
        if dir_fd is None or dir_fd < 0:
            continue
        read = _read_at(dir_fd, name)
        if read is None:
            continue
        text, public = read
        for number, problem, value in check_startup(text, shown == "/etc/login.defs"):
            # The value is quoted only from a file everyone may read anyway.
            detail = f": {printable(value, 120)}" if public else ""
            findings.append(f"{printable(shown, 200)}:{number}: {problem}{detail}")
    for fd in dirs.values():
        if fd is not None and fd >= 0:
            os.close(fd)
    block = section.add(heading, capped(findings, ctx.settings.daily.max_lines) or ["none"])
    if unreadable:
        block.lines.append(f"({unreadable} director{'ies' if unreadable != 1 else 'y'} not "
                           "readable by this user not checked)")
    if findings:
        section.attend(f"{len(findings)} shell start-up line"
                       f"{'s' if len(findings) != 1 else ''} with a loose umask or an "
                       "unsafe PATH")


def collect(ctx: DailyContext) -> Section:
    section = Section("security", "Security checks")
    _from_snapshots(ctx, section)
    _shell_startup(ctx, section)
    return section
