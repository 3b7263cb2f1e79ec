"""Log highlights, the logcheck way: the last day's lines less the known-harmless ones.

Lines come from the files ``daily.log_files`` names (with their ``.1`` rotation when it
still holds part of the day), or from the journal when none of them can be read. Every
file in ``CONFIG/ignore.d/`` with a run-parts name holds logcheck rules: one extended
regular expression a line, ``#`` comments; a log line any rule matches is dropped. The
rules are logcheck's syntax (POSIX classes such as ``[[:alnum:]]``, GNU ``\\<`` and
``\\>``), so existing logcheck rules can be copied in. A rule that does not compile is
named by file and line; the others still apply. Security-relevant lines come first.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from systraq.daily.context import DailyContext, Unavailable, capped, printable
from systraq.daily.report import Section

RUN_PARTS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_READ_LIMIT = 32 << 20  # of each log file, from its end: a day of a busy server's syslog
_JOURNAL_LINES = 50000
_COMBINE = 64  # rules compiled together into one alternation

_MONTHS = {m: n for n, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
                                       "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_TRADITIONAL = re.compile(r"^([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) ")
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
                  r"\s")
# The prefix a syslog line carries before its message: time, host.
_PREFIX = re.compile(r"^(?:[A-Z][a-z]{2} {1,2}\d{1,2} \d{2}:\d{2}:\d{2}|\S+) \S+ ")

SECURITY_PATTERNS = re.compile(
    r"authentication failure|Failed password|Invalid user|FAILED (?:SU|su|LOGIN)"
    r"|BREAK-IN|NOT in sudoers|incorrect password|refused connect|Permission denied"
    r"|segfault|Out of memory|oom-kill|I/O error|EXT4-fs error|XFS .*error|BUG:"
    r"|Call Trace|promiscuous mode|apparmor=\"DENIED\"|avc: +denied", re.IGNORECASE)

_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "space": r"\s", "blank": r" \t", "punct": r"!-/:-@\[-`{-~", "xdigit": "0-9A-Fa-f",
    "print": r"\x20-\x7e", "graph": r"\x21-\x7e", "cntrl": r"\x00-\x1f\x7f", "word": r"\w",
}


# --- time of a line ------------------------------------------------------------------------

def line_time(line: str, now: float) -> float | None:
    """The time a syslog or journal line was written, or None when it carries none.

    Traditional lines have no year: the one that puts the line not in the future.
    """
    match = _ISO.match(line)
    if match:
        try:
            stamp = datetime.fromisoformat(match.group(1).replace(" ", "T"))
        except ValueError:
            return None
        return stamp.timestamp()
    match = _TRADITIONAL.match(line)
    if not match:
        return None
    month = _MONTHS.get(match.group(1))
    if month is None:
        return None
    year = time.localtime(now).tm_year
    for candidate in (year, year - 1):
        try:
            seconds = time.mktime((candidate, month, int(match.group(2)), int(match.group(3)),
                                   int(match.group(4)), int(match.group(5)), 0, 0, -1))
        except (OverflowError, ValueError):
            return None
        if seconds <= now + 86400:
            return seconds
    return None


def _lines_of(data: bytes) -> list[str]:
    # Only a newline ends a log line: a carriage return or form feed in a message is part
    # of it (and shown escaped), not a line of its own.
    return data.decode("utf-8", "replace").split("\n")


def recent_lines(ctx: DailyContext, absolute: str) -> list[str]:
    """The lines of a log file (and its ``.1`` rotation) written since ``ctx.since``.

    Raises FileNotFoundError / PermissionError when the file itself cannot be read.
    """
    data = ctx.read(absolute, _READ_LIMIT, tail=True)
    lines: list[str] = []
    try:
        if os.stat(ctx.path(absolute + ".1")).st_mtime >= ctx.since:
            lines = _lines_of(ctx.read(absolute + ".1", _READ_LIMIT, tail=True))
    except OSError:
        pass
    lines += _lines_of(data)
    recent, keep = [], False
    for line in lines:
        stamp = line_time(line, ctx.now)
        if stamp is not None:
            keep = stamp >= ctx.since
        if keep and line.strip():
            recent.append(line)
    return recent


def journal_lines(ctx: DailyContext, *matches: str) -> list[str]:
    """The last day of the journal (optionally only entries matching ``matches``), in
    syslog's classic form so that logcheck rules apply."""
    ctx.need_live("journal")
    if not any(os.path.isdir(ctx.path(d)) for d in ("/var/log/journal", "/run/log/journal")):
        raise Unavailable("journal: no systemd journal on this system")
    out, err = ctx.tool_output(["journalctl", "--no-pager", "-o", "short",
                                f"--since=@{int(ctx.since)}", "-n", str(_JOURNAL_LINES),
                                *matches], timeout=30, what="journal")
    if "insufficient permissions" in err:
        raise Unavailable("journal: not readable by this user")
    if "No journal files were found" in err:
        raise Unavailable("journal: no journal files were found")
    # "-- No entries --", "-- Boot ... --": journalctl's own markers, not log lines.
    return [line for line in out.split("\n") if line and not line.startswith("-- ")]


# --- rules -----------------------------------------------------------------------------------

