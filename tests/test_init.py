"""systraq init as an administrator meets it, and the scheduled jobs that wait for it.

The host outside the workspace (the cron file, the apt hooks, dpkg's database) is a scratch
directory given as ``Host(root=...)``; the pub account is ``nobody``, so no account is
created on the machine that runs the tests. The real thing, in a Debian 12 root with the
package and a real account, is in test_package.py.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from systraq.config import load_settings
from systraq.errors import SystraqError
from systraq.layout import Layout
from systraq.setup import NOT_SET_UP, Marker, format_marker, read_marker
from systraq.setup.host import Host
from systraq.setup.init import InitOptions, carry_out, make_plan, with_setting
from systraq.setup.migrate import meaning_changes
from systraq.setup.ownership import state_dirs
from systraq.setup.shipped import find_shipped

from .conftest import REPO, Workspace, entries_of, needs_root

STRANGER = 54321  # an account the test makes up: Debian's debian-systraq, say


@pytest.fixture
def host() -> Iterator[Host]:
    root = Path(tempfile.mkdtemp(prefix="systraq-host-", dir="/tmp"))
    for directory in ("etc/cron.d", "etc/apt/apt.conf.d"):
        (root / directory).mkdir(parents=True)
    try:
        yield Host(root)
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def configure(ws: Workspace, extra: str = "") -> None:
    """Lists that watch the workspace tree, and the pub scan as nobody."""
    ws.write_list("pub", str(ws.tree))
    ws.write_list("root", str(ws.tree / "secret"))
    ws.write_list("pub", ".profile", kind="homelist")
    ws.write_list("root", ".netrc", kind="homelist")
    ws.write_config(f'[snapshot]\npub_user = "nobody"\n{extra}')
    (ws.tree / "motd").write_text("hello\n")
    (ws.tree / "secret").write_text("s3cret\n")
    (ws.tree / "secret").chmod(0o600)


def layout_of(ws: Workspace) -> Layout:
    return load_settings(ws.config, ws.state).layout


def init(ws: Workspace, host: Host, **options) -> list[str]:
    settings = load_settings(ws.config, ws.state)
    plan = make_plan(settings, InitOptions(**options), host)
    return [done.said or done.says for done in carry_out(plan)]


def tree_state(*roots: Path) -> dict[str, tuple[int, int, int, bytes]]:
    state = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            st = path.lstat()
            data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
            state[str(path)] = (st.st_mode, st.st_uid, st.st_gid, data)
    return state


# --- scheduled jobs before and after init ------------------------------------------------

def test_scheduled_jobs_say_in_one_line_that_init_has_not_run(ws: Workspace) -> None:
    ws.write_list("pub", str(ws.tree))
    for argv in (["snapshot", "--mode", "pub"], ["diff", "--mail"], ["filetraq"],
                 ["filetraq", "--prune"]):
        done = ws.run("--scheduled-by", "cron", *argv)
        assert (done.returncode, done.stdout, done.stderr) == (0, NOT_SET_UP + "\n", ""), argv
    assert not any(ws.state.iterdir()), "nothing was written before init"


def test_jobs_of_the_scheduler_init_did_not_choose_keep_quiet(ws: Workspace) -> None:
    ws.write_list("pub", str(ws.tree))
    (ws.state / "initialized").write_text(format_marker(Marker(scheduler="timers")))
    quiet = ws.run("--scheduled-by", "cron", "snapshot")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    snapshot = layout_of(ws).snapshot("pub")
    assert not snapshot.exists()
    runs = ws.run("--scheduled-by", "timers", "snapshot")
    assert runs.returncode == 0, runs.stderr
    assert entries_of(snapshot)


def test_commands_run_by_hand_do_not_wait_for_init(ws: Workspace) -> None:
    ws.write_list("pub", str(ws.tree))
    assert ws.run("snapshot").returncode == 0
    assert layout_of(ws).snapshot("pub").exists()


def test_an_unreadable_marker_lets_the_jobs_run(ws: Workspace) -> None:
    (ws.state / "initialized").write_text("not = [toml")
    assert read_marker(ws.state / "initialized") == Marker(scheduler="cron")


# --- a fresh host ------------------------------------------------------------------------

def test_dry_run_shows_the_plan_and_changes_nothing(ws: Workspace) -> None:
    configure(ws)
    before = tree_state(ws.config, ws.state)
    done = ws.run("init", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "systraq init would do" in done.stdout
    assert "take the first snapshots (pub as nobody, root as root)" in done.stdout
    assert "what comes next:" in done.stdout
    assert tree_state(ws.config, ws.state) == before


def test_init_without_a_terminal_or_yes_changes_nothing(ws: Workspace) -> None:
    configure(ws)
    before = tree_state(ws.config, ws.state)
    done = ws.run("init", input="y\n")
    assert done.returncode == 2
    assert "systraq: not confirmed: run systraq init --yes" in done.stderr
    assert tree_state(ws.config, ws.state) == before


def test_init_sets_the_host_up_and_a_second_run_changes_nothing(ws: Workspace,
                                                                 host: Host) -> None:
    needs_root()
    configure(ws)
    said = init(ws, host)
    assert any(s.startswith("snapshots taken (pub: ") for s in said), said
    assert any(s.startswith("filetraq: ") and "first backups" in s for s in said), said
    layout = layout_of(ws)
    owners = {str(p.relative_to(ws.root)): (p.stat().st_uid, stat.S_IMODE(p.stat().st_mode))
              for p in (ws.state, layout.snapshot("pub").parent, layout.snapshot("root").parent,
                        layout.store)}
    assert owners == {"state": (0, 0o755), "state/pub": (65534, 0o755),
                      "state/root": (0, 0o700), "state/filetraq": (65534, 0o755)}
    assert read_marker(layout.setup_marker).scheduler == "cron"
    for kind in ("baseline", "reported"):
        for mode in ("pub", "root"):
            assert layout.copy(kind, mode, 0).exists(), (kind, mode)
    assert 'to = ["root"]' in (ws.config / "systraq.conf").read_text()
    assert (ws.config / "filetraq.conf").read_bytes().startswith(b"# filetraq.conf: generated")

    before = tree_state(ws.config, ws.state)
    plan = make_plan(load_settings(ws.config, ws.state), InitOptions(), host)
    assert plan.nothing_to_do, [s.says for s in plan.steps]
    assert tree_state(ws.config, ws.state) == before
    again = ws.run("init", "--yes")
    assert again.returncode == 0, again.stderr
    assert "nothing to change" in again.stdout


def test_after_init_the_jobs_are_silent_until_something_changes(ws: Workspace,
                                                               host: Host) -> None:
    needs_root()
    configure(ws)
    init(ws, host)
    jobs = (["snapshot", "--mode", "pub"], ["snapshot", "--mode", "root"], ["diff"],
            ["filetraq", str(ws.config / "tracked.conf")])
    (ws.config / "tracked.conf").write_text(f"{ws.tree / 'motd'}\n")
    ws.run("--scheduled-by", "cron", *jobs[3])  # the first backup of motd
    for argv in jobs:
        done = ws.run("--scheduled-by", "cron", *argv)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), argv
    (ws.tree / "motd").write_text("hello, intruder\n")
    for argv in jobs[:2]:
        assert ws.run("--scheduled-by", "cron", *argv).returncode == 0
    report = ws.run("--scheduled-by", "cron", "diff")
    assert report.returncode == 1 and f"{ws.tree / 'motd'}" in report.stdout
    assert "first" not in report.stdout.lower(), "compared with init's report, not a flood"
    content = ws.run("--scheduled-by", "cron", *jobs[3])
    assert content.returncode == 1 and "+hello, intruder" in content.stdout


def test_a_missing_account_stops_init_unless_it_may_create_one(ws: Workspace,
                                                               host: Host) -> None:
    configure(ws)
    ws.write_config('[snapshot]\npub_user = "systraq-test-absent"\n')
    plan = make_plan(load_settings(ws.config, ws.state), InitOptions(), host)
    assert any("does not exist: rerun with --create-user" in b for b in plan.blockers)
    with pytest.raises(SystraqError):
        list(carry_out(plan))
    plan = make_plan(load_settings(ws.config, ws.state), InitOptions(create_user=True), host)
    assert plan.steps[0].says.startswith("create the system account systraq-test-absent")
    assert not plan.blockers


def test_init_copies_the_shipped_examples_and_never_replaces_a_file(ws: Workspace,
                                                                    host: Host) -> None:
    ws.write_list("pub", "/etc/mine")
    settings = load_settings(ws.config, ws.state)  # the workspace's accounts, read first
    (ws.config / "systraq.conf").unlink()  # so that there is a shipped one to copy
    plan = make_plan(settings, InitOptions(), host)
    copy = next(s for s in plan.steps if s.says.startswith("copy the shipped"))
    copy.run()
    assert (ws.config / "snapshot_pub.list").read_text() == "/etc/mine\n"
    shipped = find_shipped()
    for name in ("snapshot_root.list", "snapshot_pub.homelist", "systraq.conf"):
        assert (ws.config / name).read_bytes() == shipped.example(name).read_bytes()


def test_mail_to_is_set_where_the_shipped_file_shows_it(tmp_path: Path) -> None:
    text = (REPO / "etc" / "systraq.conf").read_text()
    edited = with_setting(text, "mail", "to", '["ops@example.org"]')
    assert edited.count('to = ["ops@example.org"]') == 1
    assert edited.index('to = ["ops@example.org"]') > edited.index("[mail]")
    assert len(edited.splitlines()) == len(text.splitlines())
    assert with_setting("", "mail", "transport", '"smtp"') == '\n[mail]\ntransport = "smtp"\n'


def test_timers_need_the_units_and_a_running_systemd(ws: Workspace, host: Host) -> None:
    configure(ws)
    plan = make_plan(load_settings(ws.config, ws.state), InitOptions(scheduler="timers"), host)
    assert any("systemd units are not installed" in b for b in plan.blockers)


def test_timers_mail_through_smtp_once_a_server_answers(ws: Workspace, host: Host) -> None:
    """A host root where systemd runs and the units are installed (a scratch directory:
    systemd itself cannot run here); a real SMTP server on loopback."""
    from aiosmtpd.controller import Controller

    from .diffkit import free_port

    (host.path("run/systemd/system")).mkdir(parents=True)
    units = host.path("lib/systemd/system")
    units.mkdir(parents=True)
    for timer in (REPO / "systemd").glob("*.timer"):
        (units / timer.name).write_bytes(timer.read_bytes())
    port = free_port()
    configure(ws, f'[mail]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\n')
    closed = make_plan(load_settings(ws.config, ws.state), InitOptions(scheduler="timers"),
                       host)
    assert any(f"nothing answers at 127.0.0.1:{port}" in b for b in closed.blockers)
    server = Controller(object(), hostname="127.0.0.1", port=port)
    server.start()
    try:
        plan = make_plan(load_settings(ws.config, ws.state), InitOptions(scheduler="timers"),
                         host)
    finally:
        server.stop()
    assert not plan.blockers, plan.blockers
    says = [s.says for s in plan.steps]
    assert any(s.startswith('set mail.transport = "smtp"') for s in says), says
    assert any(s.startswith("enable and start the systemd timers") for s in says), says
    assert any("scheduled by timers" in s for s in says)


def test_state_dirs_follow_the_layout() -> None:
    settings = load_settings("/nonexistent", "/srv/state")
    dirs = {str(d.path): (d.owner, d.group, d.mode) for d in state_dirs(settings)}
    assert dirs == {"/srv/state": ("root", "root", 0o755),
                    "/srv/state/pub": ("pub", "pub", 0o755),
                    "/srv/state/root": ("root", "root", 0o700),
                    "/srv/state/filetraq": ("pub", "pub", 0o755)}


# --- taking over from Debian's systraq and filetraq --------------------------------------

DEBIAN_CRON = b"""# /etc/cron.d/systraq - cronjob for systraq jobs
0 * * * *    debian-systraq  command -v st_snapshot.hourly >/dev/null && st_snapshot.hourly
"""
DEBIAN_HOOK = (b"DPkg::Post-Invoke { \"test ! -f /etc/systraq/Makefile || ! command -v make "
               b">/dev/null || su -s /bin/sh -c 'make -s -C /etc/systraq' debian-systraq\"; };\n")


def debian_host(ws: Workspace, host: Host) -> None:
    """What Debian's systraq left: its snapshots, a store and .forward of another account,
    a tail with systraq's state files, its cron file (changed by the admin, with dpkg's new
    one beside it), its apt hook."""
    configure(ws)
    (ws.state / "snapshot_pub.stat").write_text(
        "# ownership and permissions of homedirs\ndrwxr-xr-x root root /root\n")
    (ws.state / "snapshot_root.stat").write_text("# remainder of file built from x\n")
    (ws.state / "systraq.sums").write_text(f"{'0' * 64}  /usr/local/bin/tool\n")
    orig = ws.state / "filetraq" / str(ws.tree / "motd").lstrip("/") / "orig"
    orig.parent.mkdir(parents=True)
    orig.write_text("hello\n")
    (orig.parent / "orig.11.20.26__10.00").write_text("hi\n")
    (ws.state / ".forward").write_text("root\n")
    for path in [ws.state / ".forward", *(ws.state / "filetraq").rglob("*"),
                 ws.state / "filetraq"]:
        os.chown(path, STRANGER, STRANGER, follow_symlinks=False)
    (ws.config / "filetraq.tail.conf").write_text(
        f"# /etc/systraq/filetraq.tail.conf\n{ws.state}/snapshot_pub.stat\n"
        f"{ws.state}/snapshot_root.stat\n/etc/motd\n")
    (ws.config / "filetraq.conf").write_text(f"# generated\n{ws.tree / 'motd'}\n")
    (ws.config / "filetraq.main.conf").write_text("# automatically generated\n")
    host.cron_file.write_bytes(DEBIAN_CRON + b"# mine\n")
    host.path("etc/cron.d/systraq.dpkg-dist").write_bytes((REPO / "cron.d" / "systraq")
                                                            .read_bytes())
    host.path("etc/apt/apt.conf.d/20systraq").write_bytes(DEBIAN_HOOK)


def test_migration_keeps_lists_and_store_and_takes_everything_else_over(ws: Workspace,
                                                                        host: Host) -> None:
    needs_root()
    debian_host(ws, host)
    lists = {p.name: p.read_bytes() for p in ws.config.glob("snapshot_*")}
    plan = make_plan(load_settings(ws.config, ws.state), InitOptions(), host)
    assert plan.migrating_from == ["Debian's systraq"]
    assert not plan.blockers, plan.blockers
    list(carry_out(plan))

    assert {p.name: p.read_bytes() for p in ws.config.glob("snapshot_*")} == lists
    archive = ws.state / "archive" / "debian-systraq"
    assert {p.name for p in archive.iterdir()} == {"snapshot_pub.stat", "snapshot_root.stat",
                                                   "filetraq.main.conf"}
    assert (ws.state / "systraq.sums").exists(), "local checksums stay for systraq daily"
    assert stat.S_IMODE(archive.stat().st_mode) == 0o700
    orig = ws.state / "filetraq" / str(ws.tree / "motd").lstrip("/") / "orig"
    assert orig.read_text() == "hello\n" and (orig.parent / "orig.11.20.26__10.00").exists()
    for path in [ws.state / "filetraq", *(ws.state / "filetraq").rglob("*")]:
        assert (path.lstat().st_uid, path.lstat().st_gid) == (65534, 65534), path
    # nobody's home is not the state dir: that .forward is not its (in test_package.py,
    # the systraq account's home is, and the .forward becomes its own)
    assert (ws.state / ".forward").lstat().st_uid == STRANGER
    assert (ws.config / "filetraq.tail.conf").read_text() == \
        "# /etc/systraq/filetraq.tail.conf\n/etc/motd\n"
    assert (ws.config / "filetraq.conf").read_bytes().startswith(b"# filetraq.conf: generated")
    assert host.cron_file.read_bytes() == (REPO / "cron.d" / "systraq").read_bytes()
    assert host.path("etc/cron.d/systraq.dpkg-old").read_bytes() == DEBIAN_CRON + b"# mine\n"
    assert not host.path("etc/apt/apt.conf.d/20systraq").exists()
    assert host.path("etc/apt/apt.conf.d/20systraq.dpkg-old").read_bytes() == DEBIAN_HOOK
    assert read_marker(ws.state / "initialized").migrated_from == ("Debian's systraq",)
    # The store carried on: motd is unchanged since Debian's filetraq saw it.
    quiet = ws.run("--scheduled-by", "cron", "filetraq")
    assert (quiet.returncode, quiet.stdout) == (0, ""), quiet.stderr
    assert make_plan(load_settings(ws.config, ws.state), InitOptions(), host).nothing_to_do


def test_migration_dry_run_shows_the_takeover_and_changes_nothing(ws: Workspace,
                                                                   host: Host) -> None:
    needs_root()
    debian_host(ws, host)
    before = tree_state(ws.config, ws.state, host.root)
    plan = make_plan(load_settings(ws.config, ws.state), InitOptions(), host)
    said = "\n".join(s.says for s in plan.steps)
    for expected in ("drop systraq's own state files from", "archive Debian's snapshot_pub.stat",
                     "hand the backup store", "to nobody", "take over", "set aside Debian's "
                     "apt hook"):
        assert expected in said, expected
    assert tree_state(ws.config, ws.state, host.root) == before


def test_debian_systraq_still_installed_stops_init(ws: Workspace, host: Host) -> None:
    configure(ws)
    dpkg = host.path("var/lib/dpkg")
    (dpkg / "info").mkdir(parents=True)
    (dpkg / "status").write_text(
        "Package: systraq\nStatus: install ok installed\nPriority: optional\nSection: admin\n"
        "Maintainer: x <x@example.org>\nArchitecture: all\nVersion: 20201231-1\n"
        "Description: x\n\n"
        "Package: filetraq\nStatus: deinstall ok config-files\nPriority: optional\n"
        "Section: admin\nMaintainer: x <x@example.org>\nArchitecture: all\n"
        "Version: 0.3+nmu1\nDescription: x\n\n")
    plan = make_plan(load_settings(ws.config, ws.state), InitOptions(), host)
    assert plan.migrating_from == ["Debian's systraq 20201231-1 (installed)",
                                   "Debian's filetraq 0.3+nmu1 (removed, configuration kept)"]
    assert any("Install systraq's package over it" in b for b in plan.blockers)


def test_inherited_list_lines_that_changed_meaning_are_named(tmp_path: Path) -> None:
    listing = tmp_path / "snapshot_pub.list"
    listing.write_bytes(b"/etc/passwd\n  # indented\n/srv/my file\n\n")
    homelist = tmp_path / "snapshot_pub.homelist"
    homelist.write_bytes(b".profile\n\n.my\\file\n")
    said = meaning_changes(listing, "list") + meaning_changes(homelist, "homelist")
    assert [s.split(": ", 1)[0] for s in said] == [f"{listing}:2", f"{listing}:3",
                                                   f"{homelist}:2", f"{homelist}:3"]
    assert "split it at the blanks" in said[1]
    assert "every file in every home" in said[2]


def test_an_empty_inherited_list_is_pointed_out(ws: Workspace, host: Host) -> None:
    configure(ws)
    ws.write_list("root", "# nothing here yet", kind="homelist")
    plan = make_plan(load_settings(ws.config, ws.state), InitOptions(), host)
    assert any(n.startswith(f"{ws.config / 'snapshot_root.homelist'} lists nothing")
               for n in plan.notes)
