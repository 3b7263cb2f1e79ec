"""The Debian package, for real: built with make deb, installed with apt into a Debian 12
root, set up with systraq init, its cron jobs run as cron runs them, purged.

Each test gets a throwaway root (tests/chroot.py): an overlay on a debootstrap cached in
/var/cache/systraq-test, built on the first run (about a minute, from the Debian mirror
apt uses); later runs take about a minute for the whole module. Nothing is
installed, and no account created, on the machine running the tests.
Set SYSTRAQ_TRANSCRIPTS=DIR to keep a transcript of every command and its output.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import chroot
from .chroot import FQDN, Chroot
from .conftest import REPO

pytestmark = pytest.mark.chroot

CRON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOT_SET_UP = "systraq is not set up yet: run systraq init\n"
# What dpkg, apt and the test itself keep to themselves while packages come and go.
BOOKKEEPING = ("/dev", "/run", "/tmp", "/var/tmp", "/root", "/var/lib/dpkg", "/var/lib/apt",
               "/var/cache", "/var/log", "/var/mail", "/var/spool/exim4")
# adduser's backups of the account databases, made when the systraq account is created.
ACCOUNT_BACKUPS = {"/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-"}


@pytest.fixture(scope="module")
def deb() -> Path:
    why = chroot.usable()
    if why:
        pytest.skip(why)
    done = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "deb"],
                          capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")})
    assert done.returncode == 0, done.stdout + done.stderr
    [package] = (REPO / "build").glob("systraq_*_all.deb")
    chroot.ensure_base()
    return package


@pytest.fixture
def root(request: pytest.FixtureRequest, deb: Path) -> Iterator[Chroot]:
    box = Chroot(request.node.name.removeprefix("test_")[:40])
    box.put(f"root/{deb.name}", deb.read_bytes())
    for debian in sorted(chroot.DEBS.glob("*.deb")):
        box.put(f"root/debs/{debian.name}", debian.read_bytes())
    # The mail system of the host the test pretends to be (the cache was built elsewhere).
    box.run(f"sed -i \"s/^dc_other_hostnames=.*/dc_other_hostnames='{FQDN}'/\" "
            "/etc/exim4/update-exim4.conf.conf && update-exim4.conf", quiet=True)
    try:
        yield box
    finally:
        keep = os.environ.get("SYSTRAQ_TRANSCRIPTS")
        if keep:
            box.write_transcript(Path(keep))
        box.remove()


def install(box: Chroot, deb: Path) -> str:
    return box.run(f"apt-get install -y -q --no-install-recommends /root/{deb.name}").output


def cron_round(box: Chroot) -> dict[str, tuple[int, str]]:
    """Run every job of /etc/cron.d/systraq once, in the file's order: what cron would mail.

    The daily status report is left out: it mails its overview every day by design, even
    when nothing changed, so it has no place in a round that must stay silent.
    """
    return {f"{user}: {command}": (step.returncode, step.output)
            for _, user, command in box.cron_jobs() if " daily" not in command
            for step in [box.run_cron_job(user, command, CRON_PATH)]}


def mails(box: Chroot) -> list[email.message.EmailMessage]:
    """Every message delivered on the host (root's mail lands in a local mailbox)."""
    text = box.run("cat /var/mail/* 2>/dev/null || true").output
    chunks = [c for c in re.split(r"^(?=From \S+ )", text, flags=re.MULTILINE) if c.strip()]
    return [email.message_from_string(c.split("\n", 1)[1], policy=email.policy.default)
            for c in chunks]


def listing(box: Chroot, *paths: str) -> str:
    return box.run(f"find {' '.join(paths)} -printf '%p %u:%g %m %s\\n' | sort",
                   quiet=True).output


def test_a_fresh_install_reports_only_changes_and_purge_leaves_nothing(root: Chroot,
                                                                       deb: Path) -> None:
    before = root.files(*BOOKKEEPING)
    said = install(root, deb)
    assert "run 'systraq init'" in said
    for job, (status, output) in cron_round(root).items():
        assert (status, output) == (0, NOT_SET_UP), job

    root.run("systraq init --dry-run")
    done = root.run("systraq init --yes").output
    assert "systraq is set up." in done
    assert f"from systraq@{FQDN}" in done

    for job, (status, output) in cron_round(root).items():
        assert (status, output) == (0, ""), job
    assert mails(root) == [], "nothing changed, nothing mailed"

    root.run("echo '10.0.0.9 intruder' >> /etc/hosts && chmod 4755 /usr/bin/nohup && "
             "printf '#!/bin/sh\\n' > /usr/local/bin/backdoor")
    results = cron_round(root)
    filetraq = results["systraq: systraq --scheduled-by cron filetraq"]
    assert filetraq[0] == 1 and "Changes in /etc/hosts" in filetraq[1]
    assert "+10.0.0.9 intruder" in filetraq[1]
    [report] = mails(root)
    assert report["From"] == f"systraq@{FQDN}"
    assert report["Subject"].startswith("[Systraq] web1")
    body = report.get_content()
    for path in ("/etc/hosts", "/usr/bin/nohup", "/usr/local/bin/backdoor"):
        assert path in body, path
    assert "perms 0755 \u2192 4755" in body
    again = cron_round(root)
    assert all(output == "" for _, output in again.values()), "each change is told once"

    assert "nothing to change" in root.run("systraq init --yes").output

    root.run("apt-get purge -y -q systraq && rm /usr/local/bin/backdoor")
    left = root.files(*BOOKKEEPING) - before - ACCOUNT_BACKUPS
    assert left == set(), sorted(left)
    assert root.run("getent passwd systraq", check=False).returncode == 0, \
        "the account stays, as Debian keeps system accounts"


def debian_systraq_has_run(box: Chroot) -> None:
    """Debian's systraq and filetraq, set up as their documentation says, their jobs run."""
    box.run("apt-get install -y -q --no-install-recommends /root/debs/filetraq_*.deb "
            "/root/debs/systraq_*.deb")
    box.run("cp /usr/share/doc/systraq/examples/snapshot_* /etc/systraq/ && "
            "rm /etc/systraq/systraq_is_unconfigured && "
            "echo /etc/motd >> /etc/systraq/filetraq.tail.conf && "
            # lines Debian's st_snapshot read otherwise, and a list left empty
            "printf '/etc/my motd\\n' >> /etc/systraq/snapshot_pub.list && "
            "printf '\\n' >> /etc/systraq/snapshot_pub.homelist && "
            "printf '# none\\n' > /etc/systraq/snapshot_root.homelist && "
            "su -s /bin/sh -c 'make -s -C /etc/systraq' debian-systraq 2>/dev/null")
    for _, user, command in box.cron_jobs():
        if "st_snapshot" in command or "filetraq /etc" in command:
            box.run_cron_job(user, command, "/usr/sbin:/usr/bin:/sbin:/bin", check=True)
    box.run("echo '10.0.0.8 old' >> /etc/hosts")
    for _, user, command in box.cron_jobs():
        if "filetraq /etc" in command:
            box.run_cron_job(user, command, "/usr/sbin:/usr/bin:/sbin:/bin", check=True)


def test_migration_from_debian_systraq_and_filetraq(root: Chroot, deb: Path) -> None:
    debian_systraq_has_run(root)
    lists = root.run("cat /etc/systraq/snapshot_*", quiet=True).output
    store = listing(root, "/var/lib/systraq/filetraq/etc/hosts")
    assert "/orig." in store, "Debian's filetraq kept a dated copy"

    said = install(root, deb)
    assert "Removing obsolete conffile /etc/apt/apt.conf.d/20systraq" in said
    assert "Removing filetraq" in said
    assert root.read("/etc/cron.d/systraq").startswith("# /etc/cron.d/systraq: systraq's jobs")
    for job, (status, output) in cron_round(root).items():
        assert (status, output) == (0, NOT_SET_UP), job
    # apt runs its hooks after this: Debian's is gone, systraq's works before init too.
    root.run(f"apt-get install -y -q --reinstall /root/{deb.name}")

    state = listing(root, "/var/lib/systraq", "/etc/systraq")
    plan = root.run("systraq init --dry-run").output
    assert listing(root, "/var/lib/systraq", "/etc/systraq") == state, "dry run"
    assert ("taking over from Debian's systraq 20201231-1 (upgraded in place) and Debian's "
            "filetraq 0.3+nmu1 (removed, configuration kept)") in plan
    for expected in ("/etc/systraq/snapshot_pub.list:", "is one path for systraq",
                     "/etc/systraq/snapshot_pub.homelist:", "every file in every home",
                     "/etc/systraq/snapshot_root.homelist lists nothing",
                     "archive Debian's snapshot_pub.stat, snapshot_root.stat",
                     "hand the backup store /var/lib/systraq/filetraq",
                     "hand /var/lib/systraq/.forward to systraq",
                     "drop systraq's own state files from /etc/systraq/filetraq.tail.conf"):
        assert expected in plan, expected

    done = root.run("systraq init --yes").output
    assert "systraq is set up." in done
    assert root.run("cat /etc/systraq/snapshot_*", quiet=True).output == lists
    assert listing(root, "/var/lib/systraq/filetraq/etc/hosts") == \
        store.replace("debian-systraq:debian-systraq", "systraq:systraq")
    assert root.run("find /var/lib/systraq/filetraq ! -user systraq", quiet=True).output == ""
    assert root.run("stat -c %U /var/lib/systraq/.forward", quiet=True).output == "systraq\n"
    archived = root.run("ls /var/lib/systraq/archive/debian-systraq", quiet=True).output
    assert archived.split() == ["filetraq.main.conf", "snapshot_pub.stat",
                                "snapshot_root.stat"]
    tail = root.read("/etc/systraq/filetraq.tail.conf")
    assert "/etc/motd" in tail and "/var/lib/systraq" not in tail

    for job, (status, output) in cron_round(root).items():
        assert (status, output) == (0, ""), f"{job}: the first run after migration is quiet"
    assert mails(root) == []

    root.run("echo '10.0.0.9 intruder' >> /etc/hosts && echo 'umask 000' >> /etc/profile")
    results = cron_round(root)
    filetraq = results["systraq: systraq --scheduled-by cron filetraq"][1]
    assert "+10.0.0.9 intruder" in filetraq and "+umask 000" in filetraq
    [report] = mails(root)
    assert "/etc/profile" in report.get_content()
    assert "/etc/hosts" not in report.get_content(), "not in Debian's lists, kept as they were"

    root.run("apt-get purge -y -q systraq")
    for gone in ("/var/lib/systraq", "/etc/systraq", "/etc/cron.d/systraq",
                 "/etc/apt/apt.conf.d/99systraq", "/usr/lib/systraq", "/usr/bin/systraq",
                 "/lib/systemd/system/systraq-diff.timer"):
        assert not root.exists(gone), gone


def test_lintian_finds_no_errors(deb: Path) -> None:
    done = subprocess.run(["lintian", "--no-cfg", str(deb)], capture_output=True, text=True,
                          timeout=300)
    errors = [line for line in done.stdout.splitlines() if line.startswith("E:")]
    assert errors == [], done.stdout
