"""Mailing a report: the whole API a job needs (``deliver``, ``flush_spool``).

``deliver(settings, subject, text)`` first sends what earlier runs left in the spool
(oldest first, each removed once the mail system accepted it), then the new message.
When the mail system is down, the message is spooled and the outcome says why; a message
the mail system refuses for good, or one undelivered for ``mail.dead_after`` hours, is set
aside as a dead letter (``deadletter``) and never blocks later mail; a report larger than
``mail.max_size`` is kept on disk and its summary mailed (``oversize``).

The new message begins with a notice of every dead letter no report has told of yet, so
the callers learn of them without asking: ``outcome.told`` lists them, ``outcome.dead``
those set aside in this call.

Exactly once: ``deliver`` returns only when the report was accepted, spooled, or set aside
with its notice due in the next report; the caller then counts it delivered. Otherwise it
raises ``DeliveryError`` and the caller must not.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from systraq.config import Settings
from systraq.delivery.deadletter import DeadLetters, Untold, hours, html_notice, notice
from systraq.delivery.message import build_message, parse_message
from systraq.delivery.outcome import DeadLetter, DeliveryError, DeliveryOutcome
from systraq.delivery.oversize import keep_report, summary_text
from systraq.delivery.private import NotOurs
from systraq.delivery.spool import Spool, Spooled, message_name
from systraq.delivery.transport import MessageRefused, Transport, TransportFailed, transport_for
from systraq.fs.lock import locked
from systraq.statedir import own_dir

if TYPE_CHECKING:
    import os
    from email.message import EmailMessage

Clock = Callable[[], float]


def _lock_timeout(settings: Settings) -> float:
    return settings.snapshot.lock_timeout + settings.mail.timeout


class _Run:
    """One call of ``deliver`` or ``flush_spool``: the transport (made on first use), the
    dead letters (opened on first use) and the outcome being filled in."""

    def __init__(self, settings: Settings, outcome: DeliveryOutcome, now: float) -> None:
        self.settings = settings
        self.outcome = outcome
        self.now = now
        self.now_ns = int(now * 1e9)
        self.transport: Transport | None = None
        self.down = False  # the mail system failed in this run: nothing more is tried
        self._dead: DeadLetters | None = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self._dead is not None:
            self._dead.close()

    # -- sending -----------------------------------------------------------------------

    def send(self, message: EmailMessage) -> bool:
        """True once accepted; False when the mail system is down (the error noted).
        MessageRefused: refused for good."""
        if self.down:
            return False
        try:
            if self.transport is None:
                self.transport = transport_for(self.settings)
            self.transport.send(message)
        except MessageRefused:
            raise
        except TransportFailed as err:
            self.outcome.error = str(err)
            self.down = True
            return False
        self.outcome.sent += 1
        return True

    # -- dead letters ------------------------------------------------------------------

    def dead_letters(self, *, create: bool = True) -> DeadLetters | None:
        if self._dead is None:
            self._dead = DeadLetters.open(self.settings, create=create)
        return self._dead

    def set_aside(self, name: str, data: bytes, reason: str) -> DeadLetter:
        dead = self.dead_letters()
        assert dead is not None
        letter = dead.add(name, data, reason, self.now)
        self.outcome.dead.append(letter)
        return letter

    def untold(self) -> list[Untold]:
        """Dead letters the new message must tell of (none if their directory is refused,
        which is then a problem of the outcome)."""
        try:
            dead = self.dead_letters(create=False)
        except DeliveryError as err:
            self.outcome.problems.append(str(err))
            return []
        return dead.untold(self.outcome.problems) if dead is not None else []

    def tell(self, untold: list[Untold]) -> None:
        """The new message carrying the notice was accepted or spooled."""
        if untold and self._dead is not None:
            self._dead.mark_told(untold)
            self.outcome.told.extend(item.letter for item in untold)

    # -- the spool ---------------------------------------------------------------------

    def flush(self, spool: Spool) -> None:
        """Send spooled messages oldest first. A refused one is set aside and the next is
        tried; once the mail system is down, the rest wait (order kept), except those
        older than ``mail.dead_after``, which are set aside."""
        dead_after_ns = int(self.settings.mail.dead_after * 3.6e12)
        for message in spool.waiting(self.outcome.problems):
            age = self.now_ns - message.since_ns
            too_old = bool(dead_after_ns) and age >= dead_after_ns
            if self.down and not too_old:
                continue
            try:
                data, seen = spool.read(message)
            except (NotOurs, FileNotFoundError):
                continue  # changed since it was listed: looked at again next run
            if self._already_set_aside(message.name):
                spool.remove(message, seen)
                continue
            try:
                if self.send(parse_message(data)):
                    spool.remove(message, seen)
                    continue
            except MessageRefused as err:
                self._move_to_dead(spool, message, data, seen, str(err))
                continue
            if too_old:
                self._move_to_dead(spool, message, data, seen,
                                   f"not delivered for {hours(age)} (mail.dead_after is "
                                   f"{self.settings.mail.dead_after:g}); last: "
                                   f"{self.outcome.error}")

    def _already_set_aside(self, name: str) -> bool:
        try:
            dead = self.dead_letters(create=False)
        except DeliveryError:
            return False
        return dead is not None and dead.holds(name)

    def _move_to_dead(self, spool: Spool, message: Spooled, data: bytes,
                      seen: os.stat_result, reason: str) -> None:
        try:
            self.set_aside(message.name, data, reason)
        except DeliveryError as err:
            self.outcome.problems.append(f"{err}; {message.path} stays in the spool "
                                         f"(not delivered: {reason})")
            return
        spool.remove(message, seen)


def _open_spool(settings: Settings, outcome: DeliveryOutcome, *, create: bool) -> Spool | None:
    """This account's spool, or None (absent, or refused: then a problem of the outcome)."""
    try:
        return Spool.open(settings, create=create)
    except DeliveryError as err:
        outcome.problems.append(str(err))
        return None


