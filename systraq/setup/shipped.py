"""Where the files systraq ships beside the program are: example lists, settings, cron file.

Installed (``make install``, the package), the program lives in ``PREFIX/lib/systraq`` and
these files in ``PREFIX/share/systraq`` (``examples/``, ``cron.d/systraq``); in a source
tree they are ``etc/`` and ``cron.d/systraq`` beside the ``systraq`` package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from systraq.errors import SystraqError
from systraq.layout import LIST_KINDS, MODES, SYSTRAQ_CONF, list_name

# The files init copies into a config dir that lacks them. filetraq.conf is generated.
EXAMPLES = (*(list_name(m, k) for m in MODES for k in LIST_KINDS), SYSTRAQ_CONF)

_PACKAGE = Path(__file__).resolve().parent.parent  # .../systraq


@dataclass(frozen=True)
class Shipped:
    examples: Path
    cron_file: Path

    def example(self, name: str) -> Path:
        return self.examples / name


def candidates(package: Path = _PACKAGE) -> list[Shipped]:
    installed = package.parent.parent.parent / "share" / "systraq"  # PREFIX/share/systraq
    source = package.parent
    return [Shipped(installed / "examples", installed / "cron.d" / "systraq"),
            Shipped(source / "etc", source / "cron.d" / "systraq")]


def find_shipped(package: Path = _PACKAGE) -> Shipped:
    for shipped in candidates(package):
        if all(shipped.example(name).is_file() for name in EXAMPLES):
            return shipped
    looked = ", ".join(str(c.examples) for c in candidates(package))
    raise SystraqError(f"the example configuration systraq ships is missing (looked in "
                       f"{looked}): reinstall systraq")
