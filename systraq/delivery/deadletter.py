"""Dead letters: messages set aside for good, and the notice the next report carries.

A message the mail system refuses for good (a 5xx reply to it, as 552 message too large),
or one still undelivered ``mail.dead_after`` hours after it was spooled, moves out of the
spool into ``Layout.dead_letters()``, so it never blocks later mail. That directory is a
Maildir (tmp/, new/, cur/: any mail reader opens it): ``new/`` holds dead letters no report
has told of yet, ``cur/`` those told of. Each carries an ``X-Systraq-Dead-Letter`` header
saying when and why it was set aside.

The next report tells of them in its first lines (``deliver`` prepends ``notice``); only
once that report was accepted or spooled do they move to ``cur/``, so each dead letter is
told of exactly once. Should a spooled report that carries a notice be set aside in turn,
the notice travels inside it, and the next report tells of that one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from systraq.config import Settings
from systraq.delivery.message import header_of
from systraq.delivery.outcome import DeadLetter, DeliveryError
from systraq.delivery.private import NotOurs, PrivateDir
from systraq.pathcodec import escape

HEADER = "X-Systraq-Dead-Letter"
MAX_LISTED = 20  # a notice lists this many dead letters, then counts the rest
_HEAD_BYTES = 65536  # a dead letter's headers are read from this much of it
_REASON_CHARS = 600


def _one_line(text: str, limit: int) -> str:
    """Text (a server's reply, a subject) as one escaped line: no control or format
    character of it reaches a header, a report or a terminal."""
    shown = escape(" ".join(text.split()).encode("utf-8", "surrogateescape"))
    return shown if len(shown) <= limit else shown[:limit] + "…"


@dataclass(frozen=True)
class Untold:
    """A dead letter no report has told of yet."""

    name: str
    letter: DeadLetter  # its path is where it will be once told of (cur/)


class DeadLetters:
    """This account's dead-letter Maildir, open and checked."""

    def __init__(self, root: PrivateDir, new: PrivateDir, cur: PrivateDir) -> None:
        self.root, self.new, self.cur = root, new, cur

    @classmethod
    def open(cls, settings: Settings, *, create: bool = True) -> DeadLetters | None:
        """None if it does not exist and ``create`` is off; DeliveryError if refused."""
        what = "dead-letter directory"
        root = PrivateDir.open(settings.layout.dead_letters(), what, create=create)
        if root is None:
            return None
        opened = [root]
        try:
            for name in ("tmp", "new", "cur"):
                opened.append(root.subdir(name, what))
        except BaseException:
            for directory in opened:
                directory.close()
            raise
        opened[1].close()  # tmp/ exists for mail readers; messages are written atomically
        return cls(root, opened[2], opened[3])

    def close(self) -> None:
        for directory in (self.root, self.new, self.cur):
            directory.close()

    def holds(self, name: str) -> bool:
        """Whether a message of this spool name was already set aside (a run was killed
        between setting it aside and removing it from the spool)."""
        return self.new.exists(name) or self.cur.exists(name)

    def add(self, name: str, data: bytes, reason: str, now: float) -> DeadLetter:
        """Set a message aside, with a header saying when and why."""
        from email.utils import formatdate

        why = f"{formatdate(now, localtime=True)}; {_one_line(reason, _REASON_CHARS)}"
        header = f"{HEADER}: {why}\n".encode("ascii", "backslashreplace")
        path = self.new.write(name, header + data)
        return DeadLetter(path, _one_line(header_of(data, "Subject"), 200),
                          _one_line(reason, _REASON_CHARS), header_of(data, "Date"))

    def untold(self, problems: list[str]) -> list[Untold]:
        """Dead letters no report has told of, oldest first (refused files go to
        ``problems`` and are left alone)."""
        found = []
        for name in self.new.names():
            if name.startswith("."):
                continue
            try:
                head, _ = self.new.read(name, _HEAD_BYTES)
            except FileNotFoundError:
                continue
            except NotOurs as err:
                problems.append(f"{self.new.path / name}: in the dead-letter directory but "
                                f"{err}: left in place (check it, then remove it)")
                continue
            reason = header_of(head, HEADER).split("; ", 1)[-1]
            letter = DeadLetter(self.cur.path / name, _one_line(header_of(head, "Subject"), 200),
                                reason, header_of(head, "Date"))
            found.append(Untold(name, letter))
        return found

    def mark_told(self, untold: list[Untold]) -> None:
        """Move dead letters a delivered report told of from new/ to cur/."""
        for item in untold:
            try:
                self.new.move(item.name, self.new.check(item.name), self.cur)
            except (FileNotFoundError, NotOurs):
                continue  # moved by a run at the same time, or no longer ours: left alone
            except OSError as err:
                raise DeliveryError(f"cannot mark a dead letter as told of: {err.strerror}",
                                    self.new.path / item.name) from None


# --- the notice --------------------------------------------------------------------------

def notice_lines(untold: list[Untold]) -> list[str]:
    """The first lines of the next report: which messages were set aside, why, where."""
    count = len(untold)
    were = "message was" if count == 1 else "messages were"
    lines = [f"NOTE: {count} earlier {were} not delivered and set aside for good "
             "(never retried):"]
    for item in untold[:MAX_LISTED]:
        letter = item.letter
        dated = f" ({letter.since})" if letter.since else ""
        lines.append(f"  \"{letter.subject or '(no subject)'}\"{dated}")
        lines.append(f"    why: {letter.reason}")
        lines.append(f"    kept in {letter.path}")
    if count > MAX_LISTED:
        lines.append(f"  and {count - MAX_LISTED} more in "
                     f"{untold[0].letter.path.parent}")
    return lines


def notice(untold: list[Untold]) -> str:
    """``notice_lines`` as text to put before a report (empty when nothing to tell)."""
    if not untold:
        return ""
    return "\n".join(notice_lines(untold)) + "\n\n"


_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def html_notice(page: str, untold: list[Untold]) -> str:
    """An HTML report with the notice first (after <body> if it has one)."""
    if not untold:
        return page
    from html import escape as escape_html

    block = "<pre>" + escape_html("\n".join(notice_lines(untold))) + "</pre>\n"
    found = _BODY.search(page)
    if found is None:
        return block + page
    return page[:found.end()] + "\n" + block + page[found.end():]


def hours(ns: int) -> str:
    """A duration in hours, for reasons: ``121 hours``."""
    value = ns / 3.6e12
    return f"{value:.0f} hours" if value >= 10 else f"{value:.1f} hours"

