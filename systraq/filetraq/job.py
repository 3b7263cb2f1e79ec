"""The filetraq job: the content of listed files in a backup store, changes in a report.

    FILELIST ─▶ listing: patterns ─▶ paths (globs, directories; a symlink is never followed)
             ─▶ checking: lstat, who may read it, safe open, compare with store and memory
             ─▶ report ─▶ delivered (shown, or mailed) ─▶ committing: store and memory updated

Nothing is written before the report was delivered: when delivery fails, the store is
left as it was and the next run reports the same changes again. Only regular files that
everyone may read (o+r, and o+x on every directory above) are ever copied or diffed. Root
runs the whole job as the store's owner (the pub account): what that account cannot open
is never read, and root never leaves files in the store that the cron job cannot write.
"""

from __future__ import annotations

import os
import pwd
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from systraq import runlog
from systraq.config import Settings
from systraq.delivery import DeliveryOutcome, deliver, flush_spool
from systraq.delivery.message import preload as preload_mail
from systraq.errors import ConfigError, ExitStatus, SystraqError
from systraq.filetraq import seen
from systraq.filetraq.checking import Checker
from systraq.filetraq.committing import Committer
from systraq.filetraq.listing import Lister
from systraq.filetraq.report import (
    FiletraqReport,
    filetraq_subject,
    format_text,
    report_from_wire,
    report_to_wire,
)
from systraq.filetraq.store import META, PruneResult, Store, hand_over
from systraq.fs.atomic import sweep_temporaries
from systraq.fs.lock import locked
from systraq.fs.nofollow import DirCache
from systraq.fs.oserror import naming
from systraq.fs.privilege import Channel, Question, converse_as, pub_account, run_as
from systraq.snapshot.listfiles import Pattern, parse_list
from systraq.statedir import own_dir, pub_dir_for

Show = Callable[[FiletraqReport], None]


@dataclass
class FiletraqResult:
    """What a filetraq run did: its exit status, and how the report went out."""

    status: ExitStatus
    items: int = 0
    delivery: DeliveryOutcome | None = None
    subject: str | None = None  # the mail's subject, when the report was mailed


def _resolve_backupdir(settings: Settings, backupdir: Path | None) -> Path:
    if backupdir is not None:
        if not backupdir.is_dir():
            what = "not a directory" if backupdir.exists() else \
                "no such directory (create the backup store first)"
            raise SystraqError(f"backup directory: {what}", backupdir)
        return backupdir.absolute()
    backupdir = settings.layout.store
    if not backupdir.is_dir():
        try:
            backupdir.mkdir(mode=settings.filetraq.dir_mode, parents=True, exist_ok=True)
        except OSError as err:
            raise SystraqError(f"cannot create the backup store: "
                               f"{os.strerror(err.errno or 0)}", backupdir) from None
    return backupdir


def _store_account(settings: Settings, backupdir: Path) -> pwd.struct_passwd | None:
    """The account root runs a store's job as: its owner, or the pub account (which is
    handed a store root made); None when not root."""
    if os.geteuid() != 0:
        return None
    st = os.stat(backupdir)
    if st.st_uid == 0:
        account = pub_account(settings)
        if account is None:
            return None
        hand_over(backupdir, account.pw_uid, account.pw_gid)
        return account
    try:
        return pwd.getpwuid(st.st_uid)
    except KeyError:  # an owner without a name still has a uid to run as
        return pwd.struct_passwd((f"uid {st.st_uid}", "x", st.st_uid, st.st_gid, "", "/",
                                  "/bin/false"))


def run_filetraq(settings: Settings, filelist: Path | None = None,
                 backupdir: Path | None = None, *, show: Show, mail: bool | None = None,
                 clock: Callable[[], float] = time.time) -> FiletraqResult:
    """Check the listed files, deliver the report, then update the store.

    The report goes to ``show``, or by mail when ``mail`` is set (default: report.mail;
    spooled if the mail system fails, which counts as delivered). ``show`` is called once,
    also with an empty report; if it raises, nothing is written.
    """
    mail = settings.report.mail if mail is None else mail
    if filelist is None:
        filelist = settings.layout.filetraq_list
        if not filelist.exists() and not filelist.is_symlink():
            raise ConfigError("no such file: list the files whose content to track there, "
                              "one path or glob a line (systraq filetraq-conf writes one)",
                              filelist)
    patterns = parse_list(filelist)
    backupdir = _resolve_backupdir(settings, backupdir)
    account = _store_account(settings, backupdir)
    if account is None:
        return _finish(_run(None, settings, patterns, filelist, backupdir, mail, clock, show))
    # That account's own directory: its run record, and the spool it mails through.
    pub_dir_for(settings, account)
    if mail:
        preload_mail(settings)
    conversation = converse_as(account, _run, settings, patterns, filelist, backupdir, mail,
                               clock, None)
    for message in conversation:
        if isinstance(message, Question):
            show(report_from_wire(message.value))
            conversation.reply(True)
    return _finish(conversation.result)


