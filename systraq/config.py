"""Settings from systraq.conf (TOML): every setting has a default that works."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from systraq.changes.compare import DEFAULT_FIELDS, REPORTABLE_FIELDS
from systraq.configcheck import check as check_value
from systraq.errors import ConfigError
from systraq.filetraq.contentdiff import ORDERS, STYLES
from systraq.layout import SYSTRAQ_CONF, Layout
from systraq.rules import Rule, RuleError, parse_rule
from systraq.rules import book as rule_book
from systraq.snapshot.hashing import ALGORITHMS

DEFAULT_CONFIG_DIR = Path("/etc/systraq")
DEFAULT_STATE_DIR = Path("/var/lib/systraq")
CONFIG_NAME = SYSTRAQ_CONF



@dataclass(frozen=True)
class SnapshotSettings:
    hash: str = "sha256"
    pub_user: str = "systraq"
    lock_timeout: float = 10.0
    full_rehash_hours: float = 24.0
    workers: int = 0  # cores a snapshot uses; 0: all
    hash_limit: int = 16 << 30  # bytes of one file's data hashed at most; 0: no cap
    passwd: str = ""  # a passwd(5) file homes come from; "": the system's account database


@dataclass(frozen=True)
class ReportSettings:
    fields: tuple[str, ...] = DEFAULT_FIELDS
    mail: bool = False


@dataclass(frozen=True)
class MailSettings:
    to: tuple[str, ...] = ("root",)
    sender: str = ""  # "from" in the file; empty: the mail system's default
    transport: str = "sendmail"
    sendmail: str = "/usr/sbin/sendmail -t -oi"
    smtp_host: str = "localhost"
    smtp_port: int = 25
    starttls: bool = False
    username: str = ""
    password_file: str = ""
    timeout: float = 30.0
    max_size: int = 1024 * 1024  # a larger report is kept on disk, its summary mailed; 0: no cap
    dead_after: float = 120.0  # hours a spooled message is retried before set aside; 0: ever


@dataclass(frozen=True)
class FiletraqSettings:
    max_size: int = 1024 * 1024
    diff_style: str = "unified"  # or "context", as Debian filetraq's default -p -C 1
    diff_order: str = "oldnew"  # or "newold", Debian filetraq's default
    prune_days: float = 60.0
    dir_mode: int = 0o755
    store_budget: int = 1 << 30  # bytes the backup store may hold on disk; 0: no budget


# The built-in parts of the daily report, in the order it shows them; any can be switched
# off with daily.disable.
DAILY_PARTS = ("system", "accounts", "logins", "logs", "audit", "security", "packages",
               "sums", "health", "extensions")


@dataclass(frozen=True)
class DailySettings:
    disable: tuple[str, ...] = ()
    log_files: tuple[str, ...] = ("/var/log/syslog", "/var/log/messages", "/var/log/auth.log",
                                  "/var/log/kern.log", "/var/log/daemon.log")
    journal: bool = True  # read the systemd journal too (on the live system)
    disk_threshold: int = 90  # percent of space or inodes used that needs attention
    max_lines: int = 40  # lines a list shows before "and N more"
    extension_timeout: float = 60.0
    sums_dirs: tuple[str, ...] = ("/usr/local/bin", "/usr/local/sbin", "/usr/local/lib",
                                  "/usr/local/share")


@dataclass(frozen=True)
class PackagesSettings:
    root: str = "/"  # the tree whose dpkg database is read
    admindir: str = ""  # empty: ROOT/var/lib/dpkg
    reverify_days: float = 7.0  # no cached md5 is older; 0: no cache
    attribute: bool = True  # diff sorts changes by what dpkg explains
    after_dpkg: str = "nothing"  # what the apt hook does: nothing, snapshot or check


@dataclass(frozen=True)
class Settings:
    config_dir: Path = DEFAULT_CONFIG_DIR
    state_dir: Path = DEFAULT_STATE_DIR
    snapshot: SnapshotSettings = field(default_factory=SnapshotSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    filetraq: FiletraqSettings = field(default_factory=FiletraqSettings)
    daily: DailySettings = field(default_factory=DailySettings)
    packages: PackagesSettings = field(default_factory=PackagesSettings)
    rules: dict[str, Rule] = field(default_factory=dict)  # those [rules] defines

    @property
    def layout(self) -> Layout:
        """Where every file of this configuration and state directory lives."""
        return Layout(self.config_dir, self.state_dir)

    @property
    def rule_book(self) -> dict[str, Rule]:
        """Every rule a list line may name: the shipped ones and those of [rules]."""
        return rule_book(self.report.fields, self.rules)


# Keys as the file spells them, where they differ from the attribute name.
_RENAMED = {("mail", "from"): "sender"}
_CHOICES = {
    ("snapshot", "hash"): tuple(ALGORITHMS),
    ("mail", "transport"): ("sendmail", "smtp"),
    ("filetraq", "diff_style"): STYLES,
    ("filetraq", "diff_order"): ORDERS,
    ("packages", "after_dpkg"): ("nothing", "snapshot", "check"),
}
_SECTIONS = {
    "snapshot": SnapshotSettings,
    "report": ReportSettings,
    "mail": MailSettings,
    "filetraq": FiletraqSettings,
    "daily": DailySettings,
    "packages": PackagesSettings,
}


def _line_of(text: str, section: str, key: str | None) -> int | None:
    """Best-effort line number of a key (or a section header) for error messages."""
    in_section = key is None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("["):
            in_section = stripped.strip("[] ") == section
            if key is None and in_section:
                return number
            continue
        if in_section and key and re.match(rf"\s*\"?{re.escape(key)}\"?\s*=", line):
            return number
    return None


def _coerce(value: Any, default: Any, name: str) -> Any:
    """Check a value against the type of its default and return it in that type."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise TypeError(f"{name} must be true or false")
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise TypeError(f"{name} must be a number, 0 or more")
        if not math.isfinite(value):  # TOML has inf and nan; 1e400 is inf too
            raise TypeError(f"{name} must be a finite number (found {value})")
        if isinstance(default, int) and value != int(value):
            raise TypeError(f"{name} must be a whole number")
        return type(default)(value)
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise TypeError(f"{name} must be a string")
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TypeError(f"{name} must be a list of strings")


