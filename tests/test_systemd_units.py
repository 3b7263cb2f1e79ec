"""The systemd units: each job sandboxed, rated by systemd-analyze, run by a timer.

Exposure limits (systemd-analyze security, 0 = fully locked down, 10 = unprotected): the
units that run as the systraq account at most 2.0, the root ones at most 4.5.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from systraq.setup.init import TIMER_COMMANDS

from .conftest import REPO, Workspace

UNITS = REPO / "systemd"
SERVICES = sorted(UNITS.glob("*.service"))
PUB_LIMIT, ROOT_LIMIT = 2.0, 4.5


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def exposure(path: Path) -> float:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: .ci/run installs systemd")
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.stem)
def test_every_job_is_sandboxed_within_its_exposure_limit(service: Path) -> None:
    settings = unit(service)["Service"]
    as_root = "User" not in settings
    limit = ROOT_LIMIT if as_root else PUB_LIMIT
    level = exposure(service)
    assert level <= limit, f"{service.name}: exposure {level} > {limit}"
    for key, value in (("ProtectSystem", "strict"), ("ReadWritePaths", "/var/lib/systraq"),
                       ("ProtectHome", "read-only"), ("PrivateTmp", "yes"),
                       ("NoNewPrivileges", "yes"), ("UMask", "0077")):
        assert settings.get(key) == value, (service.name, key)
    assert settings.get("SystemCallFilter", "").startswith("@system-service") or \
        "@system-service" in service.read_text()
    caps = settings.get("CapabilityBoundingSet", "")
    expected = "CAP_DAC_READ_SEARCH" if as_root and service.stem in (
        "systraq-snapshot-root", "systraq-daily") else ""
    assert caps == expected, (service.name, caps)


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.stem)
def test_every_job_has_a_persistent_randomized_timer(service: Path) -> None:
    timer = unit(service.with_suffix(".timer"))
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["RandomizedDelaySec"]
    assert timer["Timer"]["OnCalendar"]
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert service.with_suffix(".timer").name in TIMER_COMMANDS, "systraq init enables it"


@pytest.mark.parametrize("service", SERVICES, ids=lambda p: p.stem)
def test_every_job_runs_an_existing_command_once_init_chose_timers(service: Path,
                                                                   ws: Workspace) -> None:
    argv = shlex.split(unit(service)["Service"]["ExecStart"])
    assert argv[:3] == ["/usr/bin/systraq", "--scheduled-by", "timers"]
    if argv[3] == "daily" and "daily" not in ws.run("--help").stdout:
        pytest.skip("systraq daily is not part of this tree yet")
    done = ws.run(*argv[1:], "--help")
    assert done.returncode == 0, done.stderr
