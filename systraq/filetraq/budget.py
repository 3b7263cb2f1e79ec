"""The backup store's size budget (``filetraq.store_budget``): what a run may add to it.

The store's size is what it holds on disk (allocated blocks of every file and directory,
each inode once however many names it has), measured once per run, and only by a run
that has something to store. Each new content is charged its size rounded up to whole
blocks, plus a block for a new entry's directory. The first content that would take the
store past its budget is refused, and so is everything after it in that run: the run
stores nothing more, and the files it did not store are tracked by size and sha256.
"""

from __future__ import annotations

from collections.abc import Callable

BLOCK = 4096


def cost(size: int, new_entry: bool) -> int:
    """What storing ``size`` bytes adds to the store, about (whole blocks)."""
    return -(-size // BLOCK) * BLOCK + (BLOCK if new_entry else 0)


class Budget:
    """What one run may still add to the store."""

    def __init__(self, limit: int, measure: Callable[[], int]) -> None:
        self.limit = limit  # bytes; 0: no budget
        self._measure = measure
        self.used: int | None = None  # measured on first need
        self.full = False  # a content was refused: nothing more is stored this run

    def take(self, amount: int) -> bool:
        """Whether ``amount`` more bytes may be stored (and count them if so)."""
        if not self.limit:
            return True
        if self.used is None:
            self.used = self._measure()
        if self.full or self.used + amount > self.limit:
            self.full = True
            return False
        self.used += amount
        return True

    def reason(self) -> str:
        """Why a file was not stored, as the report says it."""
        used = f"{self.used:,}" if self.used is not None else "?"
        return (f"the backup store holds {used} of its {self.limit:,}-byte budget "
                "(filetraq.store_budget)")
