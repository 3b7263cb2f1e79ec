"""Handing a message to the mail system: a sendmail command, or an SMTP server.

A failure is either temporary (``TransportFailed``: the server is down, a 4xx reply, a
login refused; the message waits in the spool and is tried again) or a refusal of this
message for good (``MessageRefused``: a 5xx reply to the message itself, as 552 message
too large; it is set aside as a dead letter, and never blocks later mail).
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from systraq.config import Settings
from systraq.delivery.message import default_sender

if TYPE_CHECKING:
    import smtplib
    from email.message import EmailMessage

# sendmail(8)'s exit statuses (sysexits.h) that refuse the message itself, for good:
# EX_DATAERR (the message), EX_NOUSER and EX_NOHOST (its addresses), EX_UNAVAILABLE (what
# sendmail answers to a message over its size limit). Others, EX_TEMPFAIL (75) first, are
# taken as temporary; a message failing longer than mail.dead_after is set aside too.
SENDMAIL_REFUSALS = {65: "EX_DATAERR", 67: "EX_NOUSER", 68: "EX_NOHOST",
                     69: "EX_UNAVAILABLE"}
# 530 "authentication required" is about the session and the settings, not the message.
_SESSION_CODES = {530}


class TransportFailed(Exception):
    """The mail system did not take a message now (it waits in the spool)."""


class MessageRefused(TransportFailed):
    """The mail system refused this message for good (it becomes a dead letter)."""


class Transport(Protocol):
    def send(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


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
            refusal = SENDMAIL_REFUSALS.get(done.returncode)
            name = f" ({refusal})" if refusal else ""
            failure = MessageRefused if refusal else TransportFailed
            raise failure(f"{self.command[0]} exited with status {done.returncode}{name}"
                          f"{detail}")

    def close(self) -> None:
        pass


def _reply(code: int, text: bytes | str) -> str:
    said = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(said.split())}"


def _permanent(code: int) -> bool:
    return 500 <= code < 600 and code not in _SESSION_CODES


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
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as err:
            # A reply to MAIL FROM (where SIZE is checked) or to the message data.
            said = f"SMTP server {self.where} said {_reply(err.smtp_code, err.smtp_error)}"
            raise (MessageRefused if _permanent(err.smtp_code) else TransportFailed)(
                said) from None
        except smtplib.SMTPResponseException as err:
            raise TransportFailed(f"SMTP server {self.where} said "
                                  f"{_reply(err.smtp_code, err.smtp_error)}") from None
        except smtplib.SMTPRecipientsRefused as err:
            replies = [_reply(code, text) for code, text in err.recipients.values()]
            said = (f"SMTP server {self.where} refused every recipient: "
                    f"{', '.join(err.recipients)} ({'; '.join(replies)})")
            codes = [code for code, _ in err.recipients.values()]
            raise (MessageRefused if codes and all(map(_permanent, codes)) else
                   TransportFailed)(said) from None
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


def transport_for(settings: Settings) -> Transport:
    """The configured transport; TransportFailed when it cannot be set up."""
    if settings.mail.transport == "smtp":
        return SMTPTransport(settings)
    return SendmailTransport(settings)
