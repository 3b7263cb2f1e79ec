"""Local parts: every executable in ``CONFIG/systraq.d/`` with a run-parts name, in lexical
order, each a section titled by its name.

A part runs with a timeout (``daily.extension_timeout``, 60 s), its standard input closed,
in a small fixed environment. When root runs the report, a part runs as root only if its
file and the directory are root's and not writable by group or others; any other part
runs as the unprivileged account (``snapshot.pub_user``, else ``nobody``) through the one
privilege boundary. A part that fails or hangs is reported; the rest still run.
"""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from systraq.daily.context import DailyContext, capped, printable
from systraq.daily.logs import RUN_PARTS_NAME
from systraq.daily.report import Section
from systraq.errors import SystraqError
from systraq.fs.privilege import run_as

_OUTPUT_LIMIT = 256 << 10
_ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class PartRun:
    status: int | None  # None: killed at the timeout
    output: bytes
    seconds: float
    truncated: bool = False


def run_part(path: str, timeout: float, env: dict[str, str]) -> dict[str, object]:
    """Run one part; kill its whole process group at the timeout. JSON-able result (it may
    come back across the privilege boundary)."""
    started = time.monotonic()
    process = subprocess.Popen([path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=env, cwd="/",
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
        status: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        status = None
    return {"status": status, "output": output[:_OUTPUT_LIMIT],
            "truncated": len(output) > _OUTPUT_LIMIT,
            "seconds": time.monotonic() - started}


def trusted(path: Path, directory: Path) -> bool:
    """Whether root may run this part as root: it (and a symlink's target) and its
    directory are root's own, and nobody else can write them."""
    def roots_own(st: os.stat_result) -> bool:
        return st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)

    try:
        link, target, folder = os.lstat(path), os.stat(path), os.stat(directory)
    except OSError:
        return False
    # A symlink's own mode is always 0777: only its owner counts.
    link_ok = link.st_uid == 0 if stat.S_ISLNK(link.st_mode) else roots_own(link)
    return link_ok and roots_own(target) and roots_own(folder)


def unprivileged_account(ctx: DailyContext) -> pwd.struct_passwd | None:
    for name in (ctx.settings.snapshot.pub_user, "nobody"):
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            continue
        if account.pw_uid != 0:
            return account
    return None


def parts(ctx: DailyContext) -> list[Path]:
    """The executables of ``CONFIG/systraq.d`` run-parts would run, in order."""
    directory = ctx.layout.extension_dir
    found = []
    for name in sorted(os.listdir(directory)):
        path = directory / name
        if RUN_PARTS_NAME.match(name) and path.is_file() and os.access(path, os.X_OK):
            found.append(path)
    return found


def _run(ctx: DailyContext, path: Path) -> tuple[PartRun, str]:
    env = {"PATH": _ENV_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/",
           "SYSTRAQ_ROOT": str(ctx.root), "SYSTRAQ_CONFIG_DIR": str(ctx.settings.config_dir),
           "SYSTRAQ_STATE_DIR": str(ctx.settings.state_dir)}
    timeout = ctx.settings.daily.extension_timeout or None
    as_user = ""
    if ctx.is_root and not trusted(path, ctx.layout.extension_dir):
        account = unprivileged_account(ctx)
        if account is None:
            raise SystraqError("not root's own, and no unprivileged account to run it as")
        as_user = account.pw_name
        result = run_as(account, run_part, str(path), timeout, env)
    else:
        result = run_part(str(path), timeout, env)
    output = result["output"]
    assert isinstance(output, bytes)
    status = result["status"]
    return PartRun(status if isinstance(status, int) else None, output,
                   float(result["seconds"]),  # type: ignore[arg-type]
                   bool(result["truncated"])), as_user


def collect(ctx: DailyContext) -> list[Section]:
    try:
        found = parts(ctx)
    except FileNotFoundError:
        return []
    except OSError as err:
        section = Section("extensions", "Local parts")
        section.unavailable(f"{ctx.layout.extension_dir}: {err.strerror}")
        return [section]
    sections = []
    for path in found:
        section = Section(f"extension:{path.name}", path.name)
        sections.append(section)
        try:
            done, as_user = _run(ctx, path)
        except (OSError, SystraqError) as err:
            section.unavailable(f"could not run: {getattr(err, 'strerror', None) or err}")
            section.attend(f"local part {path.name} could not run")
            continue
        lines = [printable(line.rstrip("\r"), 500) for line in
                 done.output.decode("utf-8", "replace").splitlines()]
        if as_user:
            lines.insert(0, f"(run as {as_user}: the file is not root's own)")
        if done.truncated:
            lines.append(f"(output cut at {_OUTPUT_LIMIT // 1024} KiB)")
        if done.status is None:
            lines.append(f"killed after {ctx.settings.daily.extension_timeout:g}s: it did "
                         "not finish")
            section.attend(f"local part {path.name} did not finish within "
                           f"{ctx.settings.daily.extension_timeout:g}s")
        elif done.status != 0:
            lines.append(f"exited with status {done.status}")
            section.attend(f"local part {path.name} failed (status {done.status})")
        section.add("", capped(lines, max(ctx.settings.daily.max_lines, 200)) or
                    ["(no output)"])
    return sections
