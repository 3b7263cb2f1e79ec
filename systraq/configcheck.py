"""What a setting's value may be, beyond its type: ranges, names, addresses, command lines.

Checked when systraq.conf is loaded, so that a value which could only fail later (a mail
address at mail time, an endless lock wait, an account that is root) stops every command
at once with the file and line, before any state is touched.
"""

from __future__ import annotations

import math
import pwd
import re
import shlex
from collections.abc import Callable

# Inclusive bounds of numeric settings; a value outside is a typo or a stall.
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("snapshot", "lock_timeout"): (0, 86400),  # seconds: at most a day
    ("snapshot", "full_rehash_hours"): (0, 87600),  # ten years
    ("snapshot", "workers"): (0, 1024),
    ("mail", "smtp_port"): (1, 65535),
    ("mail", "timeout"): (0.1, 3600),  # seconds: 0 would wait for ever, as would a year
    ("mail", "max_size"): (0, 1 << 30),  # bytes; 0: no cap
    ("mail", "dead_after"): (0, 87600),  # hours; 0: retried for ever
    ("filetraq", "max_size"): (0, 1 << 30),  # content is held in memory and diffed
    ("filetraq", "prune_days"): (0, 36500),
    ("filetraq", "dir_mode"): (0o700, 0o777),
    ("filetraq", "store_budget"): (0, 1 << 50),  # bytes on disk; 0: no budget
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Account names as useradd(8) takes them (with its usual 32-character limit).
_ACCOUNT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?")
_HOST = re.compile(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:]+:[0-9A-Fa-f:.]*")


def check(section: str, key: str, value: object) -> None:
    """Raise ValueError saying what is wrong with ``section.key = value``."""
    name = f"{section}.{key}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(name, (section, key), value)
        return
    for text in value if isinstance(value, tuple) else (value,):
        if isinstance(text, str):
            found = _CONTROL.search(text)
            if found:
                raise ValueError(f"{name} holds a control character "
                                 f"({found.group().encode('unicode_escape').decode()})")
    rule = _RULES.get((section, key))
    if rule is not None:
        rule(name, value)


def _check_number(name: str, where: tuple[str, str], value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (found {value})")
    low, high = RANGES.get(where, (0, math.inf))
    if not low <= value <= high:
        def shown(number: float) -> str:
            if where == ("filetraq", "dir_mode"):
                return f"0o{int(number):o}"
            small = float(number).is_integer() and abs(number) < 1e15
            return str(int(number)) if small else f"{number:g}"

        raise ValueError(f"{name} must be from {shown(low)} to {shown(high)} "
                         f"(found {shown(value)})")
    if where == ("filetraq", "dir_mode") and int(value) & 0o700 != 0o700:
        raise ValueError(f"{name} must give its owner read, write and search (0o7xx)")


def _pub_user(name: str, value: object) -> None:
    assert isinstance(value, str)
    if not _ACCOUNT.fullmatch(value):
        raise ValueError(f"{name} is not an account name: {value!r}")
    try:
        account = pwd.getpwnam(value)
    except KeyError:
        account = None  # not there yet (installed later): the snapshot falls back to nobody
    if value == "root" or (account is not None and account.pw_uid == 0):
        raise ValueError(f"{name} must be an unprivileged account, not {value!r} (uid 0): "
                         "the pub snapshot runs as this account so that it reads only what "
                         "everyone may read")


def mail_address(name: str, value: str) -> None:
    """One mail address (``user``, ``user@host`` or ``Name <user@host>``), fit for a header."""
    from email.headerregistry import HeaderRegistry
    from email.utils import getaddresses

    pairs = getaddresses([value])
    if len(pairs) > 1:
        raise ValueError(f"{name}: {value!r} is more than one address (one per list item)")
    if not pairs or not pairs[0][1]:
        raise ValueError(f"{name}: {value!r} is not a mail address")
    address = pairs[0][1]
    if address.startswith("-") or any(ch.isspace() for ch in address):
        raise ValueError(f"{name}: {value!r} is not a mail address")
    try:  # as the mail's header will be made: the parser can fail on input like "a@"
        header = HeaderRegistry()("To", value)
    except Exception:
        raise ValueError(f"{name}: {value!r} is not a mail address") from None
    # A local recipient ("root") has no domain: the only flaw a mail system accepts.
    flaws = [str(d) for d in header.defects if "with no domain" not in str(d)]
    if flaws or len(header.addresses) != 1:  # type: ignore[attr-defined]
        flaw = flaws[0] if flaws else ""
        if flaw.count(")") > flaw.count("("):  # some of email's defect texts end in ")"
            flaw = flaw.rstrip(")")
        reason = f" ({flaw})" if flaw else ""
        raise ValueError(f"{name}: {value!r} is not a mail address{reason}")


def _addresses(name: str, value: object) -> None:
    assert isinstance(value, tuple)
    if not value:
        raise ValueError(f"{name} must name at least one recipient")
    for address in value:
        mail_address(name, address)


def _sender(name: str, value: object) -> None:
    assert isinstance(value, str)
    if value:
        mail_address(name, value)


def _sendmail(name: str, value: object) -> None:
    assert isinstance(value, str)
    try:
        words = shlex.split(value)
    except ValueError as err:
        raise ValueError(f"{name} is not a command line: {err}") from None
    if not words:
        raise ValueError(f"{name} is empty: give the mail program and its options")
    if not words[0].startswith("/"):
        raise ValueError(f"{name} must start with the program's absolute path "
                         f"(cron's PATH is short), not {words[0]!r}")


def _smtp_host(name: str, value: object) -> None:
    assert isinstance(value, str)
    if not _HOST.fullmatch(value):
        raise ValueError(f"{name} is not a host name or address: {value!r}")


def _absolute_file(name: str, value: object) -> None:
    assert isinstance(value, str)
    if value and not value.startswith("/"):
        raise ValueError(f"{name} must be an absolute path, not {value!r}")


_RULES: dict[tuple[str, str], Callable[[str, object], None]] = {
    ("snapshot", "pub_user"): _pub_user,
    ("snapshot", "passwd"): _absolute_file,
    ("mail", "to"): _addresses,
    ("mail", "from"): _sender,
    ("mail", "sendmail"): _sendmail,
    ("mail", "smtp_host"): _smtp_host,
    ("mail", "password_file"): _absolute_file,
}