def _finish(summary: dict[str, Any]) -> FiletraqResult:
    delivery = summary["delivery"]
    return FiletraqResult(ExitStatus(summary["status"]), summary["items"],
                          DeliveryOutcome.from_wire(delivery) if delivery else None,
                          summary["subject"])


def _run(channel: Channel | None, settings: Settings, patterns: list[Pattern],
         filelist: Path, backupdir: Path, mail: bool, clock: Callable[[], float],
         show: Show | None) -> dict[str, Any]:
    """The job proper, as the store's owner; ``show`` here, or through ``channel``."""
    started = time.monotonic()
    own_dir(settings)
    outcome: DeliveryOutcome | None = None
    subject = None
    with Store(backupdir, settings.filetraq.dir_mode) as store:
        meta = store.meta_dir()
        try:
            with locked(backupdir / os.fsdecode(META) / "lock",
                        settings.snapshot.lock_timeout):
                # What a killed run left of the memory (entries sweep their own).
                sweep_temporaries([backupdir / os.fsdecode(META) / os.fsdecode(seen.NAME)])
                memory, warning = seen.load(meta)
                report = FiletraqReport(filelist, backupdir, settings.filetraq.max_size)
                if warning:
                    report.warnings.append(f"{backupdir}/.systraq/seen: {warning}; "
                                           "starting afresh (some notices may repeat)")
                with DirCache() as dirs:
                    checker = Checker(settings, store, memory, time.localtime(clock()),
                                      report, Lister(dirs))
                    checker.check(patterns)
                    report.seconds = time.monotonic() - started
                    if mail:
                        if report.items:
                            subject = filetraq_subject(report)
                            outcome = deliver(settings, subject, format_text(report),
                                              summary=_counts(report))
                        else:
                            outcome = flush_spool(settings)
                    elif channel is not None:
                        channel.ask(report_to_wire(report))
                    else:
                        assert show is not None
                        show(report)
                    failures = Committer(checker).commit()
                if checker.memory != memory:
                    with naming(backupdir / os.fsdecode(META) / os.fsdecode(seen.NAME)):
                        seen.save(meta, checker.memory)
        finally:
            os.close(meta)
    runlog.record(settings.layout, "filetraq", None, not failures)
    if failures:
        raise SystraqError(f"{failures[0]}" + (f" (and {len(failures) - 1} more)"
                                               if len(failures) > 1 else "")
                           + "; the change is reported again next run")
    status = report.status
    if outcome is not None and not outcome.ok:
        status = ExitStatus.TROUBLE
    return {"status": int(status), "items": len(report.items), "subject": subject,
            "delivery": outcome.to_wire() if outcome is not None else None}


def _counts(report: FiletraqReport) -> str:
    counts = Counter(str(item.event) for item in report.items)
    return "files: " + ", ".join(f"{n} {event}" for event, n in counts.items())


def prune_store(settings: Settings, backupdir: Path | None = None,
                older_than_days: float | None = None,
                clock: Callable[[], float] = time.time) -> PruneResult:
    """Delete the store's dated copies older than the given days (default from settings)."""
    days = settings.filetraq.prune_days if older_than_days is None else older_than_days
    backupdir = _resolve_backupdir(settings, backupdir)
    account = _store_account(settings, backupdir)
    if account is None:
        return _prune(settings, backupdir, days, clock())
    wire = run_as(account, lambda: _prune(settings, backupdir, days, clock()).to_wire())
    return PruneResult.from_wire(wire)


def _prune(settings: Settings, backupdir: Path, days: float, now: float) -> PruneResult:
    with Store(backupdir, settings.filetraq.dir_mode) as store:
        os.close(store.meta_dir())
        with locked(backupdir / os.fsdecode(META) / "lock", settings.snapshot.lock_timeout):
            return store.prune(days, now)
