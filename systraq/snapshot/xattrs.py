"""Extended attributes of a scanned object, in the words administrators know them by.

Four kinds, each one column of the state (systraq-state(5)):

caps
    ``security.capability`` as ``getcap -n`` prints it (``cap_setuid=ep``): a file
    capability is a root backdoor that leaves mode, owner, size and content alone.
acl
    POSIX ACLs as ``getfacl -c -E`` prints them, one entry per comma (``user::rw-,
    user:nobody:rw-,group::r--,mask::rw-,other::r--``), default entries prefixed
    ``default:``; empty when the object has no ACL beyond its mode.
label
    security labels (``selinux=system_u:object_r:bin_t:s0``, ``apparmor=...``).
xattrs
    every other attribute by name with the sha256 of its value (``user.note=9f86...``;
    ``trusted.*`` only appear to root). A value that cannot be read (``user.*`` of a file
    the scanning account may not read) has ``?`` for its hash.

Nothing here follows a symlink: attributes are read through a descriptor the caller opened
(a file being hashed, a directory being listed) or, for anything else, by name inside its
open directory (``/proc/self/fd/DIRFD/NAME`` with the l* calls, which act on the last
component itself).
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
from dataclasses import dataclass

from systraq.pathcodec import escape
from systraq.snapshot.entry import group_name, user_name

CAPABILITY = "security.capability"
ACL_ACCESS = "system.posix_acl_access"
ACL_DEFAULT = "system.posix_acl_default"
LABELS = {"security.selinux": "selinux", "security.apparmor": "apparmor"}
_KNOWN = {CAPABILITY, ACL_ACCESS, ACL_DEFAULT, *LABELS}
# File systems without extended attributes at all.
_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP)


@dataclass(frozen=True, slots=True)
class Attributes:
    """The four columns' text (each escaped: never a tab or a newline)."""

    caps: str = ""
    acl: str = ""
    label: str = ""
    xattrs: str = ""


NONE = Attributes()


class Unreadable(Exception):
    """The attributes could not be read (the object is then recorded without them)."""


def of_fd(fd: int, st: os.stat_result) -> Attributes:
    """The attributes of the object open at ``fd`` (``st`` its fstat)."""
    try:
        names = os.listxattr(fd)
    except OSError as err:
        if err.errno in _UNSUPPORTED:
            return NONE
        raise Unreadable() from None
    if not names:
        return NONE
    return _decode(names, lambda name: os.getxattr(fd, name), st)


def of_name(dir_fd: int, name: bytes, st: os.stat_result) -> Attributes:
    """The attributes of ``name`` in the open directory, never through a symlink.

    Raise Unreadable when they cannot be read, or when ``name`` is no longer the object
    ``st`` describes (replaced meanwhile).
    """
    if not _PROC_FD:
        raise Unreadable()
    path = b"/proc/self/fd/%d/%s" % (dir_fd, name)
    try:
        names = os.listxattr(path, follow_symlinks=False)
        found = NONE if not names else _decode(
            names, lambda attr: os.getxattr(path, attr, follow_symlinks=False), st)
        after = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as err:
        if err.errno in _UNSUPPORTED:
            return NONE
        raise Unreadable() from None
    if (after.st_dev, after.st_ino, after.st_ctime_ns) != (st.st_dev, st.st_ino,
                                                           st.st_ctime_ns):
        raise Unreadable()
    return found


_PROC_FD = os.path.isdir("/proc/self/fd")


def _decode(names: list[str], get, st: os.stat_result) -> Attributes:
    values: dict[str, bytes | None] = {}
    for name in names:
        try:
            values[name] = get(name)
        except OSError as err:
            if err.errno == errno.ENODATA:  # removed since it was listed
                continue
            if name in _KNOWN:
                raise Unreadable() from None
            values[name] = None
    caps = capability_text(values[CAPABILITY]) if values.get(CAPABILITY) else ""
    acl = acl_text(values.get(ACL_ACCESS), values.get(ACL_DEFAULT), st.st_mode)
    label = " ".join(f"{short}={_item(_strip_nul(values[attr]))}"
                     for attr, short in LABELS.items() if values.get(attr) is not None)
    others = " ".join(
        f"{_item(os.fsencode(name))}="
        f"{'?' if values[name] is None else hashlib.sha256(values[name]).hexdigest()}"
        for name in sorted(values, key=os.fsencode) if name not in _KNOWN)
    return Attributes(caps, acl, label, others)


def _strip_nul(value: bytes | None) -> bytes:
    assert value is not None
    return value[:-1] if value.endswith(b"\0") else value


def _item(raw: bytes) -> str:
    """An escaped name or value that holds no space or '=' (the separators of a column)."""
    return escape(raw).replace(" ", "\\x20").replace("=", "\\x3d")


# --- capabilities (as libcap's cap_to_text, which getcap prints) -------------------------

CAP_NAMES = (
    "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid",
    "cap_kill", "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable",
    "cap_net_bind_service", "cap_net_broadcast", "cap_net_admin", "cap_net_raw",
    "cap_ipc_lock", "cap_ipc_owner", "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot",
    "cap_sys_ptrace", "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice",
    "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease",
    "cap_audit_write", "cap_audit_control", "cap_setfcap", "cap_mac_override",
    "cap_mac_admin", "cap_syslog", "cap_wake_alarm", "cap_block_suspend", "cap_audit_read",
    "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
)
# As libcap numbers the sets (CAP_EFFECTIVE, CAP_PERMITTED, CAP_INHERITABLE): the order of
# the clauses getcap prints follows these values.
_EFFECTIVE, _PERMITTED, _INHERITABLE = 1, 2, 4
_ALL_BITS = 64
_REVISIONS = {0x01000000: (1, 8), 0x02000000: (2, 20), 0x03000000: (2, 24)}  # words, size


