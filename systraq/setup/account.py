"""The unprivileged account the pub snapshot and filetraq run as (``snapshot.pub_user``)."""

from __future__ import annotations

import pwd
from pathlib import Path

from systraq.errors import SystraqError
from systraq.setup.host import Host

GECOS = "systraq file integrity monitor"


def find_account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def adduser_command(name: str, home: Path) -> list[str]:
    """A system account and its own group, no password, no login shell, home = STATE.

    ``--no-create-home``: init makes the state directory itself, with the owners and modes
    the state layout needs (adduser would give it to the account).
    """
    return ["adduser", "--system", "--group", "--home", str(home), "--no-create-home",
            "--shell", "/usr/sbin/nologin", "--gecos", GECOS, name]


def create_account(host: Host, name: str, home: Path) -> pwd.struct_passwd:
    host.run(adduser_command(name, home), f"creating the account {name}")
    account = find_account(name)
    if account is None:
        raise SystraqError(f"adduser said it created {name}, but the account does not exist")
    return account
