"""Taking over from Debian's systraq and filetraq packages, in place.

Debian's systraq (20201231-1) shares systraq's paths: lists in /etc/systraq with the same
names and syntax, state in /var/lib/systraq, the filetraq backup store in
/var/lib/systraq/filetraq, all written by its account ``debian-systraq``. What init does
with each trace it finds:

- the lists are kept as they are; lines whose meaning changed are named (Debian's
  ``st_snapshot`` split lines at blanks, read a blank homelist line as "every whole home"
  and an indented comment in a list as paths), and an empty list is pointed out;
- its snapshots (``snapshot_*.stat``, in its own format) and its generated
  ``filetraq.main.conf`` are moved to ``STATE/archive/debian-systraq/``; its local
  checksums (``systraq.sums``, ``sha256sum -c`` format) stay where they are;
- the backup store stays as it is (systraq uses its layout) and is handed to the pub
  account, and so is ``STATE/.forward``, which an MTA ignores when another account owns it;
- ``filetraq.tail.conf`` loses the lines naming files under STATE (systraq's own state
  changes every hour: diffs of it would be noise), and ``filetraq.conf`` is regenerated;
- its cron file and apt hook are taken over, never run beside systraq's: a cron file the
  administrator had changed (dpkg kept it and put systraq's beside it as ``.dpkg-dist``) is
  set aside as ``.dpkg-old`` and systraq's put in place; the apt hook that ran ``make -C
  /etc/systraq`` as debian-systraq is set aside as ``20systraq.dpkg-old`` (names apt and
  cron ignore, and dpkg removes when that package is purged).

While Debian's systraq itself is still installed, its hourly jobs would go on writing the
state directory in their format: init stops and says how to replace it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from systraq.config import Settings
from systraq.errors import SystraqError
from systraq.filetraq.store import hand_over
from systraq.fs.atomic import write_atomic
from systraq.layout import LIST_KINDS, MODES
from systraq.setup.account import find_account
from systraq.setup.host import DEBIAN_APT_HOOK, DEBIAN_FILETRAQ_LIST, Host
from systraq.setup.plan import Plan
from systraq.snapshot.state import MAGIC

DEBIAN_ACCOUNT = "debian-systraq"
ARCHIVE_NAME = "debian-systraq"
# Debian's snapshots (its layout and format, not systraq's).
DEBIAN_STATE_FILES = ("snapshot_pub.stat", "snapshot_root.stat")
# Files Debian's systraq generated in /etc/systraq that nothing reads any more.
DEBIAN_CONFIG_LEFTOVERS = ("filetraq.main.conf", "systraq_is_unconfigured")
# Lines that mark Debian's versions of the cron file and the apt hook.
DEBIAN_CRON_MARK = b"st_snapshot.hourly"
DEBIAN_HOOK_MARK = b"make -s -C /etc/systraq"


@dataclass
class Traces:
    """What Debian's systraq and filetraq left on this host."""

    systraq: str = ""  # "systraq 20201231-1 (installed)", or "" when dpkg knows none
    systraq_installed: bool = False
    filetraq: str = ""
    filetraq_installed: bool = False
    old_account: bool = False
    state_files: tuple[Path, ...] = ()
    config_leftovers: tuple[Path, ...] = ()
    cron_file: bool = False  # /etc/cron.d/systraq is Debian's
    apt_hook: bool = False

    @property
    def found(self) -> bool:
        return bool(self.systraq or self.filetraq or self.old_account or self.state_files
                    or self.cron_file or self.apt_hook)

    def sources(self) -> list[str]:
        """What the migration is from, for the plan and the marker."""
        found = []
        if self.systraq or self.old_account or self.state_files or self.cron_file:
            found.append(self.systraq or "Debian's systraq")
        if self.filetraq:
            found.append(self.filetraq)
        return found


def _starts_with(path: Path, prefix: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(prefix)) == prefix
    except OSError:
        return False


def _contains(path: Path, mark: bytes) -> bool:
    try:
        return path.is_file() and mark in path.read_bytes()
    except OSError:
        return False


def find_traces(settings: Settings, host: Host) -> Traces:
    traces = Traces()
    package = host.package("systraq")
    if package is not None and host.older_than_successor(package.version):
        traces.systraq = f"Debian's {package.describe()}"
        traces.systraq_installed = package.installed
    elif package is not None:  # systraq's package, maybe installed over Debian's
        debian = [v for v in host.upgraded_from("systraq") if host.older_than_successor(v)]
        if debian:
            traces.systraq = f"Debian's systraq {debian[0]} (upgraded in place)"
    package = host.package("filetraq")
    if package is not None:
        traces.filetraq = f"Debian's {package.describe()}"
        traces.filetraq_installed = package.installed
    traces.old_account = find_account(DEBIAN_ACCOUNT) is not None
    traces.state_files = tuple(
        p for p in (settings.state_dir / n for n in DEBIAN_STATE_FILES)
        if p.is_file() and not p.is_symlink() and not _starts_with(p, MAGIC.encode()))
    traces.config_leftovers = tuple(
        p for p in (settings.config_dir / n for n in DEBIAN_CONFIG_LEFTOVERS)
        if p.is_file() and not p.is_symlink())
    traces.cron_file = _contains(host.cron_file, DEBIAN_CRON_MARK)
    traces.apt_hook = _contains(host.path(DEBIAN_APT_HOOK), DEBIAN_HOOK_MARK)
    return traces


