"""Extended attributes in the state: capabilities, ACLs, security labels, the others.

``setcap cap_setuid+ep`` on a listed binary is a root backdoor that leaves mode, owner,
size and content alone. The recorded text is compared with what Debian's own tools print
(``getcap -n``, ``getfacl -c -E``). Setting capabilities, trusted.* and security.*
attributes needs root (CI runs as root); the pub scans run as ``nobody`` through setpriv.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from systraq.snapshot.listfiles import Root
from systraq.snapshot.scan import Scanner
from systraq.snapshot.state import read_state
from systraq.snapshot.xattrs import CAP_NAMES

from .conftest import Workspace, needs_root

UNKNOWN_UID = 54321  # an id no account has: getfacl prints the number


def scan(root: Path) -> dict[bytes, object]:
    scanner = Scanner("sha256", workers=1)
    return {e.path: e for e in scanner.entries([Root(os.fsencode(root), True)])}


def getcap(path: Path) -> str:
    out = subprocess.run(["getcap", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return out[len(str(path)) + 1:].rstrip("\n") if out else ""


def getfacl(path: Path) -> str:
    out = subprocess.run(["getfacl", "-c", "-E", "-p", str(path)], capture_output=True,
                         text=True, check=True).stdout
    return ",".join(line for line in out.splitlines() if line)


def snapshot(ws: Workspace, mode: str, user: str | None = None) -> dict[bytes, object]:
    done = ws.run("snapshot", "--mode", mode, user=user)
    assert done.returncode == 0, done.stderr
    mine = os.fsencode(ws.tree)
    return {e.path: e for e in read_state(ws.state / mode / f"snapshot_{mode}.stat")[1]
            if e.path.startswith(mine)}


flag_sets = st.sampled_from(["p", "i", "ip", "ep", "eip", "ei"])


@given(caps=st.dictionaries(st.sampled_from(range(len(CAP_NAMES))), flag_sets, min_size=1,
                            max_size=6),
       everything=st.sampled_from(["", "p", "ip"]))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_capabilities_are_recorded_as_getcap_prints_them(ws: Workspace, caps,
                                                         everything) -> None:
    needs_root()
    binary = ws.tree / "tool"
    shutil.copyfile("/bin/true", binary)
    # The kernel keeps one effective flag per file: all raised capabilities, or none.
    effective = any("e" in flags for flags in caps.values())

    def flags_of(flags: str) -> str:
        return ("e" if effective else "") + flags.replace("e", "")
    clauses = [f"all={flags_of(everything)}"] if everything else []
    clauses += [f"{CAP_NAMES[n]}={flags_of(flags)}" for n, flags in caps.items()]
    subprocess.run(["setcap", " ".join(clauses), str(binary)], check=True)
    recorded = scan(ws.tree)[os.fsencode(binary)]
    assert recorded.caps == getcap(binary)


def test_capabilities_of_another_user_namespace_show_their_root_id(ws: Workspace) -> None:
    needs_root()
    binary = ws.tree / "tool"
    shutil.copyfile("/bin/true", binary)
    subprocess.run(["setcap", "-n", "1000", "cap_net_raw+ep", str(binary)], check=True)
    assert scan(ws.tree)[os.fsencode(binary)].caps == getcap(binary) == \
        "cap_net_raw=ep [rootid=1000]"


perms = st.sampled_from(["r", "rw", "rwx", "x", "---"])
acl_entries = st.lists(st.one_of(
    st.tuples(st.just("u"), st.sampled_from(["nobody", "root", str(UNKNOWN_UID)]), perms),
    st.tuples(st.just("g"), st.sampled_from(["nogroup", "root", str(UNKNOWN_UID)]), perms)),
    min_size=1, max_size=4)


@given(access=acl_entries, default=st.one_of(st.none(), acl_entries), mask=st.booleans())
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_acls_are_recorded_as_getfacl_prints_them(ws: Workspace, access, default,
                                                  mask) -> None:
    directory = ws.tree / "shared"
    subprocess.run(["rm", "-rf", str(directory)], check=True)
    directory.mkdir()
    spec = ",".join(f"{kind}:{who}:{perms}" for kind, who, perms in access)
    if mask:
        spec += ",m::r"
    subprocess.run(["setfacl", "-m", spec, str(directory)], check=True)
    if default is not None:
        subprocess.run(["setfacl", "-d", "-m", ",".join(f"{k}:{w}:{p}" for k, w, p in default),
                        str(directory)], check=True)
    inside = directory / "inherits"
    inside.write_text("x")
    entries = scan(ws.tree)
    assert entries[os.fsencode(directory)].acl == getfacl(directory)
    assert entries[os.fsencode(inside)].acl == (getfacl(inside) if default else "")


def test_a_default_acl_alone_shows_the_access_acl_the_mode_makes(ws: Workspace) -> None:
    directory = ws.tree / "d"
    directory.mkdir(mode=0o750)
    directory.chmod(0o750)
    subprocess.run(["setfacl", "-d", "-m", "u:nobody:rx", str(directory)], check=True)
    acl = scan(ws.tree)[os.fsencode(directory)].acl
    assert acl == getfacl(directory)
    assert acl.startswith("user::rwx,group::r-x,other::---,default:user::rwx,")


def test_no_acl_beyond_the_mode_is_recorded_as_none(ws: Workspace) -> None:
    plain = ws.tree / "plain"
    plain.write_text("x")
    entry = scan(ws.tree)[os.fsencode(plain)]
    assert (entry.caps, entry.acl, entry.label, entry.xattrs) == ("", "", "", "")


def test_labels_and_other_attributes_are_recorded_by_name(ws: Workspace) -> None:
    needs_root()
    target = ws.tree / "labelled"
    target.write_text("x")
    os.setxattr(target, "security.selinux", b"system_u:object_r:etc_t:s0\0")
    os.setxattr(target, "user.origin", b"https://example.org/")
    os.setxattr(target, "trusted.overlay.opaque", b"y")
    entry = scan(ws.tree)[os.fsencode(target)]
    assert entry.label == "selinux=system_u:object_r:etc_t:s0"
    assert entry.xattrs == (f"trusted.overlay.opaque={hashlib.sha256(b'y').hexdigest()} "
                            f"user.origin={hashlib.sha256(b'https://example.org/').hexdigest()}")


def test_a_symlink_is_recorded_with_its_own_attributes_never_its_targets(ws: Workspace
                                                                        ) -> None:
    needs_root()
    outside = ws.root / "outside"
    shutil.copyfile("/bin/true", outside)
    subprocess.run(["setcap", "cap_setuid+ep", str(outside)], check=True)
    subprocess.run(["setfacl", "-m", "u:nobody:rwx", str(outside)], check=True)
    link = ws.tree / "link"
    link.symlink_to(outside)
    os.setxattr(link, "trusted.mark", b"own", follow_symlinks=False)
    entry = scan(ws.tree)[os.fsencode(link)]
    assert (entry.caps, entry.acl) == ("", "")
    assert entry.xattrs == f"trusted.mark={hashlib.sha256(b'own').hexdigest()}"


def test_pub_scan_as_nobody_records_capabilities_acls_and_what_it_may_read(
        ws: Workspace) -> None:
    needs_root()
    binary = ws.tree / "ping"
    shutil.copyfile("/bin/true", binary)
    subprocess.run(["setcap", "cap_net_raw+ep", str(binary)], check=True)
    shared = ws.tree / "shared.conf"
    shared.write_text("x")
    subprocess.run(["setfacl", "-m", "u:nobody:rw", str(shared)], check=True)
    os.setxattr(shared, "user.a", b"1")
    private = ws.tree / "private"
    private.write_text("secret")
    private.chmod(0o600)
    os.setxattr(private, "user.b", b"2")
    os.setxattr(private, "trusted.c", b"3")
    ws.write_list("pub", str(ws.tree))
    entries = snapshot(ws, "pub")  # root runs it: the scan drops to an unprivileged account
    as_nobody = snapshot(ws, "pub", user="nobody")
    for found in (entries, as_nobody):
        assert found[os.fsencode(binary)].caps == "cap_net_raw=ep"
        assert found[os.fsencode(shared)].acl == getfacl(shared)
        assert found[os.fsencode(shared)].xattrs == f"user.a={hashlib.sha256(b'1').hexdigest()}"
        # Names are listed, values of a file it may not read are not: trusted.* is root's.
        assert found[os.fsencode(private)].xattrs == "user.b=?"
    ws.write_list("root", str(ws.tree))
    as_root = snapshot(ws, "root")[os.fsencode(private)]
    assert as_root.xattrs == (f"trusted.c={hashlib.sha256(b'3').hexdigest()} "
                              f"user.b={hashlib.sha256(b'2').hexdigest()}")


def diff(ws: Workspace, mode: str, *args: str) -> subprocess.CompletedProcess:
    return ws.run("diff", "--mode", mode, *args)


def test_setcap_and_setfacl_on_listed_files_are_reported_once(ws: Workspace) -> None:
    needs_root()
    binary = ws.tree / "backup-tool"
    shutil.copyfile("/bin/true", binary)
    conf = ws.tree / "app.conf"
    conf.write_text("x")
    ws.write_list("root", str(ws.tree))
    snapshot(ws, "root")
    assert diff(ws, "root").returncode == 1  # the first report
    subprocess.run(["setcap", "cap_setuid+ep", str(binary)], check=True)
    subprocess.run(["setfacl", "-m", "u:nobody:rw", str(conf)], check=True)
    snapshot(ws, "root")
    text = diff(ws, "root", "--no-record")
    assert text.returncode == 1
    # Both are privilege changes: marked, with the reason first.
    assert f"  ! {binary}\n      capabilities added or widened: cap_setuid=ep\n" \
        "      capabilities (none) → cap_setuid=ep\n" in text.stdout
    assert f"  ! {conf}\n      ACL lets user nobody write\n      perms 0644 → 0664\n" \
        f"      ACL (none) → {getfacl(conf)}\n" in text.stdout
    report = json.loads(diff(ws, "root", "--format", "json").stdout)
    fields = {c["path"]: c["fields"] for c in report["changes"]}
    assert fields[str(binary)] == {"caps": {"old": "", "new": "cap_setuid=ep"}}
    assert fields[str(conf)]["acl"] == {"old": "", "new": getfacl(conf)}
    snapshot(ws, "root")
    assert diff(ws, "root").stdout == ""


def test_other_attributes_are_reported_only_when_report_fields_ask(ws: Workspace) -> None:
    note = ws.tree / "note"
    note.write_text("x")
    ws.write_list("pub", str(ws.tree))
    snapshot(ws, "pub", user="nobody")
    diff(ws, "pub")
    os.setxattr(note, "user.comment", b"changed")
    snapshot(ws, "pub", user="nobody")
    assert diff(ws, "pub", "--no-record").stdout == ""
    ws.write_config(
        '[report]\nfields = ["type", "perms", "hash", "caps", "acl", "label", "xattrs"]\n')
    shown = diff(ws, "pub").stdout
    assert f"  {note}\n      extended attributes (none) → user.comment=" in shown
