"""What a delivery did, as data: the CLI renders it, the jobs decide from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from systraq.errors import SystraqError


class DeliveryError(SystraqError):
    """A message could neither be delivered nor kept (spooled or set aside)."""


@dataclass(frozen=True)
class DeadLetter:
    """A message set aside for good: refused by the mail system, or undelivered too long."""

    path: Path  # where it is kept
    subject: str
    reason: str
    since: str  # when it was first handed over (RFC 2822 date), "" if unknown


@dataclass
class DeliveryOutcome:
    """What ``deliver`` or ``flush_spool`` did.

    ``sent``: messages the mail system accepted in this call (spooled ones included);
    ``spooled``: where the new message waits when it could not be sent now;
    ``pending``: messages left in the spool; ``error``: why sending failed ("" if it did
    not); ``dead``: messages set aside in this call (the next report tells of them);
    ``told``: earlier dead letters this call's message told of; ``kept_report``: where the
    full report is, when it was too large to mail and its summary went instead;
    ``problems``: a spool or file that was refused (never used, never sent).
    """

    sent: int = 0
    spooled: Path | None = None
    pending: int = 0
    error: str = ""
    dead: list[DeadLetter] = field(default_factory=list)
    told: list[DeadLetter] = field(default_factory=list)
    kept_report: Path | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing the administrator must hear about (the exit status says trouble if not)."""
        return not (self.error or self.dead or self.problems)

    def messages(self) -> list[str]:
        """One line for stderr per thing that went wrong."""
        lines = list(self.problems)
        for letter in self.dead:
            lines.append(f"mail not delivered and set aside, never retried: "
                         f"{letter.subject!r}: {letter.reason}; kept in {letter.path}; the "
                         "next report says so")
        if self.error:
            waiting = {0: "nothing waits", 1: "1 message waits"}.get(
                self.pending, f"{self.pending} messages wait")
            where = f" (newest: {self.spooled})" if self.spooled else ""
            lines.append(f"mail not delivered: {self.error}; {waiting} in the spool{where} "
                         "and will be sent by the next run that mails")
        return lines

    def to_wire(self) -> dict[str, object]:
        """Plain data, to cross the privilege boundary (see from_wire)."""
        def letter(dead: DeadLetter) -> list[str]:
            return [str(dead.path), dead.subject, dead.reason, dead.since]

        return {"sent": self.sent, "spooled": str(self.spooled) if self.spooled else None,
                "pending": self.pending, "error": self.error,
                "dead": [letter(d) for d in self.dead], "told": [letter(d) for d in self.told],
                "kept_report": str(self.kept_report) if self.kept_report else None,
                "problems": self.problems}

    @classmethod
    def from_wire(cls, data: dict) -> DeliveryOutcome:
        def letter(raw: list) -> DeadLetter:
            path, subject, reason, since = (str(v) for v in raw)
            return DeadLetter(Path(path), subject, reason, since)

        return cls(int(data["sent"]), Path(data["spooled"]) if data["spooled"] else None,
                   int(data["pending"]), str(data["error"]),
                   [letter(d) for d in data["dead"]], [letter(d) for d in data["told"]],
                   Path(data["kept_report"]) if data["kept_report"] else None,
                   [str(p) for p in data["problems"]])

    def describe(self) -> str:
        """The lines of ``messages`` as one text (empty when all went well)."""
        return "\n".join(self.messages())
