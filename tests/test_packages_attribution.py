"""Attribution: which group each change falls in, decided from facts alone (pure functions)."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from systraq.packages.attribution import (
    CONFFILE,
    EXPLAINED,
    GROUPS,
    OUTSIDE,
    REMOVED,
    UNOWNED,
    Content,
    Owner,
    classify,
    fold,
)
from systraq.packages.dpkgdb import Package
from systraq.packages.dpkglog import (
    Operation,
    command_for,
    operations_between,
    parse_apt_history,
    parse_dpkg_log,
)

OPENSSL = Package("openssl", "amd64", "3.0.13-1", "installed")
SHIPPED = "0" * 32
OTHER = "f" * 32
UPGRADE = Operation(1_000, "upgrade", "openssl:amd64", "3.0.11-1", "3.0.13-1", "apt-get upgrade")
CONFIGURE = Operation(1_005, "configure", "openssl:amd64", "3.0.13-1", "3.0.13-1")
OPS = fold([UPGRADE, CONFIGURE])
OWNER = Owner(OPENSSL, b"/usr/bin/openssl", md5=SHIPPED)
SAME = Content(SHIPPED, as_snapshot=True)


def test_upgraded_file_holding_what_the_package_ships_is_explained() -> None:
    verdict = classify("changed", {"hash", "size"}, "f", [OWNER], SAME, OPS)
    assert verdict.group == EXPLAINED
    assert verdict.explained_by is not None
    assert verdict.explained_by.to_json() == {"package": "openssl", "from": "3.0.11-1",
                                              "to": "3.0.13-1", "at": 1_000,
                                              "command": "apt-get upgrade"}


def test_hand_edited_package_file_is_outside_dpkg_even_during_an_upgrade() -> None:
    verdict = classify("changed", {"hash"}, "f", [OWNER], Content(OTHER, True), OPS)
    assert verdict.group == OUTSIDE and "differs from what openssl" in verdict.reason


def test_file_edited_after_the_snapshot_is_not_passed_off_as_the_upgrade() -> None:
    later = Content(SHIPPED, as_snapshot=False)
    assert classify("changed", {"hash"}, "f", [OWNER], later, OPS).group == OUTSIDE


def test_packaged_content_without_an_operation_in_the_window_is_not_explained() -> None:
    assert classify("changed", {"hash"}, "f", [OWNER], SAME, {}).group == OUTSIDE


def test_permission_change_is_never_explained_dpkg_does_not_record_it() -> None:
    verdict = classify("changed", {"perms"}, "f", [OWNER], SAME, OPS)
    assert verdict.group == OUTSIDE and "perms" in verdict.reason


def test_files_of_no_package_are_their_own_group() -> None:
    assert classify("added", {"hash"}, "f", [], None, OPS).group == UNOWNED


def test_edited_conffile_is_its_own_group() -> None:
    conf = Owner(OPENSSL, b"/etc/ssl/openssl.cnf", conffile_md5=SHIPPED)
    assert classify("changed", {"hash"}, "f", [conf], Content(OTHER, True), OPS).group \
        == CONFFILE
    assert classify("changed", {"hash"}, "f", [conf], SAME, OPS).group == EXPLAINED


def test_file_a_purge_removed_is_removed_by_dpkg() -> None:
    purge = fold([Operation(2_000, "purge", "foo:all", "1.0", None)])
    verdict = classify("removed", {"hash"}, None, [], None, purge, previous_owner="foo:all")
    assert verdict.group == REMOVED and verdict.explained_by is not None
    assert verdict.explained_by.new is None


def test_file_an_upgrade_dropped_is_explained_by_it() -> None:
    verdict = classify("removed", {"hash"}, None, [], None, OPS,
                       previous_owner="openssl:amd64")
    assert verdict.group == EXPLAINED


def test_deleted_file_dpkg_still_lists_is_outside_dpkg() -> None:
    assert classify("removed", {"hash"}, None, [OWNER], None, OPS).group == OUTSIDE


def test_symlink_is_explained_only_when_it_points_into_the_same_package() -> None:
    assert classify("changed", {"target"}, "l", [OWNER], None, OPS, True).group == EXPLAINED
    assert classify("changed", {"target"}, "l", [OWNER], None, OPS, False).group == OUTSIDE


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["added", "removed", "changed"]),
       fields=st.sets(st.sampled_from(["hash", "size", "perms", "uid", "gid", "type", "target",
                                       "mtime", "status"])),
       entry_type=st.sampled_from(["f", "l", "d", "p", None]),
       owned=st.booleans(), md5=st.sampled_from([SHIPPED, OTHER, None]),
       as_snapshot=st.booleans(), in_window=st.booleans())
def test_a_change_is_explained_only_with_an_operation_and_the_shipped_content(
        kind, fields, entry_type, owned, md5, as_snapshot, in_window) -> None:
    owners = [OWNER] if owned else []
    content = Content(md5, as_snapshot)
    verdict = classify(kind, fields, entry_type, owners, content, OPS if in_window else {})
    assert verdict.group in GROUPS
    if verdict.group == EXPLAINED:
        assert in_window
        if kind != "removed" and entry_type == "f":
            assert md5 == SHIPPED and as_snapshot
        assert not (kind == "changed" and fields & {"perms", "uid", "gid", "type", "status"})


def test_fold_gives_one_line_per_package_from_first_old_to_last_new() -> None:
    ops = [Operation(10, "install", "a:all", None, "1.0"),
           Operation(11, "configure", "a:all", "1.0", "1.0"),
           Operation(20, "upgrade", "a:all", "1.0", "2.0"),
           Operation(21, "trigproc", "man-db:amd64", "2", "2")]
    folded = fold(ops)
    assert list(folded) == ["a:all"]
    assert (folded["a:all"].old, folded["a:all"].new, folded["a:all"].at) == (None, "2.0", 20)


def _stamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def test_dpkg_log_lines_parse_and_garbage_is_skipped_with_file_and_line() -> None:
    at = 1_700_000_000
    data = (f"{_stamp(at)} startup archives unpack\n"
            f"{_stamp(at)} upgrade openssl:amd64 3.0.11-1 3.0.13-1\n"
            f"{_stamp(at)} status installed openssl:amd64 3.0.13-1\n"
            "2026-11-23 10:0\x00garbage\n").encode()
    ops, warnings = parse_dpkg_log(data, b"/var/log/dpkg.log")
    assert ops == [Operation(at, "upgrade", "openssl:amd64", "3.0.11-1", "3.0.13-1")]
    assert warnings == ["/var/log/dpkg.log:4: not a dpkg log line, skipped"]


def test_apt_history_names_the_command_line_of_an_operation() -> None:
    at = 1_700_000_000
    data = (f"\nStart-Date: {_stamp(at - 5).replace(' ', '  ')}\n"
            "Commandline: apt-get upgrade\n"
            "Upgrade: openssl:amd64 (3.0.11-1, 3.0.13-1), libssl3:amd64 (3.0.11-1, 3.0.13-1)\n"
            f"End-Date: {_stamp(at + 5).replace(' ', '  ')}\n").encode()
    runs, warnings = parse_apt_history(data, b"history.log")
    assert not warnings
    op = Operation(at, "upgrade", "libssl3:amd64", "3.0.11-1", "3.0.13-1")
    assert command_for(op, runs) == "apt-get upgrade"


def test_rotated_and_compressed_logs_are_read_back_to_the_window(tmp_path: Path) -> None:
    logs = tmp_path / "var/log"
    (logs / "apt").mkdir(parents=True)
    now = int(time.time())
    (logs / "dpkg.log").write_text(f"{_stamp(now)} install new:all <none> 1\n")
    (logs / "dpkg.log.1").write_text(f"{_stamp(now - 3600)} remove mid:all 1 <none>\n")
    with gzip.open(logs / "dpkg.log.2.gz", "wt") as out:
        out.write(f"{_stamp(now - 7200)} purge old:all 1 <none>\n")
    got = operations_between(str(tmp_path).encode(), now - 7300, now)
    assert [op.package for op in got.operations] == ["old:all", "mid:all", "new:all"]
    assert got.warnings == []
    (logs / "dpkg.log.2.gz").write_bytes(b"not gzip")  # beyond the window: never read
    within = operations_between(str(tmp_path).encode(), now - 10, now)
    assert [op.package for op in within.operations] == ["new:all"]
    assert within.warnings == []


def test_a_gzip_bomb_in_the_logs_is_cut_at_the_limit(tmp_path: Path) -> None:
    logs = tmp_path / "var/log"
    logs.mkdir(parents=True)
    (logs / "dpkg.log").write_text("")
    (logs / "dpkg.log.1").write_text("")
    with gzip.open(logs / "dpkg.log.2.gz", "wb") as out:
        for _ in range(200):
            out.write(b"\0" * (1 << 20))  # 200 MiB of zeros, about 200 kB on disk
    got = operations_between(str(tmp_path).encode(), 0, int(time.time()))
    assert got.operations == []
    assert got.warnings and all("not a dpkg log line" in w for w in got.warnings[:1])
