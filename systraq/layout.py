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
IGNORE_DIR = "ignore.d"
EXTENSION_DIR = "systraq.d"
SUMS = "systraq.sums"
LEGACY_SUMS = "systraq.md5sums"
DAILY_HISTORY = "daily.history"
SETUP_MARKER = "initialized"
ARCHIVE_DIR = "archive"


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

    @property
    def ignore_dir(self) -> Path:
        """Log lines known to be harmless, as logcheck rules (``systraq daily``)."""
        return self.config_dir / IGNORE_DIR

    @property
    def extension_dir(self) -> Path:
        """Local parts of the daily report, run-parts style."""
        return self.config_dir / EXTENSION_DIR

    # -- state -----------------------------------------------------------------------
    # Each account writes only its own directory: STATE/pub belongs to the account the pub
    # snapshot runs as, STATE/root to root. Root reads the pub snapshot, never writes there.

    @staticmethod
    def account_name(uid: int | None = None) -> str:
        """The state directory's name for an account: root's, or the pub account's."""
        return "root" if (os.geteuid() if uid is None else uid) == 0 else "pub"

    def account_dir(self, uid: int | None = None) -> Path:
        return self.state_dir / self.account_name(uid)

    def mode_dir(self, mode: str) -> Path:
        """Where a mode's snapshot lives: the directory of the account that takes it."""
        return self.state_dir / mode

    def snapshot(self, mode: str) -> Path:
        """The newest snapshot of a mode."""
        return self.mode_dir(mode) / f"snapshot_{mode}.stat"

    def snapshot_lock(self, mode: str) -> Path:
        return self.mode_dir(mode) / "snapshot.lock"

    def overlaps_said(self, mode: str) -> Path:
        """The list lines a mode's snapshot last said overlap the other mode's (said once)."""
        return self.mode_dir(mode) / "overlaps.said"

    def copy(self, kind: str, mode: str, uid: int | None = None) -> Path:
        """The reported or baseline copy of a mode (kind: REPORTED or BASELINE), kept by
        the account that reports."""
        return self.account_dir(uid) / f"{kind}_{mode}.stat"

    def set_aside(self, copy: Path, stamp: str) -> Path:
        """Where a corrupt reported or baseline copy is kept for inspection (beside it)."""
        return copy.with_name(f"{copy.name}.corrupt-{stamp}")

    def snapshot_notes(self, mode: str) -> Path:
        """What the snapshot job of a mode has to tell the next report (a corrupt previous
        snapshot), kept by the account that takes it."""
        return self.mode_dir(mode) / f"snapshot_{mode}.notes"

    def snapshot_job_files(self, mode: str) -> tuple[Path, ...]:
        """The files a mode's snapshot job replaces while it holds the snapshot lock."""
        return (self.snapshot(mode), self.snapshot_notes(mode), self.overlaps_said(mode),
                self.run_record("snapshot", mode))

    def report_files(self, uid: int | None = None) -> tuple[Path, ...]:
        """The files runs holding an account's report lock replace: the reported and
        baseline copies (and their pins), the daily report's pins and history, the diff's
        run records."""
        return (*(self.copy(kind, mode, uid) for kind in (REPORTED, BASELINE)
                  for mode in MODES),
                *(self.daily_copy(mode, uid) for mode in MODES),
                self.account_dir(uid) / DAILY_HISTORY,
                *(self.run_record("diff", mode, uid) for mode in MODES))

    def report_lock(self, uid: int | None = None) -> Path:
        return self.account_dir(uid) / "report.lock"

    def spool(self, uid: int | None = None) -> Path:
        """The mail spool of an account (a spool is private to whoever writes it)."""
        return self.account_dir(uid) / "spool"

    def dead_letters(self, uid: int | None = None) -> Path:
        """Mail of an account that was refused for good or undelivered too long (a Maildir)."""
        return self.account_dir(uid) / "dead-letters"

    def reports(self, uid: int | None = None) -> Path:
        """Full reports of an account too large to mail (the mail carries their summary)."""
        return self.account_dir(uid) / "reports"

    @property
    def packages_cache(self) -> Path:
        """The md5 cache of package files (root's alone: STATE/root is 0700)."""
        return self.state_dir / "root" / "packages.cache"

    @property
    def store(self) -> Path:
        """The filetraq backup store."""
        return self.state_dir / STORE_DIR

    @property
    def setup_marker(self) -> Path:
        """Written by ``systraq init`` as its last step; scheduled jobs run once it exists."""
        return self.state_dir / SETUP_MARKER

    def archive(self, name: str) -> Path:
        """Where ``systraq init`` keeps files it took over and no longer uses (root's, 0700)."""
        return self.state_dir / ARCHIVE_DIR / name

    @property
    def forward(self) -> Path:
        """The ~/.forward of an account whose home is the state directory."""
        return self.state_dir / ".forward"

    def flat(self, name: str) -> Path:
        """A file of the flat layout earlier versions used (``STATE/NAME``), to migrate."""
        return self.state_dir / name

    @property
    def sums(self) -> Path:
        """Local checksums (sha256sum -c format) the daily report verifies."""
        return self.state_dir / SUMS

    @property
    def legacy_sums(self) -> Path:
        """The original systraq's md5sum -c file, read as it is when present."""
        return self.state_dir / LEGACY_SUMS

    def run_record(self, job: str, mode: str | None = None, uid: int | None = None) -> Path:
        """When a job (of a mode) last ran and last succeeded, in the directory of the
        account that runs it: a snapshot's mode, filetraq's pub account (the store's owner),
        the reporting account for diff."""
        name = f"{job}_{mode}.run" if mode else f"{job}.run"
        if job == "snapshot" and mode:
            return self.mode_dir(mode) / name
        if job == "filetraq":
            return self.mode_dir("pub") / name
        return self.account_dir(uid) / name

    def daily_copy(self, mode: str, uid: int | None = None) -> Path:
        """The snapshot the previous daily report counted changes against."""
        return self.account_dir(uid) / f"daily_{mode}.stat"

    @property
    def daily_history(self) -> Path:
        """Changes and attention items per day, for the daily report's chart."""
        return self.account_dir() / DAILY_HISTORY
