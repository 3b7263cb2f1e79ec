#!/usr/bin/env python3
"""``systraq ARGS...`` as if an hour had passed since STATE_FILE was taken (bench use only).

The clock is moved to the previous snapshot's start plus an hour, so the snapshot does an
hourly cron run's rolling rehash (the files whose turn came in that hour) and its racy
check against that previous start, without waiting an hour between runs.

    hourly_snapshot.py STATE_FILE --config-dir C --state-dir S snapshot --mode root
"""

from __future__ import annotations

import sys
import time

from systraq.snapshot.state import StateReader

HOUR_NS = 3600 * 1_000_000_000


def main() -> None:
    reader = StateReader(sys.argv[1])
    reader.close()
    offset = reader.header.created_ns + HOUR_NS - time.time_ns()
    real = time.time_ns
    time.time_ns = lambda: real() + offset
    from systraq.cli import main as systraq

    sys.argv = ["systraq", *sys.argv[2:]]
    systraq()


if __name__ == "__main__":
    main()
