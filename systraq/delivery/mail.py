"""Mail delivery: a MIME message handed to sendmail or an SMTP server, or kept in a spool.

``deliver(settings, subject, body)`` is the whole API for a job that mails a report: it
first sends what earlier runs left in the spool (oldest first, each removed only once the
mail system accepted it), then the new message; when the mail system is unreachable, the
message is written to the spool (atomically) and the outcome says why. A message is never
lost: it is either accepted, or in the spool, or ``deliver`` raises (the spool itself could
not be written) and the caller must not consider its report delivered.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from systraq import __version__
from systraq.config import Settings
from systraq.errors import SystraqError
from systraq.fs.atomic import write_atomic
from systraq.fs.lock import locked

if TYPE_CHECKING:
    import smtplib
    from email.message import EmailMessage

# smtplib, ssl and email are imported where used: most runs mail nothing, and a cron job
# that starts every half hour should not pay for them.

SPOOL_SUFFIX = ".eml"


class DeliveryError(SystraqError):
    """A message could neither be delivered nor spooled."""


class TransportFailed(Exception):
    """The mail system did not accept a message (it stays, or goes, in the spool)."""


@dataclass
class DeliveryOutcome:
    """What ``deliver`` or ``flush_spool`` did.

    ``sent``: messages the mail system accepted in this call (spooled ones included);
    ``spooled``: where the new message waits when it could not be sent now;
    ``pending``: messages left in the spool; ``error``: why sending failed ("" if it did not).
    """

    sent: int = 0
    spooled: Path | None = None
    pending: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def to_wire(self) -> dict[str, object]:
        """Plain data, to cross the privilege boundary."""
        return {"sent": self.sent, "spooled": os.fspath(self.spooled) if self.spooled else None,
                "pending": self.pending, "error": self.error}

    @classmethod
    def from_wire(cls, data: dict[str, object]) -> DeliveryOutcome:
        spooled = data["spooled"]
        return cls(int(data["sent"]), Path(str(spooled)) if spooled else None,  # type: ignore[call-overload]
                   int(data["pending"]), str(data["error"]))  # type: ignore[call-overload]

    def describe(self) -> str:
        """One line for stderr when something is left waiting."""
        waiting = "1 message waits" if self.pending == 1 else f"{self.pending} messages wait"
        where = f" (newest: {self.spooled})" if self.spooled else ""
        return (f"mail not delivered: {self.error}; {waiting} in the spool{where} and will be "
                "sent by the next run that mails")


def spool_dir(settings: Settings) -> Path:
    """STATE/spool for root; STATE/spool.UID for another account (filetraq as systraq),
    since a spool is private to whoever writes it."""
    return settings.layout.spool()


@functools.cache
def fqdn() -> str:
    return socket.getfqdn()


def _is_localhost(name: str) -> bool:
    return name.lower() in ("localhost", "localhost.localdomain", "ip6-localhost") \
        or name.startswith("127.")


def mail_host(mailname: Path = Path("/etc/mailname")) -> str:
    """The host name mail comes from: the configured one (/etc/mailname, Debian's mail
    name), else the FQDN, else the host name when the FQDN is a localhost name."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        configured = mailname.read_text(encoding="utf-8").strip()
        if configured and not _is_localhost(configured):
            return configured
    name = fqdn()
    return socket.gethostname() if _is_localhost(name) else name


def default_sender() -> str:
    """``From:`` when mail.from is empty: systraq@ the configured or real host name."""
    return f"systraq@{mail_host()}"


def preload(settings: Settings) -> None:
    """Import everything mailing uses now, by building and parsing a message, before a
    drop to an account that may not be able to read the Python installation (a per-user
    interpreter under /root)."""
    import smtplib  # noqa: F401
    import ssl  # noqa: F401
    from email import policy
    from email.parser import BytesParser

    fqdn()
    sample = build_message(settings, "systraq", "→ preload\n").as_bytes()
    BytesParser(policy=policy.default).parsebytes(sample)


