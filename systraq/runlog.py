"""When each job last ran and last succeeded: what the daily report's health part reads.

Every job run (snapshot per mode, diff per mode, filetraq) replaces a tiny JSON record in
the state dir atomically. Recording never fails a job: a state dir the account cannot
write just leaves the record as it was (the daily report then says the job looks stale,
which is the truth as far as anyone can tell).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass

from systraq.fs.atomic import write_atomic
from systraq.layout import Layout

# The cron jobs whose silence the daily report notices: (job, mode) → interval in seconds,
# as cron.d/systraq schedules them.
WATCHED_JOBS: dict[tuple[str, str | None], int] = {
    ("snapshot", "pub"): 3600,
    ("snapshot", "root"): 3600,
    ("diff", "pub"): 1800,
    ("diff", "root"): 1800,
    ("filetraq", None): 1800,
}
_MAX_RECORD = 4096  # a record is tens of bytes; anything larger is not one


@dataclass(frozen=True)
class RunRecord:
    job: str
    mode: str | None
    last_ns: int = 0  # the last run, successful or not
    last_ok_ns: int = 0  # the last successful run (0: none recorded)
    ok: bool = False  # whether the last run succeeded


def record(layout: Layout, job: str, mode: str | None, ok: bool, *,
           owner: tuple[int, int] | None = None, now_ns: int | None = None) -> None:
    """Note that ``job`` (of ``mode``) just ran, and whether it succeeded.

    ``owner``: the account whose later runs replace the record (root running the pub
    snapshot by hand leaves it to the pub account, as it does the snapshot).
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    previous = read_record(layout, job, mode)
    data = {"job": job, "mode": mode, "last_ns": now_ns, "ok": ok,
            "last_ok_ns": now_ns if ok else previous.last_ok_ns, "pid": os.getpid()}
    with contextlib.suppress(OSError):
        write_atomic(layout.run_record(job, mode), (json.dumps(data) + "\n").encode(),
                     mode=0o644, owner=owner)


def read_record(layout: Layout, job: str, mode: str | None) -> RunRecord:
    """The record of a job; an absent, unreadable or malformed one reads as 'never ran'."""
    path = layout.run_record(job, mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return RunRecord(job, mode)
    try:
        data = json.loads(os.read(fd, _MAX_RECORD))
        return RunRecord(job, mode, last_ns=int(data["last_ns"]),
                         last_ok_ns=int(data["last_ok_ns"]), ok=bool(data["ok"]))
    except (OSError, ValueError, KeyError, TypeError):
        return RunRecord(job, mode)
    finally:
        os.close(fd)


def last_runs(layout: Layout) -> dict[tuple[str, str | None], RunRecord]:
    """The record of every watched job, keyed by (job, mode)."""
    return {key: read_record(layout, *key) for key in WATCHED_JOBS}


__all__ = ["WATCHED_JOBS", "RunRecord", "last_runs", "read_record", "record"]
