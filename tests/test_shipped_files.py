"""What `make install` ships: every cron job runs a real command, man pages match --help."""

from __future__ import annotations

import re
import shlex
import subprocess

from .conftest import REPO, Workspace


def cron_commands() -> list[list[str]]:
    jobs = []
    for line in (REPO / "cron.d" / "systraq").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" in line.split()[0]:
            continue
        fields = line.split(None, 6)  # m h dom mon dow user command
        jobs.append(shlex.split(fields[6]))
    return jobs


def test_every_cron_job_names_an_existing_command_and_options(ws: Workspace) -> None:
    jobs = cron_commands()
    assert jobs, "the cron file has jobs"
    for argv in jobs:
        assert argv[0] == "systraq"
        done = ws.run(*argv[1:], "--help")
        assert done.returncode == 0, (argv, done.stderr)


def test_the_man_page_documents_every_command_and_option(ws: Workspace) -> None:
    man = (REPO / "man" / "systraq.8").read_text().replace("\\-", "-")
    commands = re.findall(r"^  (\S+)\s{2,}", ws.run("--help").stdout.split("Commands:")[1],
                          re.MULTILINE)
    assert {"snapshot", "diff", "check", "baseline", "filetraq"} <= set(commands)
    for command in commands:
        assert f'.SS "{command}' in man, command
        options = set(re.findall(r"(--[a-z][a-z-]+)", ws.run(command, "--help").stdout))
        for option in options - {"--help"}:
            assert option in man, (command, option)


def test_man_pages_render_without_warnings() -> None:
    for page in sorted((REPO / "man").iterdir()):
        done = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                              text=True, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0 and not done.stderr.strip(), (page, done.stderr)