def translate(rule: str) -> str:
    """A logcheck (POSIX extended, GNU) regular expression in Python's syntax.

    Inside a bracket expression a backslash is itself, as grep has it.
    """
    out, i, size = [], 0, len(rule)
    while i < size:
        char = rule[i]
        if char == "\\" and i + 1 < size:
            # GNU's \< and \> are the start and the end of a word.
            # Grouped, so that a quantifier after one applies to the whole assertion.
            out.append({"<": r"(?:\b(?=\w))", ">": r"(?:\b(?<=\w))"}.get(rule[i + 1],
                                                                        rule[i:i + 2]))
            i += 2
            continue
        if char in "*+?" and out and out[-1] in ("*", "+", "?"):
            # ERE stacks quantifiers ((a*)+); Python would read "*+" as possessive and
            # "*?" as lazy. Stacked, they match as one: all "+" or all "?", else "*".
            out[-1] = out[-1] if out[-1] == char else "*"
            i += 1
            continue
        if char != "[":
            out.append(char)
            i += 1
            continue
        j, body = i + 1, ["["]
        if rule.startswith("^", j):
            body.append("^")
            j += 1
        if rule.startswith("]", j):  # first in the brackets: a literal
            body.append(r"\]")
            j += 1
        while j < size and rule[j] != "]":
            if rule.startswith("[:", j):
                end = rule.find(":]", j + 2)
                name = rule[j + 2:end] if end > 0 else ""
                if name in _POSIX_CLASSES:
                    body.append(_POSIX_CLASSES[name])
                    j = end + 2
                    continue
            body.append({"\\": r"\\", "[": r"\["}.get(rule[j], rule[j]))
            j += 1
        if j >= size:  # unterminated: left for re to refuse
            out.append(rule[i:])
            break
        out.extend([*body, "]"])
        i = j + 1
    return "".join(out)


@dataclass
class Rules:
    patterns: list[re.Pattern[str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    count: int = 0

    def matches(self, line: str) -> bool:
        return any(pattern.search(line) for pattern in self.patterns)


def load_rules(ctx: DailyContext) -> Rules:
    """Every rule in ``CONFIG/ignore.d/``; one that does not compile is named, not fatal."""
    rules = Rules()
    directory = ctx.layout.ignore_dir
    try:
        names = sorted(n for n in os.listdir(directory) if RUN_PARTS_NAME.match(n))
    except FileNotFoundError:
        return rules
    except OSError as err:
        rules.errors.append(f"{directory}: {err.strerror}")
        return rules
    good: list[str] = []
    for name in names:
        path = directory / name
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except OSError as err:
            rules.errors.append(f"{path}: {err.strerror}")
            continue
        for number, raw in enumerate(text.splitlines(), 1):
            rule = raw.rstrip()
            if not rule or rule.startswith("#"):
                continue
            translated = translate(rule)
            try:
                re.compile(translated)
            except re.error as err:
                rules.errors.append(f"{path}:{number}: rule does not compile: {err}")
                continue
            good.append(translated)
    rules.count = len(good)
    # Rules go together into alternations (much faster than one search each); a rule with a
    # back-reference keeps its own pattern, since joining would renumber its groups.
    alone = [r for r in good if re.search(r"\\[1-9]", r)]
    joined = [r for r in good if r not in alone]
    for start in range(0, len(joined), _COMBINE):
        chunk = joined[start:start + _COMBINE]
        try:
            rules.patterns.append(re.compile("|".join(f"(?:{r})" for r in chunk)))
        except re.error:
            rules.patterns.extend(re.compile(r) for r in chunk)
    rules.patterns.extend(re.compile(r) for r in alone)
    return rules


# --- the part --------------------------------------------------------------------------------

def _message(line: str) -> str:
    """A line without its time and host, so repeats of one message count together."""
    match = _ISO.match(line)
    rest = line[match.end():] if match else line
    if not match:
        prefix = _PREFIX.match(line)
        rest = line[prefix.end():] if prefix else line
    else:
        rest = rest.split(" ", 1)[1] if " " in rest else rest
    return rest


def _grouped(lines: list[str]) -> list[str]:
    counts = Counter(_message(line) for line in lines)
    out = []
    for message, count in counts.most_common():
        out.append(printable(message) + (f"  (×{count})" if count > 1 else ""))
    return out


def gather(ctx: DailyContext) -> tuple[list[str], list[str], list[str]]:
    """(lines of the day, the sources read, notes on sources that could not be read)."""
    lines: list[str] = []
    sources, notes = [], []
    for name in ctx.settings.daily.log_files:
        try:
            lines += recent_lines(ctx, name)
            sources.append(name)
        except FileNotFoundError:
            continue
        except PermissionError:
            notes.append(f"{name}: not readable by this user")
        except OSError as err:
            notes.append(f"{name}: {err.strerror or err}")
    if not sources and ctx.settings.daily.journal:
        try:
            lines += journal_lines(ctx)
            sources.append("the journal")
        except Unavailable as why:
            notes.append(str(why))
    return lines, sources, notes


def collect(ctx: DailyContext) -> Section:
    section = Section("logs", "Log highlights")
    rules = load_rules(ctx)
    lines, sources, notes = gather(ctx)
    if not sources:
        section.unavailable("no log could be read: " + ("; ".join(notes) if notes else
                            "none of daily.log_files exists and the journal is off"))
        return section
    kept = [line for line in lines if not rules.matches(line)]
    security = [line for line in kept if SECURITY_PATTERNS.search(line)]
    other = [line for line in kept if not SECURITY_PATTERNS.search(line)]
    limit = ctx.settings.daily.max_lines
    head = [f"{len(lines)} lines of the last day from {', '.join(sources)}; "
            f"{len(lines) - len(kept)} removed by {rules.count} ignore rules"]
    section.add("", head + notes + rules.errors)
    if security:
        section.attend(f"{len(security)} security-relevant log line"
                       f"{'s' if len(security) != 1 else ''}")
    section.add(f"security events ({len(security)})", capped(_grouped(security), limit)
                or ["none"])
    section.add(f"other lines ({len(other)})", capped(_grouped(other), limit) or ["none"])
    return section