@contextlib.contextmanager
def _holding(settings: Settings, spool: Spool | None) -> Iterator[None]:
    """The spool open and locked (if there is one) for the run."""
    if spool is None:
        yield
        return
    with spool, locked(spool.lock_path, _lock_timeout(settings)):
        spool.dir.sweep_temporary()
        yield


def flush_spool(settings: Settings, *, clock: Clock = time.time) -> DeliveryOutcome:
    """Send what waits in the spool, if anything; no connection when the spool is empty."""
    outcome = DeliveryOutcome()
    spool = _open_spool(settings, outcome, create=False)
    if spool is None:
        return outcome
    run = _Run(settings, outcome, clock())
    with _holding(settings, spool):
        try:
            run.flush(spool)
        finally:
            run.close()
        outcome.pending = len(spool.waiting())
    return outcome


def _compose(settings: Settings, subject: str, text: str, html: str | None, summary: str,
             untold: list[Untold], outcome: DeliveryOutcome, now: float) -> EmailMessage:
    """The new message: the notice of dead letters first, then the report, or its summary
    when the report is over ``mail.max_size``."""
    page = html_notice(html, untold) if html is not None else None
    message = build_message(settings, subject, notice(untold) + text, page, when=now)
    limit = settings.mail.max_size
    if not limit:
        return message
    size = len(message.as_bytes())
    if size <= limit:
        return message
    outcome.kept_report = keep_report(settings, text, html, now)
    short = summary_text(text, summary=summary, kept=outcome.kept_report, size=size,
                         limit=limit)
    return build_message(settings, subject, notice(untold) + short, when=now)


def deliver(settings: Settings, subject: str, text: str, *, html: str | None = None,
            summary: str = "", clock: Clock = time.time) -> DeliveryOutcome:
    """Send spooled messages, then this report; spool it if the mail system is down.

    ``html``: an HTML form of the report (the message is then multipart/alternative).
    ``summary``: a few lines with the report's counts, mailed instead of the report when it
    is over ``mail.max_size``. ``clock``: the time now (tests pass their own).

    Returns with ``outcome.ok`` False when something needs the administrator (a spool
    waiting, a dead letter, a refused spool directory); the report is then still delivered
    in the sense above. Raises ``DeliveryError`` when it is not.
    """
    outcome = DeliveryOutcome()
    own_dir(settings)  # the spool and its neighbours live in this account's own directory
    now = clock()
    spool = _open_spool(settings, outcome, create=True)
    run = _Run(settings, outcome, now)
    with _holding(settings, spool):
        try:
            if spool is not None:
                run.flush(spool)
            untold = run.untold()
            message = _compose(settings, subject, text, html, summary, untold, outcome, now)
            data = message.as_bytes()
            try:
                accepted = run.send(message)
            except MessageRefused as err:
                run.set_aside(message_name(run.now_ns), data, str(err))
            else:
                if not accepted:
                    if spool is None:
                        raise DeliveryError(f"mail not delivered: {outcome.error}; and it "
                                            "cannot wait in the spool: "
                                            f"{'; '.join(outcome.problems)}")
                    outcome.spooled = spool.add(data, run.now_ns)
                run.tell(untold)
        finally:
            run.close()
        if spool is not None:
            outcome.pending = len(spool.waiting())
    return outcome
