"""The MIME message a report travels in: plain text, or text and HTML as alternatives."""

from __future__ import annotations

import contextlib
import functools
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from systraq import __version__
from systraq.config import Settings

if TYPE_CHECKING:
    from email.message import EmailMessage

_HEADER_BYTES = 65536  # headers of a stored message are looked for in this much of it

# email is imported where used: most runs mail nothing, and a cron job that starts every
# half hour should not pay for it.


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
    sample = build_message(settings, "systraq", "→ preload\n", "<p>→</p>").as_bytes()
    BytesParser(policy=policy.default).parsebytes(sample)


def build_message(settings: Settings, subject: str, text: str, html: str | None = None,
                  *, when: float | None = None) -> EmailMessage:
    """A UTF-8 message with Date, Message-ID and the configured addresses.

    ``text`` alone: text/plain. With ``html``: multipart/alternative, the text first (what
    a plain reader shows) and the HTML second (what a graphical one prefers). ``when``:
    the Date (seconds since the epoch; now if None).
    """
    from email import policy
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    message = EmailMessage(policy=policy.default)
    message["From"] = settings.mail.sender or default_sender()
    message["To"] = ", ".join(settings.mail.to)
    message["Subject"] = subject
    message["Date"] = formatdate(when, localtime=True)
    message["Message-ID"] = make_msgid(idstring="systraq", domain=fqdn())
    message["Auto-Submitted"] = "auto-generated"
    message["X-Mailer"] = f"systraq {__version__}"
    # Quoted-printable: 7-bit clean whatever the server supports (reports hold "→").
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    if html is not None:
        message.add_alternative(html, subtype="html", charset="utf-8",
                                cte="quoted-printable")
    return message


def parse_message(data: bytes) -> EmailMessage:
    """A message as spooled (bytes) back into an EmailMessage for the transports."""
    from email import policy
    from email.parser import BytesParser

    return BytesParser(policy=policy.default).parsebytes(data)  # type: ignore[return-value]


def header_of(data: bytes, name: str) -> str:
    """One header of a stored message ("" if absent), read from its header block only."""
    from email import policy
    from email.parser import BytesHeaderParser

    end = data.find(b"\n\n", 0, _HEADER_BYTES)
    head = data[:end if end >= 0 else _HEADER_BYTES]
    try:
        value = BytesHeaderParser(policy=policy.default).parsebytes(head).get(name)
        return str(value) if value is not None else ""
    except Exception:  # a malformed header of a stored message reads as absent
        return ""
