"""Reports too large to mail: the full report is kept on disk, its summary is mailed.

A message larger than ``mail.max_size`` bytes (as the mail system sees it) would be refused
by many servers, and is read by nobody. The full report goes to ``Layout.reports()`` (a
0700 directory of the sending account, files 0600), and the mail carries the report's
counts, the caller's summary, its first lines, and the path of the full report.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from systraq.config import Settings
from systraq.delivery.message import fqdn
from systraq.delivery.private import PrivateDir

HEAD_BYTES = 64 * 1024  # at most this much of the report's beginning is mailed


def keep_report(settings: Settings, text: str, html: str | None, now: float) -> Path:
    """Write the full report (and its HTML form, beside it) to the reports directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    base = f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}"
    directory = PrivateDir.open(settings.layout.reports(), "report directory")
    assert directory is not None
    with directory:
        path = directory.write(f"{base}.txt", text.encode("utf-8", "surrogateescape"))
        if html is not None:
            directory.write(f"{base}.html", html.encode("utf-8", "surrogateescape"))
    return path


def _head(text: str, budget: int) -> tuple[list[str], int]:
    """The report's first whole lines within ``budget`` bytes, and how many lines follow."""
    lines = text.splitlines()
    taken: list[str] = []
    used = 0
    for line in lines:
        used += len(line.encode("utf-8", "surrogateescape")) + 1
        if used > budget:
            break
        taken.append(line)
    return taken, len(lines) - len(taken)


def summary_text(text: str, *, summary: str, kept: Path, size: int, limit: int) -> str:
    """What is mailed instead of a report of ``size`` bytes over the ``limit``."""
    lines = len(text.splitlines())
    data = len(text.encode("utf-8", "surrogateescape"))
    out = [f"This report is too large to mail: {size} bytes as a message, over mail.max_size "
           f"({limit} bytes).",
           f"The full report ({lines} lines, {data} bytes) is kept on {fqdn()} in",
           f"  {kept}",
           ""]
    if summary:
        out += [summary.rstrip("\n"), ""]
    head, rest = _head(text, min(limit // 2, HEAD_BYTES))
    if head:
        out += ["It begins:", "", *head]
    if rest:
        out += ["", f"[{rest} more lines in {kept}]"]
    return "\n".join(out) + "\n"