def _file_keys(section: str, cls: type) -> dict[str, dataclasses.Field]:
    """Map each key as the file spells it to its dataclass field."""
    spelled = {attr: key for (sec, key), attr in _RENAMED.items() if sec == section}
    return {spelled.get(f.name, f.name): f for f in dataclasses.fields(cls)}


def parse_settings(text: str, path: Path, config_dir: Path, state_dir: Path) -> Settings:
    """Parse systraq.conf text; raise ConfigError naming the file (and line) on bad input."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"not valid TOML: {err}", path) from None
    sections: dict[str, Any] = {}
    for section, values in data.items():
        if section not in _SECTIONS and section != "rules":
            raise ConfigError(f"unknown section [{section}] (known: "
                              f"{', '.join([*_SECTIONS, 'rules'])})",
                              path, _line_of(text, section, None))
        if not isinstance(values, dict):
            raise ConfigError(f"{section} must be a [section]", path)
        if section == "rules":
            sections["rules"] = _parse_rules(values, text, path)
            continue
        cls = _SECTIONS[section]
        known = _file_keys(section, cls)
        kwargs = {}
        for key, value in values.items():
            line = _line_of(text, section, key)
            if key not in known:
                raise ConfigError(f"unknown setting {section}.{key} (known: "
                                  f"{', '.join(known)})", path, line)
            attr = known[key].name
            try:
                value = _coerce(value, known[key].default, f"{section}.{key}")
            except TypeError as err:
                raise ConfigError(str(err), path, line) from None
            try:
                check_value(section, key, value)
            except ValueError as err:
                raise ConfigError(str(err), path, line) from None
            choices = _CHOICES.get((section, attr))
            if choices and value not in choices:
                raise ConfigError(f"{section}.{key} must be one of {', '.join(choices)}",
                                  path, line)
            if attr == "fields":
                unknown = [f for f in value if f not in REPORTABLE_FIELDS]
                if unknown:
                    raise ConfigError(f"report.fields: unknown field {unknown[0]!r} (known: "
                                      f"{', '.join(REPORTABLE_FIELDS)})", path, line)
            if (section, attr) == ("daily", "disable"):
                unknown = [p for p in value if p not in DAILY_PARTS]
                if unknown:
                    raise ConfigError(f"daily.disable: unknown part {unknown[0]!r} (known: "
                                      f"{', '.join(DAILY_PARTS)})", path, line)
            kwargs[attr] = value
        sections[section] = cls(**kwargs)
    return Settings(config_dir=config_dir, state_dir=state_dir, **sections)


def _rule_line(text: str, name: str, key: str | None) -> int | None:
    """Line of a rule (``[rules.NAME]`` or ``NAME = {...}`` in ``[rules]``), or of its key."""
    table = f"rules.{name}"
    line = _line_of(text, table, key) if key else _line_of(text, table, None)
    return line or _line_of(text, "rules", name)


def _parse_rules(values: dict[str, Any], text: str, path: Path) -> dict[str, Rule]:
    rules = {}
    for name, value in values.items():
        try:
            rules[name] = parse_rule(name, value)
        except RuleError as err:
            raise ConfigError(str(err), path, _rule_line(text, err.name, err.key)) from None
    return rules


def load_settings(config_dir: Path | str, state_dir: Path | str) -> Settings:
    """Read CONFIG/systraq.conf if it exists; an absent file means every default."""
    # Absolute: a job that drops privileges works from "/", and lists name absolute paths.
    config_dir, state_dir = Path(config_dir).absolute(), Path(state_dir).absolute()
    path = config_dir / CONFIG_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Settings(config_dir=config_dir, state_dir=state_dir)
    except OSError as err:
        raise ConfigError(f"cannot read: {os.strerror(err.errno or 0)}", path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", path) from None
    return parse_settings(text, path, config_dir, state_dir)