def _kernel_caps() -> int:
    """How many capabilities the running kernel knows (libcap's cap_max_bits)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as handle:
            return int(handle.read()) + 1
    except (OSError, ValueError):
        return len(CAP_NAMES)


KERNEL_CAPS = _kernel_caps()


def _cap_name(number: int) -> str:
    return CAP_NAMES[number] if number < len(CAP_NAMES) else str(number)


def _flags(state: int) -> str:
    return ("e" if state & _EFFECTIVE else "") + ("i" if state & _INHERITABLE else "") + \
        ("p" if state & _PERMITTED else "")


def capability_text(value: bytes) -> str:
    """A ``security.capability`` value as ``getcap -n`` prints it (without the file name)."""
    if len(value) < 4:
        return _invalid(value)
    magic = int.from_bytes(value[:4], "little")
    shape = _REVISIONS.get(magic & 0xFF000000)
    if shape is None or len(value) != shape[1]:
        return _invalid(value)
    words, _ = shape
    permitted = inheritable = 0
    for i in range(words):
        p, inh = struct.unpack_from("<II", value, 4 + 8 * i)
        permitted |= p << (32 * i)
        inheritable |= inh << (32 * i)
    effective = (permitted | inheritable) if magic & 1 else 0
    states = [(_EFFECTIVE if effective >> n & 1 else 0)
              | (_INHERITABLE if inheritable >> n & 1 else 0)
              | (_PERMITTED if permitted >> n & 1 else 0) for n in range(_ALL_BITS)]
    text = _caps_to_text(states)
    if magic & 0xFF000000 == 0x03000000:
        rootid = int.from_bytes(value[20:24], "little")
        if rootid:
            text += f" [rootid={rootid}]"
    return text


def _caps_to_text(states: list[int]) -> str:
    known = KERNEL_CAPS
    counts = [0] * 8
    for n in range(known):
        counts[states[n]] += 1
    # The most common state is the base ("=" with its flags); ties go to the fewer flags.
    base = 7
    for state in range(6, -1, -1):
        if counts[state] >= counts[base]:
            base = state
    clauses = ["=" + _flags(base)]
    bare = base == 0  # "=" alone so far: the first clause may replace it
    for state in range(7, -1, -1):
        if state == base or not counts[state]:
            continue
        names = ",".join(_cap_name(n) for n in range(known) if states[n] == state)
        raised, lowered = state & ~base, ~state & base & 7
        clause = names
        if raised:
            if bare:  # "= a,b+ep" reads better as "a,b=ep"
                clauses, clause = [], clause + "=" + _flags(raised)
            else:
                clause += "+" + _flags(raised)
        bare = False
        if lowered:
            clause += "-" + _flags(lowered)
        clauses.append(clause)
    # Bits the kernel does not know, by number, always raised.
    for state in range(7, 0, -1):
        numbers = [str(n) for n in range(known, _ALL_BITS) if states[n] == state]
        if numbers:
            clauses.append(",".join(numbers) + "+" + _flags(state))
    return " ".join(clauses)


def _invalid(value: bytes) -> str:
    return f"invalid:{hashlib.sha256(value).hexdigest()}"


# --- POSIX ACLs (as getfacl -c -E prints them) -------------------------------------------

_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_TAGS = {_USER_OBJ: "user", _USER: "user", _GROUP_OBJ: "group", _GROUP: "group",
         _MASK: "mask", _OTHER: "other"}
_ACL_VERSION = 2


def _perms(bits: int) -> str:
    return ("r" if bits & 4 else "-") + ("w" if bits & 2 else "-") + ("x" if bits & 1 else "-")


def _acl_entries(value: bytes, prefix: str) -> list[str]:
    if len(value) < 4 or (len(value) - 4) % 8 or \
            int.from_bytes(value[:4], "little") != _ACL_VERSION:
        return [f"{prefix}invalid:{hashlib.sha256(value).hexdigest()}"]
    entries = []
    for offset in range(4, len(value), 8):
        tag, perm, ident = struct.unpack_from("<HHI", value, offset)
        kind = _TAGS.get(tag)
        if kind is None:
            entries.append(f"{prefix}tag{tag}:{ident}:{_perms(perm)}")
            continue
        who = ""
        if tag == _USER:
            who = _item(os.fsencode(user_name(ident) or str(ident)))
        elif tag == _GROUP:
            who = _item(os.fsencode(group_name(ident) or str(ident)))
        entries.append(f"{prefix}{kind}:{who}:{_perms(perm)}")
    return entries


def acl_text(access: bytes | None, default: bytes | None, mode: int) -> str:
    """The ACL text, or "" when there is no ACL beyond the mode bits."""
    if access is None and default is None:
        return ""
    if access is not None:
        entries = _acl_entries(access, "")
    else:  # a default ACL alone: getfacl shows the access ACL the mode bits make
        entries = [f"user::{_perms(mode >> 6)}", f"group::{_perms(mode >> 3)}",
                   f"other::{_perms(mode)}"]
    if default is not None:
        entries += _acl_entries(default, "default:")
    return ",".join(entries)
