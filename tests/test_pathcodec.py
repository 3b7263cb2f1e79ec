"""Escaping: every byte string round-trips, and a field never breaks a line."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from systraq.pathcodec import INVISIBLE, EscapeError, escape, unescape


@given(st.binary(max_size=200))
def test_every_byte_string_round_trips(raw: bytes) -> None:
    assert unescape(escape(raw)) == raw


@given(st.binary(max_size=200))
def test_escaped_field_never_holds_tab_newline_or_invalid_utf8(raw: bytes) -> None:
    field = escape(raw)
    assert "\t" not in field and "\n" not in field and "\r" not in field
    field.encode("utf-8")  # no surrogates: always writable as UTF-8
    assert field.isprintable()


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Cf",
                                                            "Co", "Cn", "Zs"),
                                      blacklist_characters="\\").filter(
    lambda ch: not re.match(f"[{INVISIBLE}]", ch)), max_size=50))
def test_ordinary_utf8_names_stay_readable(name: str) -> None:
    assert escape(name.encode()) == name


def test_examples_an_administrator_would_meet() -> None:
    assert escape(b"/etc/hosts") == "/etc/hosts"
    assert escape("/home/zoë/café".encode()) == "/home/zoë/café"
    assert escape(b"/tmp/a b") == "/tmp/a b"
    assert escape(b"/tmp/new\nline") == "/tmp/new\\nline"
    assert escape(b"/tmp/tab\there") == "/tmp/tab\\there"
    assert escape(b"/tmp/back\\slash") == "/tmp/back\\\\slash"
    assert escape(b"/tmp/latin1-\xe9") == "/tmp/latin1-\\xe9"


@pytest.mark.parametrize("bad", ["a\\", "a\\q", "a\\x4", "a\\xzz"])
def test_malformed_escapes_are_refused(bad: str) -> None:
    with pytest.raises(EscapeError):
        unescape(bad)