def build_message(settings: Settings, subject: str, body: str) -> EmailMessage:
    """A UTF-8 text/plain message with Date, Message-ID and the configured addresses."""
    from email import policy
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    message = EmailMessage(policy=policy.default)
    message["From"] = settings.mail.sender or default_sender()
    message["To"] = ", ".join(settings.mail.to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(idstring="systraq", domain=fqdn())
    message["Auto-Submitted"] = "auto-generated"
    message["X-Mailer"] = f"systraq {__version__}"
    # Quoted-printable: 7-bit clean whatever the server supports (reports hold "→").
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    return message


# --- transports --------------------------------------------------------------------------

class SendmailTransport:
    """Pipe each message to the configured command line (``/usr/sbin/sendmail -t -oi``)."""

    def __init__(self, settings: Settings) -> None:
        self.command = shlex.split(settings.mail.sendmail)
        self.timeout = settings.mail.timeout or None
        if not self.command:
            raise TransportFailed("mail.sendmail is empty")

    def send(self, message: EmailMessage) -> None:
        try:
            done = subprocess.run(self.command, input=message.as_bytes(), capture_output=True,
                                  timeout=self.timeout, check=False)
        except FileNotFoundError:
            raise TransportFailed(f"{self.command[0]}: not found") from None
        except subprocess.TimeoutExpired:
            raise TransportFailed(f"{self.command[0]} did not finish within "
                                  f"{self.timeout:g}s") from None
        except OSError as err:
            raise TransportFailed(f"{self.command[0]}: {err.strerror or err}") from None
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            detail = f": {said[0]}" if said else ""
            raise TransportFailed(f"{self.command[0]} exited with status "
                                  f"{done.returncode}{detail}")

    def close(self) -> None:
        pass


class SMTPTransport:
    """One SMTP connection for the whole run, opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self.mail = settings.mail
        self.connection: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"{self.mail.smtp_host}:{self.mail.smtp_port}"

    def _password(self) -> str:
        path = Path(self.mail.password_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            return lines[0] if lines else ""
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
            raise TransportFailed(f"mail.password_file {path}: {reason}") from None

    def _connect(self) -> smtplib.SMTP:
        import smtplib
        import ssl

        timeout = self.mail.timeout or socket.getdefaulttimeout()
        connection = smtplib.SMTP(self.mail.smtp_host, self.mail.smtp_port, timeout=timeout)
        try:
            if self.mail.starttls:
                connection.starttls(context=ssl.create_default_context())
            if self.mail.username:
                password = self._password() if self.mail.password_file else ""
                connection.login(self.mail.username, password)
        except BaseException:
            with contextlib.suppress(Exception):
                connection.close()
            raise
        return connection

    def send(self, message: EmailMessage) -> None:
        import smtplib

        try:
            if self.connection is None:
                self.connection = self._connect()
            if "From" not in message:
                message["From"] = default_sender()
            self.connection.send_message(message)
        except smtplib.SMTPResponseException as err:
            reply = err.smtp_error.decode(errors="replace") if isinstance(
                err.smtp_error, bytes) else str(err.smtp_error)
            raise TransportFailed(f"SMTP server {self.where} said {err.smtp_code} "
                                  f"{reply}") from None
        except smtplib.SMTPRecipientsRefused as err:
            raise TransportFailed(f"SMTP server {self.where} refused every recipient: "
                                  f"{', '.join(err.recipients)}") from None
        except (smtplib.SMTPException, OSError) as err:
            self.close()
            reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
            raise TransportFailed(f"cannot send through SMTP server {self.where}: "
                                  f"{reason}") from None

    def close(self) -> None:
        import smtplib

        if self.connection is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self.connection.quit()
            self.connection = None


def transport_for(settings: Settings) -> SendmailTransport | SMTPTransport:
    if settings.mail.transport == "smtp":
        return SMTPTransport(settings)
    return SendmailTransport(settings)


# --- the spool ---------------------------------------------------------------------------

def _open_spool(settings: Settings) -> Path:
    directory = spool_dir(settings)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise DeliveryError(f"cannot create the mail spool: {err.strerror}", directory) \
            from None
    if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
        raise DeliveryError("mail spool not writable by this user", directory)
    return directory


def spooled(settings: Settings) -> list[Path]:
    """Spooled messages, oldest first (names start with the time they were spooled)."""
    directory = spool_dir(settings)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise DeliveryError(f"cannot read the mail spool: {err.strerror}", directory) \
            from None
    return [directory / n for n in sorted(names)
            if n.endswith(SPOOL_SUFFIX) and not n.startswith(".")]


def spool(settings: Settings, message: EmailMessage) -> Path:
    """Write a message to the spool atomically (temp file, fsync, rename); return its path."""
    directory = _open_spool(settings)
    name = f"{time.time_ns():020d}-{os.getpid()}{SPOOL_SUFFIX}"
    try:
        write_atomic(directory / name, message.as_bytes(), mode=0o600)
    except OSError as err:
        raise DeliveryError(f"cannot write to the mail spool: {err.strerror}; the report was "
                            "not delivered", directory) from None
    return directory / name


def _read_spooled(path: Path) -> EmailMessage:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DeliveryError(f"cannot read spooled message: {err.strerror}", path) from None
    from email import policy
    from email.parser import BytesParser

    return BytesParser(policy=policy.default).parsebytes(data)  # type: ignore[return-value]


def _flush(settings: Settings, transport: SendmailTransport | SMTPTransport,
           outcome: DeliveryOutcome) -> None:
    """Send spooled messages oldest first; stop at the first failure (order is kept)."""
    for path in spooled(settings):
        try:
            transport.send(_read_spooled(path))
        except TransportFailed as err:
            outcome.error = str(err)
            return
        try:
            path.unlink()
        except OSError as err:
            raise DeliveryError(f"sent, but cannot remove it from the spool: {err.strerror} "
                                "(it would be sent again)", path) from None
        outcome.sent += 1


def _lock_timeout(settings: Settings) -> float:
    return settings.snapshot.lock_timeout + settings.mail.timeout


def flush_spool(settings: Settings) -> DeliveryOutcome:
    """Send what waits in the spool, if anything; no connection when the spool is empty."""
    outcome = DeliveryOutcome()
    if not spooled(settings):
        return outcome
    directory = _open_spool(settings)
    with locked(directory / ".lock", _lock_timeout(settings)):
        try:
            transport = transport_for(settings)
        except TransportFailed as err:
            outcome.error = str(err)
        else:
            try:
                _flush(settings, transport, outcome)
            finally:
                transport.close()
        outcome.pending = len(spooled(settings))
    return outcome


def deliver(settings: Settings, subject: str, body: str) -> DeliveryOutcome:
    """Send spooled messages, then this one; spool it if the mail system fails.

    Returns with ``outcome.ok`` False when something waits in the spool (the new message
    is then safely spooled: the caller may consider its report delivered). Raises
    ``DeliveryError`` only when the message could not even be spooled.
    """
    message = build_message(settings, subject, body)
    directory = _open_spool(settings)
    outcome = DeliveryOutcome()
    with locked(directory / ".lock", _lock_timeout(settings)):
        try:
            transport = transport_for(settings)
        except TransportFailed as err:
            outcome.error = str(err)
            transport = None
        try:
            if transport is not None:
                _flush(settings, transport, outcome)
            if transport is not None and outcome.ok:
                try:
                    transport.send(message)
                    outcome.sent += 1
                except TransportFailed as err:
                    outcome.error = str(err)
            if not outcome.ok:
                outcome.spooled = spool(settings, message)
        finally:
            if transport is not None:
                transport.close()
        outcome.pending = len(spooled(settings))
    return outcome