# --- lists -------------------------------------------------------------------------------

def _lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    return lines[:-1] if data.endswith(b"\n") else lines


def meaning_changes(path: Path, kind: str) -> list[str]:
    """Lines of an inherited list that Debian's st_snapshot read otherwise than systraq."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    said = []
    for number, raw in enumerate(_lines(data), 1):
        text = raw.strip()
        shown = text.decode(errors="replace")
        where = f"{path}:{number}"
        if not text:
            if kind == "homelist":
                said.append(f"{where}: a blank line: Debian's st_snapshot hashed every file in "
                            "every home for it; systraq skips blank lines")
            continue
        if text.startswith(b"#"):
            if kind == "list" and raw[:1] in (b" ", b"\t"):
                said.append(f"{where}: an indented comment: Debian's st_snapshot took its "
                            "words for paths; systraq skips it")
            continue
        if any(c in text for c in (b" ", b"\t")):
            said.append(f"{where}: {shown!r} is one path for systraq; Debian's st_snapshot "
                        "split it at the blanks into several")
        elif kind == "homelist" and b"\\" in text:
            said.append(f"{where}: {shown!r}: Debian's st_snapshot dropped the backslashes; "
                        "systraq keeps them")
    return said


def list_is_empty(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return not any(t.strip() and not t.strip().startswith(b"#") for t in _lines(data))


def lines_under(path: Path, directory: Path) -> list[bytes]:
    """Lines of a list that name something under ``directory``."""
    prefix = os.fsencode(directory).rstrip(b"/") + b"/"
    try:
        data = path.read_bytes()
    except OSError:
        return []
    return [line for line in _lines(data)
            if line.strip().startswith(prefix) or line.strip() == prefix.rstrip(b"/")]


def droplines_under(path: Path, directory: Path) -> int:
    """Rewrite a list without the lines naming files under ``directory``; how many went."""
    data = path.read_bytes()
    gone = set(lines_under(path, directory))
    kept = [line for line in _lines(data) if line not in gone]
    st = os.stat(path)
    text = b"".join(line + b"\n" for line in kept)
    write_atomic(path, text, mode=stat.S_IMODE(st.st_mode))
    return len(_lines(data)) - len(kept)


# --- moving things -----------------------------------------------------------------------

def _real_dir(path: Path, mode: int) -> None:
    """Make ``path`` a directory of root's with ``mode``; refuse anything else there."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        raise SystraqError("not a directory of root's: move it away", path)
    os.chmod(path, mode, follow_symlinks=False)


def archive(settings: Settings, paths: tuple[Path, ...]) -> str:
    target = settings.layout.archive(ARCHIVE_NAME)
    _real_dir(target.parent, 0o700)
    _real_dir(target, 0o700)
    for path in paths:
        destination = target / path.name
        if destination.exists():
            destination = target / f"{path.name}.{os.getpid()}"
        try:
            os.rename(path, destination)
        except OSError:  # another file system: copy, then remove
            shutil.copy2(path, destination, follow_symlinks=False)
            os.unlink(path)
    return f"moved {', '.join(p.name for p in paths)} to {target}"


def not_owned_by(top: Path, uid: int | None, gid: int | None) -> int:
    """Entries below ``top`` (itself included) not owned by uid:gid (all, for None)."""
    count = 0
    for _, dirs, files, fd in os.fwalk(top, follow_symlinks=False):
        for name in dirs + files:
            try:
                entry = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            count += (entry.st_uid, entry.st_gid) != (uid, gid)
    st = os.lstat(top)
    return count + ((st.st_uid, st.st_gid) != (uid, gid))


def set_aside(path: Path, suffix: str = ".dpkg-old") -> Path:
    aside = path.with_name(path.name + suffix)
    os.replace(path, aside)
    return aside


# --- the plan ----------------------------------------------------------------------------

