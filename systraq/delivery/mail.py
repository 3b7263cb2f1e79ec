"""The names ``systraq.delivery.mail`` offered before the package was split; import them
from ``systraq.delivery`` instead."""

from systraq.delivery import (
    DeadLetter,
    DeliveryError,
    DeliveryOutcome,
    build_message,
    deliver,
    flush_spool,
    spooled,
)
from systraq.delivery.transport import SendmailTransport, SMTPTransport, TransportFailed

__all__ = ["DeadLetter", "DeliveryError", "DeliveryOutcome", "SMTPTransport",
           "SendmailTransport", "TransportFailed", "build_message", "deliver", "flush_spool",
           "spooled"]
