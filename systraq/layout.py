"""Every file name systraq uses under CONFIG and STATE, in one place.

Jobs ask a ``Layout`` for a path instead of building it, so no job module imports another
for a file name, and the state directory's shape is decided here alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MODES = ("pub", "root")
LIST_KINDS = ("list", "homelist")

SYSTRAQ_CONF = "systraq.conf"
FILETRAQ_LIST = "filetraq.conf"
FILETRAQ_TAIL = "filetraq.tail.conf"
STORE_DIR = "filetraq"
REPORTED = "reported"
BASELINE = "baseline"


def list_name(mode: str, kind: str) -> str:
    """``snapshot_<mode>.<kind>`` (kind: list or homelist)."""
    return f"snapshot_{mode}.{kind}"


# systraq's own configuration files, as filetraq-conf lists them.
OWN_CONFIG_FILES = (SYSTRAQ_CONF, *(list_name(m, k) for m in MODES for k in LIST_KINDS))


@dataclass(frozen=True)
class Layout:
    """Where each file lives, for one configuration and one state directory."""

    config_dir: Path
    state_dir: Path

    # -- configuration ---------------------------------------------------------------

    def list_file(self, mode: str, kind: str = "list") -> Path:
        return self.config_dir / list_name(mode, kind)

    @property
    def settings_file(self) -> Path:
        return self.config_dir / SYSTRAQ_CONF

    @property
    def filetraq_list(self) -> Path:
        return self.config_dir / FILETRAQ_LIST

    @property
    def filetraq_tail(self) -> Path:
        return self.config_dir / FILETRAQ_TAIL

    # -- state -----------------------------------------------------------------------

    def snapshot(self, mode: str) -> Path:
        """The newest snapshot of a mode."""
        return self.state_dir / f"snapshot_{mode}.stat"

    def snapshot_lock(self, mode: str) -> Path:
        return self.state_dir / f"snapshot_{mode}.lock"

    def copy(self, kind: str, mode: str) -> Path:
        """The reported or baseline copy of a mode (kind: REPORTED or BASELINE)."""
        return self.state_dir / f"{kind}_{mode}.stat"

    @property
    def report_lock(self) -> Path:
        return self.state_dir / "report.lock"

    def spool(self, uid: int | None = None) -> Path:
        """The mail spool of an account: STATE/spool for root, STATE/spool.UID otherwise
        (a spool is private to whoever writes it)."""
        uid = os.geteuid() if uid is None else uid
        return self.state_dir / ("spool" if uid == 0 else f"spool.{uid}")

    @property
    def packages_cache(self) -> Path:
        """The md5 cache of package files (root's alone: STATE/root is 0700)."""
        return self.state_dir / "root" / "packages.cache"

    @property
    def store(self) -> Path:
        """The filetraq backup store."""
        return self.state_dir / STORE_DIR
