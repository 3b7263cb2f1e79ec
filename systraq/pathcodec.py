"""Escaping of arbitrary byte strings (paths, link targets, names) into one readable field.

Printable UTF-8 stays as it is; a backslash, tab, newline, carriage return, any other
non-printable character, every invisible one (``INVISIBLE``) and every byte that is not
valid UTF-8 becomes an escape (``\\\\``, ``\\t``, ``\\n``, ``\\r``, ``\\xHH`` per byte). Decoding
is byte for byte, so every byte string round-trips and an escaped field never holds a tab
or a newline, nor anything that reorders or hides the text around it on a terminal.
"""

from __future__ import annotations

import re

from systraq.errors import SystraqError

_SHORT = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNSHORT = {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r"}
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.|$)", re.DOTALL)

# Characters that are not seen, or that change how the text around them is seen: format
# characters (Unicode category Cf: bidirectional overrides such as U+202E, zero-width
# spaces and joiners), the line and paragraph separators U+2028 and U+2029 (Zl, Zp), and
# the other default-ignorable code points (DerivedCoreProperties.txt, Unicode 15.1),
# among them the fillers U+115F, U+1160, U+3164 and U+FFA0 that look like nothing at all.
# A fixed list, so that the escaping does not depend on the Python's Unicode version.
INVISIBLE = (
    "\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160"
    "\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164"
    "\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff")
_INVISIBLE = re.compile(f"[{INVISIBLE}]")


class EscapeError(SystraqError):
    """A field whose escapes are malformed."""


def _escape_text(text: str) -> str:
    if "\\" not in text and text.isprintable() and not _INVISIBLE.search(text):
        return text
    out = []
    for ch in text:
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif ch.isprintable() and not _INVISIBLE.match(ch):
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8"))
    return "".join(out)


def escape(raw: bytes) -> str:
    """Return the readable one-field form of a byte string."""
    if raw.isascii():  # the common case, without the search for invalid UTF-8
        text = raw.decode("ascii")
        if text.isprintable() and "\\" not in text:
            return text
    out: list[str] = []
    while raw:
        try:
            out.append(_escape_text(raw.decode("utf-8")))
            break
        except UnicodeDecodeError as err:
            out.append(_escape_text(raw[: err.start].decode("utf-8")))
            out.extend(f"\\x{b:02x}" for b in raw[err.start: err.end])
            raw = raw[err.end:]
    return "".join(out)


def show_name(name: str) -> str:
    """A name from the system or a file header (user, group, host) as safe to show.

    The same escaping as paths; a name decoded with surrogateescape gets its bytes back.
    """
    return escape(name.encode("utf-8", "surrogateescape"))


def _unescape_one(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    if len(code) == 3:
        return bytes([int(code[1:], 16)])
    if code in _UNSHORT:
        return _UNSHORT[code]
    raise EscapeError(f"bad escape \\{code.decode('utf-8', 'replace')}")


def unescape(field: str) -> bytes:
    """Return the byte string an escaped field stands for; refuse malformed escapes."""
    raw = field.encode("utf-8", "surrogateescape")
    if b"\\" not in raw:
        return raw
    return _ESCAPE.sub(_unescape_one, raw)


def join_field(parent_field: str, name: bytes) -> str:
    """The escaped path of ``name`` in the directory whose escaped path is ``parent_field``.

    Escaping is per character and never touches "/", so escaped paths compose like paths.
    """
    return f"{parent_field}/{escape(name)}" if parent_field != "/" else f"/{escape(name)}"
