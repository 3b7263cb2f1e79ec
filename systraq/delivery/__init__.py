"""Delivery of reports by mail: the message, the transports, the spool, dead letters.

Modules: ``message`` (the MIME message), ``transport`` (sendmail, SMTP), ``spool``
(messages waiting), ``deadletter`` (messages set aside for good, and the notice the next
report carries), ``oversize`` (reports too large to mail), ``private`` (the checks every
directory of theirs passes), ``deliver`` (the API: ``deliver``, ``flush_spool``).
"""

from systraq.delivery.deliver import deliver, flush_spool
from systraq.delivery.message import build_message
from systraq.delivery.outcome import DeadLetter, DeliveryError, DeliveryOutcome
from systraq.delivery.spool import spooled

__all__ = ["DeadLetter", "DeliveryError", "DeliveryOutcome", "build_message", "deliver",
           "flush_spool", "spooled"]
