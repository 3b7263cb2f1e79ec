"""List files and homelists: what an administrator writes, what gets scanned."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from systraq.errors import ConfigError
from systraq.snapshot.listfiles import (
    Pattern,
    Root,
    order_key,
    parse_homelist,
    parse_list,
    select,
)


def write(tmp_path: Path, data: bytes, name: str = "snapshot_pub.list") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_comments_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, b"# header\n\n/etc/hosts\n   \n  /etc/ssh  # not a comment\n#x\n")
    patterns = parse_list(path)
    assert [(p.text, p.line) for p in patterns] == [
        (b"/etc/hosts", 3), (b"/etc/ssh  # not a comment", 5)]


def test_relative_path_in_list_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"/etc/hosts\netc/passwd\n")
    with pytest.raises(ConfigError) as caught:
        parse_list(path)
    assert str(caught.value).startswith(f"{path}:2: ")
    assert "absolute" in str(caught.value)


def test_absolute_path_in_homelist_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, b".ssh\n/.forward\n", "snapshot_pub.homelist")
    with pytest.raises(ConfigError, match=r"homelist:2: .*relative to each home"):
        parse_homelist(path)


def test_homelist_line_leaving_the_home_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, b"../../etc/shadow\n", "snapshot_pub.homelist")
    with pytest.raises(ConfigError, match=r":1: .*leaves the home"):
        parse_homelist(path)


def test_nul_byte_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"/etc/hosts\n/etc/pass\0wd\n")
    with pytest.raises(ConfigError, match=r":2: a NUL byte"):
        parse_list(path)


def test_unreadable_listfile_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        parse_list(tmp_path / "missing.list")


@given(st.lists(st.binary(min_size=1, max_size=30).filter(lambda b: b"\n" not in b
                                                         and b"\0" not in b
                                                         and b.strip() == b
                                                         and not b.startswith(b"#")),
                max_size=10))
@settings(max_examples=60)
def test_every_absolute_line_is_a_pattern_in_order(tmp_path_factory, names) -> None:
    tmp = tmp_path_factory.mktemp("lists")
    lines = [b"/" + n.lstrip(b"/") for n in names if n.lstrip(b"/")]
    path = write(tmp, b"# generated\n" + b"\n".join(lines) + b"\n")
    patterns = parse_list(path)
    assert [p.line for p in patterns] == sorted(p.line for p in patterns)
    assert len(patterns) == len(lines)
    for pattern in patterns:
        assert pattern.text.startswith(b"/") and b"//" not in pattern.text


def test_globs_match_dotfiles_only_with_a_leading_dot(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".forward").parent.mkdir()
    for name in (".forward", ".forward2", "forward", ".profile"):
        (home / name).write_text("x")
    sel = select([], [Pattern(b".forward*", Path("h"), 1), Pattern(b"*", Path("h"), 2)],
                 [os.fsencode(home)], record_homes=False)
    names = sorted(os.path.basename(r.path) for r in sel.roots)
    assert names == [b".forward", b".forward2", b"forward"]


def test_pattern_matching_nothing_is_counted_not_fatal(tmp_path: Path) -> None:
    missing = Pattern(os.fsencode(tmp_path / "nothing*"), Path("l"), 7)
    sel = select([missing], [], [], record_homes=False)
    assert sel.roots == [] and sel.unmatched == [missing]


def test_homes_are_recorded_without_descending_in_pub_mode(tmp_path: Path) -> None:
    home = tmp_path / "alice"
    (home / ".ssh").mkdir(parents=True)
    sel = select([], [Pattern(b".ssh", Path("h"), 1)], [os.fsencode(home)],
                 record_homes=True)
    assert sel.roots == [Root(os.fsencode(home), False),
                         Root(os.fsencode(home / ".ssh"), True)]


def test_symlink_on_the_way_is_the_entry_not_a_way_in(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("PRIVATE")
    home = tmp_path / "mallory"
    home.mkdir()
    (home / ".ssh").symlink_to(secret)
    sel = select([], [Pattern(b".ssh/*", Path("h"), 1)], [os.fsencode(home)],
                 record_homes=False)
    assert [r.path for r in sel.roots] == [os.fsencode(home / ".ssh")]


def test_roots_below_a_listed_directory_are_covered(tmp_path: Path) -> None:
    (tmp_path / "etc" / "ssh").mkdir(parents=True)
    (tmp_path / "etc-old").mkdir()
    base = os.fsencode(tmp_path)
    sel = select([Pattern(base + b"/etc/ssh", Path("l"), 1), Pattern(base + b"/etc", Path("l"), 2),
                  Pattern(base + b"/etc-old", Path("l"), 3)], [], [], record_homes=False)
    assert [r.path for r in sel.roots] == [base + b"/etc", base + b"/etc-old"]


@given(st.lists(st.lists(st.binary(min_size=1, max_size=4).filter(lambda b: b"/" not in b),
                         min_size=1, max_size=4), max_size=20))
def test_order_key_keeps_each_subtree_together(paths) -> None:
    absolute = sorted({b"/" + b"/".join(p) for p in paths}, key=order_key)
    for i, path in enumerate(absolute):
        below = [j for j, other in enumerate(absolute) if other.startswith(path + b"/")]
        if below:
            assert below == list(range(i + 1, i + 1 + len(below)))