def plan_migration(plan: Plan, settings: Settings, host: Host, traces: Traces,
                   pub_name: str, shipped_cron: Callable[[], Path]) -> None:
    """Add the steps, notes and blockers of taking over from Debian's packages."""
    layout = settings.layout
    plan.migrating_from = traces.sources()
    if traces.systraq_installed:
        plan.blockers.append(
            f"{traces.systraq}: its hourly jobs would keep writing {settings.state_dir} in "
            "their own format. Install systraq's package over it (apt-get install "
            "./systraq_*_all.deb), which replaces it in place; or remove it first "
            "(apt-get remove systraq filetraq: the lists and the backup store stay)")
    if traces.filetraq_installed:
        plan.notes.append(
            f"{traces.filetraq}: its own cron job (/etc/cron.d/filetraq) runs filetraq as root "
            "on /etc/filetraq.conf every 5 minutes, apart from systraq; `systraq filetraq` "
            "replaces it (apt-get remove filetraq)")
    debian_list = host.path(DEBIAN_FILETRAQ_LIST)
    if debian_list.is_file() and not list_is_empty(debian_list):
        plan.notes.append(
            f"{debian_list} names files Debian's filetraq tracked in /var/lib/filetraq; to "
            f"keep tracking them, add its lines to {layout.filetraq_tail}")

    for mode in MODES:
        for kind in LIST_KINDS:
            path = layout.list_file(mode, kind)
            if not path.exists():
                continue
            plan.notes.extend(meaning_changes(path, kind))

    tail = layout.filetraq_tail
    if tail.is_file() and lines_under(tail, settings.state_dir):
        lines = ", ".join(line.strip().decode(errors="replace")
                          for line in lines_under(tail, settings.state_dir))
        plan.add(f"drop systraq's own state files from {tail} ({lines}): they change every "
                 "hour, systraq diff reports what they record",
                 lambda: f"dropped {droplines_under(tail, settings.state_dir)} lines from "
                         f"{tail}")

    if traces.cron_file:
        _take_over_cron(plan, host, shipped_cron)
    hook = host.path(DEBIAN_APT_HOOK)
    if traces.apt_hook:
        plan.add(f"set aside Debian's apt hook {hook} (it ran make -C /etc/systraq as "
                 f"{DEBIAN_ACCOUNT} and would fight systraq's over filetraq.conf) as "
                 f"{hook.name}.dpkg-old",
                 lambda: f"set aside as {set_aside(hook)}")

    if traces.state_files or traces.config_leftovers:
        files = traces.state_files + traces.config_leftovers
        plan.add(f"archive Debian's {', '.join(p.name for p in files)} in "
                 f"{layout.archive(ARCHIVE_NAME)}",
                 lambda: archive(settings, files))

    store = layout.store
    if store.is_dir() and not store.is_symlink():
        account = find_account(pub_name)
        ids = (account.pw_uid, account.pw_gid) if account else (None, None)
        others = not_owned_by(store, *ids)
        if others:
            plan.add(f"hand the backup store {store} ({others} files and directories) to "
                     f"{pub_name}; its content stays as it is",
                     lambda: _hand_over_store(store, pub_name))

    forward = layout.forward
    if forward.is_file() and not forward.is_symlink():
        account = find_account(pub_name)
        owner = os.lstat(forward).st_uid
        home_here = account is None or Path(account.pw_dir) == settings.state_dir
        if home_here and (account is None or owner not in (0, account.pw_uid)):
            plan.add(f"hand {forward} to {pub_name}: the mail system ignores a .forward "
                     "another account owns",
                     lambda: _hand_over_file(forward, pub_name))

    if traces.old_account:
        plan.notes.append(f"the account {DEBIAN_ACCOUNT} is no longer used; it is kept, as "
                          f"Debian keeps system accounts (deluser {DEBIAN_ACCOUNT} removes it)")
    parts = settings.config_dir / "systraq.d"
    if parts.is_dir():
        plan.notes.append(f"{parts} holds the parts of Debian's status mail; systraq does not "
                          "run them")


def _take_over_cron(plan: Plan, host: Host, shipped_cron: Callable[[], Path]) -> None:
    cron = host.cron_file
    dist = cron.with_name(cron.name + ".dpkg-dist")

    def take_over() -> str:
        old = set_aside(cron)
        if dist.is_file():
            os.replace(dist, cron)
        else:
            shutil.copyfile(shipped_cron(), cron)
            os.chmod(cron, 0o644)
        return f"set aside Debian's jobs as {old}; {cron} now runs systraq's"

    source = f"{dist.name}, which dpkg put beside it" if dist.is_file() else "the shipped one"
    plan.add(f"take over {cron}: it still holds Debian's jobs (st_snapshot.hourly, filetraq "
             f"as {DEBIAN_ACCOUNT}); set them aside as {cron.name}.dpkg-old, put systraq's "
             f"in place ({source})", take_over)


def _hand_over_store(store: Path, pub_name: str) -> str:
    account = find_account(pub_name)
    if account is None:
        raise SystraqError(f"no account {pub_name} to hand the store to")
    handed = not_owned_by(store, account.pw_uid, account.pw_gid)
    hand_over(store, account.pw_uid, account.pw_gid)
    return f"{handed} entries now {pub_name}'s"


def _hand_over_file(path: Path, pub_name: str) -> str:
    account = find_account(pub_name)
    if account is None:
        raise SystraqError(f"no account {pub_name} to hand {path} to")
    os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
    return f"{path} now {pub_name}'s"
