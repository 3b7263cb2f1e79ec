"""State files: exact round-trip, strict reading, atomic replacement."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from systraq.errors import StateError
from systraq.snapshot.entry import STATUSES, TYPE_LETTERS, Entry
from systraq.snapshot.listfiles import order_key
from systraq.snapshot.state import COLUMNS, Header, StateWriter, read_state

from .statekit import write_v1

HEADER = Header(host="host\tname", mode="pub", created_ns=1_795_000_000_123_456_789,
                hash="sha256", rehash_interval_ns=86_400_000_000_000,
                lists=(b"/etc/systraq/snapshot_pub.list", b"/odd\nlist"))

names = st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b)
entries = st.builds(
    Entry,
    path=st.lists(names, min_size=1, max_size=4).map(lambda parts: b"/" + b"/".join(parts)),
    type=st.sampled_from(sorted(set(TYPE_LETTERS.values()))),
    perms=st.integers(0, 0o7777), uid=st.integers(0, 2**32 - 1),
    user=st.text(max_size=8), gid=st.integers(0, 2**32 - 1), group=st.text(max_size=8),
    size=st.integers(0, 2**63), mtime_ns=st.integers(0, 2**63), ctime_ns=st.integers(0, 2**63),
    dev=st.integers(0, 2**64), ino=st.integers(0, 2**64), nlink=st.integers(0, 2**32),
    status=st.sampled_from(STATUSES), hash=st.sampled_from(["", "ab" * 32]),
    target=st.one_of(st.none(), st.binary(min_size=1, max_size=20)),
)
# Attribute columns: none recorded, or recorded (empty or with values).
attributes = st.one_of(st.just((None, None, None, None)), st.tuples(
    st.sampled_from(["", "cap_setuid=ep", "cap_chown=ip cap_kill+i"]),
    st.sampled_from(["", "user::rw-,user:nobody:rw-,group::r--,mask::rw-,other::r--"]),
    st.sampled_from(["", "selinux=system_u:object_r:etc_t:s0"]),
    st.sampled_from(["", "user.a=" + "cd" * 32 + " user.b=?"])))
entries = st.builds(lambda entry, attrs: dataclasses.replace(
    entry, caps=attrs[0], acl=attrs[1], label=attrs[2], xattrs=attrs[3]), entries, attributes)


def sorted_unique(items: list[Entry]) -> list[Entry]:
    by_key = {order_key(e.path): e for e in items}
    return [by_key[k] for k in sorted(by_key)]


def write(path: Path, items: list[Entry], header: Header = HEADER) -> None:
    with StateWriter(path, header) as writer:
        for entry in items:
            writer.add(entry)


@given(st.lists(entries, max_size=15))
@settings(max_examples=80, deadline=None)
def test_state_round_trips_exactly(tmp_path_factory, items) -> None:
    path = tmp_path_factory.mktemp("state") / "snapshot_pub.stat"
    items = sorted_unique(items)
    write(path, items)
    header, read = read_state(path)
    assert header == HEADER
    assert read == items
    # One line per entry whatever bytes the names hold: a raw newline would add lines.
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    entry_lines = [ln for ln in lines[:-1] if not ln.startswith(b"#")]
    assert len(entry_lines) == len(items)
    assert all(ln.count(b"\t") == len(COLUMNS) - 1 for ln in entry_lines)


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    path = tmp_path / "snapshot_pub.stat"
    write(path, [Entry(b"/etc", "d", 0o755, 0, "root", 0, "root", 4096, 1, 2, 3, 4, 5),
                 Entry(b"/etc/hosts", "f", 0o644, 0, "root", 0, "root", 12, 1, 2, 3, 5, 1,
                       hash="ab" * 32)])
    return path


def read_error(path: Path) -> str:
    with pytest.raises(StateError) as caught:
        read_state(path)
    return str(caught.value)


def test_truncated_file_is_refused_naming_it(state_file: Path) -> None:
    data = state_file.read_bytes()
    state_file.write_bytes(data[: data.rindex(b"#end")])
    message = read_error(state_file)
    assert message.startswith(str(state_file)) and "truncated" in message


def test_file_cut_mid_line_is_refused(state_file: Path) -> None:
    state_file.write_bytes(state_file.read_bytes()[:-10])
    assert "truncated" in read_error(state_file)


def test_hand_edited_entry_fails_the_checksum(state_file: Path) -> None:
    state_file.write_text(state_file.read_text().replace("0644", "0666"))
    assert "checksum mismatch" in read_error(state_file)


def test_removed_line_is_detected(state_file: Path) -> None:
    lines = state_file.read_text().splitlines(keepends=True)
    state_file.write_text("".join(ln for ln in lines if not ln.startswith("/etc/hosts")))
    assert "entries" in read_error(state_file)


def test_malformed_line_names_its_line_number(state_file: Path) -> None:
    lines = state_file.read_text().splitlines(keepends=True)
    lines[-2] = "/etc/hosts\tf\tnot-enough-fields\n"
    state_file.write_text("".join(lines))
    assert f"{state_file}:{len(lines) - 1}: bad entry" in read_error(state_file)


def test_other_format_version_is_refused_clearly(state_file: Path) -> None:
    state_file.write_text(state_file.read_text().replace("#systraq-state\t2", "#systraq-state\t9"))
    assert "version 9 is not understood" in read_error(state_file)


def test_not_a_state_file(tmp_path: Path) -> None:
    path = tmp_path / "x.stat"
    path.write_text("<sha256>  /etc/ssh/sshd_config\n")
    assert "not a systraq state file" in read_error(path)


def test_failed_write_leaves_previous_file_intact(state_file: Path) -> None:
    before = state_file.read_bytes()
    with pytest.raises(RuntimeError), StateWriter(state_file, HEADER) as writer:
        writer.add(Entry(b"/x", "f", 0o644, 0, "", 0, "", 0, 0, 0, 0, 0, 1))
        raise RuntimeError("disk full")
    assert state_file.read_bytes() == before
    assert [p.name for p in state_file.parent.iterdir()] == [state_file.name]


def test_private_state_is_not_world_readable(tmp_path: Path) -> None:
    path = tmp_path / "snapshot_root.stat"
    with StateWriter(path, HEADER, private=True):
        pass
    assert path.stat().st_mode & 0o777 == 0o600


def test_rename_replaces_a_planted_symlink_instead_of_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "snapshot_root.stat").symlink_to(victim)
    write(tmp_path / "snapshot_root.stat", [])
    assert victim.read_text() == "precious"
    assert not (tmp_path / "snapshot_root.stat").is_symlink()


def test_version_1_files_are_still_read(tmp_path: Path) -> None:
    path = tmp_path / "snapshot_pub.stat"
    write_v1(path, ["/etc\td\t0755\t0\troot\t0\troot\t4096\t1\t2\t3\t4\t5\tok\t\t",
                    "/etc/hosts\tf\t0644\t0\troot\t0\troot\t9\t1\t2\t3\t5\t1\tok\t"
                    + "ab" * 32 + "\t"],
             created_ns=1_795_000_000_000_000_000, full_rehash_ns=1_794_999_000_000_000_000)
    header, read = read_state(path)
    assert (header.created_ns, header.full_rehash_ns) == (1_795_000_000_000_000_000,
                                                          1_794_999_000_000_000_000)
    assert [e.path for e in read] == [b"/etc", b"/etc/hosts"]
    assert read[1].hash == "ab" * 32 and read[1].size == 9
