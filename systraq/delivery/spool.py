"""The mail spool: messages the mail system did not take yet, oldest first.

One private directory per account (``Layout.spool``; see ``private`` for the checks that
keep another account's files out). A message is ``<ns since the epoch, 20 digits>-<pid>-
<random>.eml``: names sort by the time the message was spooled, which is also its age for
``mail.dead_after``. A name of that shape that is not a 0600 file of ours is reported and
left alone: never sent, never removed.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from systraq.config import Settings
from systraq.delivery.outcome import DeliveryError
from systraq.delivery.private import NotOurs, PrivateDir

SUFFIX = ".eml"
# The random part is absent from names spooled by earlier versions.
_NAME = re.compile(r"(\d{20})-(\d+)(?:-[0-9a-f]+)?\.eml")


def message_name(now_ns: int) -> str:
    """A new spool name: sorts by time, unique across processes and within one."""
    return f"{now_ns:020d}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"


def name_time_ns(name: str) -> int | None:
    """When a message of this name was spooled (None: not a spool name)."""
    match = _NAME.fullmatch(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Spooled:
    """A message that waits in the spool."""

    name: str
    path: Path
    since_ns: int  # when it was spooled


class Spool:
    """One account's spool, open and checked. Hold its ``lock`` while changing it."""

    def __init__(self, directory: PrivateDir) -> None:
        self.dir = directory

    @classmethod
    def open(cls, settings: Settings, *, create: bool = True) -> Spool | None:
        """The spool of this account (None if it does not exist and ``create`` is off);
        DeliveryError when it is refused."""
        directory = PrivateDir.open(settings.layout.spool(), "mail spool", create=create)
        return cls(directory) if directory is not None else None

    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def lock_path(self) -> Path:
        """The lock, inside the spool: only this account can open it."""
        return self.dir.path / ".lock"

    def close(self) -> None:
        self.dir.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def waiting(self, problems: list[str] | None = None) -> list[Spooled]:
        """Messages of ours, oldest first; each message-like name that is not ours is told
        in ``problems`` (and left alone)."""
        found = []
        for name in self.dir.names():
            if name.startswith(".") or not name.endswith(SUFFIX):
                continue
            since = name_time_ns(name)
            try:
                self.dir.check(name)
            except FileNotFoundError:
                continue
            except NotOurs as err:
                if problems is not None:
                    problems.append(f"{self.path / name}: in the mail spool but {err}, not a "
                                    f"0600 file of uid {os.geteuid()}: not sent, left in "
                                    "place (check it, then remove it)")
                continue
            if since is None:
                continue  # ours, yet not a name this code writes: not a message to send
            found.append(Spooled(name, self.path / name, since))
        return found

    def read(self, message: Spooled) -> tuple[bytes, os.stat_result]:
        """The bytes of a spooled message; NotOurs if it is no longer ours."""
        try:
            return self.dir.read(message.name)
        except OSError as err:
            raise DeliveryError(f"cannot read spooled message: {os.strerror(err.errno or 0)}",
                                message.path) from None

    def add(self, data: bytes, now_ns: int) -> Path:
        """Spool a message atomically (0600); return its path."""
        try:
            return self.dir.write(message_name(now_ns), data)
        except DeliveryError as err:
            raise DeliveryError(f"{err.message}; the report was not delivered",
                                err.path) from None

    def remove(self, message: Spooled, seen: os.stat_result) -> None:
        """Remove a message once it was sent (or set aside)."""
        try:
            self.dir.remove(message.name, seen)
        except FileNotFoundError:
            return
        except (OSError, NotOurs) as err:
            reason = os.strerror(err.errno or 0) if isinstance(err, OSError) else str(err)
            raise DeliveryError(f"sent, but cannot remove it from the spool: {reason} (it "
                                "would be sent again)", message.path) from None


def spooled(settings: Settings) -> list[Path]:
    """Paths of the messages waiting in this account's spool, oldest first."""
    spool = Spool.open(settings, create=False)
    if spool is None:
        return []
    with spool:
        return [message.path for message in spool.waiting()]
