"""The parts of the host outside CONFIG and STATE that ``systraq init`` reads or changes.

Every such path goes through a ``Host``, whose ``root`` is ``/`` for real and a scratch
directory in tests; so are the package database and the programs init runs.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from systraq.errors import SystraqError

CRON_FILE = "etc/cron.d/systraq"
APT_HOOK = "etc/apt/apt.conf.d/99systraq"
DEBIAN_APT_HOOK = "etc/apt/apt.conf.d/20systraq"
DEBIAN_FILETRAQ_LIST = "etc/filetraq.conf"
ALIASES = "etc/aliases"
MAILNAME = "etc/mailname"
UNIT_DIRS = ("etc/systemd/system", "usr/local/lib/systemd/system", "lib/systemd/system",
             "usr/lib/systemd/system")
# Debian's own `sort -V`-free test for "is this version older than the epoch-1 versions
# systraq's package carries": dpkg --compare-versions.
SUCCESSOR_EPOCH = "1:0"


@dataclass(frozen=True)
class Package:
    """A package as dpkg knows it: installed, or removed with its configuration kept."""

    name: str
    version: str
    installed: bool  # False: removed, configuration files kept ("rc")

    def describe(self) -> str:
        state = "installed" if self.installed else "removed, configuration kept"
        return f"{self.name} {self.version} ({state})"


@dataclass(frozen=True)
class Host:
    root: Path = Path("/")

    def path(self, relative: str) -> Path:
        return self.root / relative

    @property
    def is_real(self) -> bool:
        return self.root == Path("/")

    @property
    def cron_file(self) -> Path:
        return self.path(CRON_FILE)

    @property
    def apt_hook(self) -> Path:
        return self.path(APT_HOOK)

    @property
    def systemd_running(self) -> bool:
        return self.path("run/systemd/system").is_dir()

    def unit_installed(self, unit: str) -> bool:
        return any(self.path(f"{d}/{unit}").is_file() for d in UNIT_DIRS)

    def package(self, name: str) -> Package | None:
        """What dpkg knows of a package, or None (not known, or no dpkg at all)."""
        admindir = self.path("var/lib/dpkg")
        if not (admindir / "status").is_file():
            return None
        try:
            done = subprocess.run(
                ["dpkg-query", f"--admindir={admindir}", "-W",
                 "-f=${db:Status-Abbrev}\t${Version}", name],
                capture_output=True, text=True, check=False, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        status, _, version = done.stdout.partition("\t")
        if done.returncode != 0 or not version:
            return None
        if status.startswith("ii"):
            return Package(name, version, installed=True)
        if status.startswith("rc"):
            return Package(name, version, installed=False)
        return None

    def upgraded_from(self, name: str) -> list[str]:
        """The versions dpkg's log says a package was upgraded from, newest first."""
        try:
            lines = self.path("var/log/dpkg.log").read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [fields[4] for fields in map(str.split, reversed(lines))
                if len(fields) == 6 and fields[2] == "upgrade"
                and fields[3].split(":")[0] == name]

    def older_than_successor(self, version: str) -> bool:
        """Whether a systraq version is Debian's original (before systraq's epoch 1)."""
        done = subprocess.run(["dpkg", "--compare-versions", version, "lt", SUCCESSOR_EPOCH],
                              capture_output=True, check=False)
        return done.returncode == 0

    def run(self, argv: list[str], what: str) -> str:
        """Run a program of the host (adduser, systemctl); its output, or a SystraqError."""
        if not self.is_real:
            raise SystraqError(f"{what}: not run outside the real root ({self.root})")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=300, env={**os.environ, "LC_ALL": "C"})
        except OSError as err:
            raise SystraqError(f"{what}: {argv[0]}: {err.strerror}") from None
        except subprocess.TimeoutExpired:
            raise SystraqError(f"{what}: {argv[0]} did not finish within 300 s") from None
        if done.returncode != 0:
            said = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise SystraqError(f"{what}: {' '.join(argv)} exited with status "
                               f"{done.returncode}" + (f": {said[-1]}" if said else ""))
        return done.stdout
