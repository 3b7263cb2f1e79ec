"""What every part of the daily report works from: the settings, the tree, the clock.

File-based parts read below ``root`` (``--root DIR``; ``/`` on the live system), so tests
run them against a fake tree. Parts that need the running system (``ss``, ``ps``,
``systemctl``, the journal) run only when ``root`` is ``/``. A part that cannot do its work
raises ``Unavailable`` with the one line that says why; the report goes on.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from systraq.config import Settings
from systraq.layout import Layout

DAY = 86400
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Unavailable(Exception):
    """A part (or a piece of one) cannot run here: the message says why, in one line."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str
    password: str  # the passwd file's second field ("x": see shadow)


@dataclass
class DailyContext:
    settings: Settings
    root: Path = Path("/")
    now: float = field(default_factory=time.time)
    euid: int = field(default_factory=os.geteuid)

    @property
    def layout(self) -> Layout:
        return self.settings.layout

    @property
    def live(self) -> bool:
        """Whether the tree is the running system (so its tools and /proc describe it)."""
        return os.path.realpath(self.root) == "/"

    @property
    def since(self) -> float:
        """The start of the day the report covers."""
        return self.now - DAY

    @property
    def is_root(self) -> bool:
        return self.euid == 0

    def path(self, absolute: str | bytes) -> Path:
        """An absolute path of the watched system, inside ``root``."""
        text = os.fsdecode(absolute)
        return self.root / text.lstrip("/") if text != "/" else self.root

    # -- reading files of the tree ---------------------------------------------------

    def read(self, absolute: str, limit: int = 1 << 20, tail: bool = False) -> bytes:
        """Read a regular file of the tree (never through a final symlink, never blocking).

        At most ``limit`` bytes: the first ones, or with ``tail`` the last ones. Raises
        FileNotFoundError, PermissionError (or another OSError) for the caller to word.
        """
        fd = os.open(self.path(absolute), _FILE_FLAGS)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(0, "not a regular file", absolute)
            if tail and st.st_size > limit:
                os.lseek(fd, st.st_size - limit, os.SEEK_SET)
            chunks, left = [], limit
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def read_text(self, absolute: str, limit: int = 1 << 20, what: str = "") -> str:
        """``read`` as text, turning the usual failures into ``Unavailable``."""
        try:
            return self.read(absolute, limit).decode("utf-8", "replace")
        except FileNotFoundError:
            raise Unavailable(f"{what or absolute}: not present") from None
        except PermissionError:
            raise Unavailable(f"{what or absolute}: not readable by this user") from None
        except OSError as err:
            raise Unavailable(f"{what or absolute}: {err.strerror or err}") from None

    @functools.cached_property
    def accounts(self) -> list[Account]:
        """The passwd database of the tree (``ROOT/etc/passwd``), in file order."""
        text = self.read_text("/etc/passwd", 8 << 20)
        accounts = []
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) < 7 or line.startswith(("#", "+", "-")):
                continue
            try:
                uid, gid = int(fields[2]), int(fields[3])
            except ValueError:
                continue
            accounts.append(Account(fields[0], uid, gid, fields[5], fields[6], fields[1]))
        return accounts

    def user_of(self, uid: int) -> str:
        for account in self.accounts_or_empty():
            if account.uid == uid:
                return account.name
        return str(uid)

    def accounts_or_empty(self) -> list[Account]:
        try:
            return self.accounts
        except Unavailable:
            return []

    # -- running tools of the live system ----------------------------------------------

    def need_live(self, what: str) -> None:
        if not self.live:
            raise Unavailable(f"{what}: only on the running system (--root is {self.root})")

    def tool(self, argv: list[str], timeout: float = 20.0, what: str = "") -> str:
        """Run a tool of the live system; its stdout, or ``Unavailable`` saying why not."""
        return self.tool_output(argv, timeout, what)[0]

    def tool_output(self, argv: list[str], timeout: float = 20.0, what: str = ""
                    ) -> tuple[str, str]:
        """``tool``, with what the tool said on stderr too."""
        what = what or argv[0]
        self.need_live(what)
        program = shutil.which(argv[0], path=_TOOL_PATH)
        if program is None:
            raise Unavailable(f"{what}: {argv[0]} is not installed")
        env = {"PATH": _TOOL_PATH, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
               "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "COLUMNS": "200"}
        try:
            done = subprocess.run([program, *argv[1:]], capture_output=True, timeout=timeout,
                                  env=env, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"{what}: {argv[0]} did not finish within {timeout:g}s") \
                from None
        except OSError as err:
            raise Unavailable(f"{what}: {argv[0]}: {err.strerror or err}") from None
        if done.returncode != 0 and not done.stdout:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise Unavailable(f"{what}: {argv[0]} exited with status {done.returncode}"
                              + (f": {said[0]}" if said else ""))
        return done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


def printable(text: str, limit: int = 300) -> str:
    """A line of foreign text made safe for a report: no control characters, bounded."""
    cleaned = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256
                      else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def capped(items: list[str], limit: int) -> list[str]:
    """The first ``limit`` items, then ``and N more`` for the rest."""
    if len(items) <= limit:
        return list(items)
    return [*items[:limit], f"and {len(items) - limit} more"]


def local_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def present(path: Path) -> bool:
    """Whether a file is there as far as this account can tell: one in a directory it may
    not search (root's state) counts as there, and unreadable."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True
