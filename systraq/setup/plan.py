"""What ``systraq init`` is about to do, as data: steps, notes, and what stops it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Step:
    """One change to the host: the line that announces it, and the function that makes it.

    ``run`` returns a line saying what it did when that says more than ``says`` (counts,
    names), else None.
    """

    says: str
    run: Callable[[], str | None]


@dataclass
class Plan:
    config_dir: Path
    state_dir: Path
    scheduler: str = "cron"
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the administrator should know
    blockers: list[str] = field(default_factory=list)  # why init cannot go on
    migrating_from: list[str] = field(default_factory=list)  # Debian's packages found
    next_steps: list[str] = field(default_factory=list)

    def add(self, says: str, run: Callable[[], str | None]) -> None:
        self.steps.append(Step(says, run))

    @property
    def nothing_to_do(self) -> bool:
        return not self.steps and not self.blockers


@dataclass
class StepDone:
    number: int
    says: str
    said: str | None  # what ``run`` returned
