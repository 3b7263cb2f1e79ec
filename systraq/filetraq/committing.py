"""filetraq's commit: the store updates a delivered report announced.

Everything is staged first (dated copies, new content aside), flushed to disk once, then
renamed into place and flushed again. A file that changed again since the report is left
for the next run, which reports it.
"""

from __future__ import annotations

import stat

from systraq.filetraq.checking import Action, Checker, NowPrivate, Raced
from systraq.filetraq.listing import Gone
from systraq.filetraq.store import StagedContent, StoreError
from systraq.pathcodec import escape


class Committer:
    """Does what one check's actions say, after the report about them was delivered."""

    def __init__(self, checker: Checker) -> None:
        self.checker = checker

    def commit(self) -> list[str]:
        """Do the store updates the report announced; return what failed (as messages).

        Everything is staged first (dated copies, new content aside), flushed to disk once,
        then renamed into place and flushed again.
        """
        failures: list[str] = []
        staged = []
        for action in self.checker.actions:
            try:
                staged.append(self._stage(action))
            except (Gone, Raced, NowPrivate):
                continue  # removed or changed again since the report: reported next run
            except (OSError, StoreError) as err:
                failures.append(self._failure(action.path, err))
        if not staged:
            return failures
        self.checker.store.sync()
        for each in staged:
            try:
                self.checker.store.publish(each)
            except (OSError, StoreError) as err:
                failures.append(self._failure(each.path, err))
        self.checker.store.sync()
        return failures

    @staticmethod
    def _failure(path: bytes, err: Exception) -> str:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        return f"{escape(path)}: cannot update the backup store: {reason}"

    def _stage(self, action: Action) -> StagedContent:
        st = self.checker.lister.lstat(action.path)
        if not stat.S_ISREG(st.st_mode):
            raise Raced()
        content = self.checker.read(action.path, st)
        if content.sha256 != action.sha256 or content.data is None:
            raise Raced()
        if action.previous_sha256 is not None:
            orig = self.checker.store.read_orig(action.path, self.checker.limit)
            if orig is None or orig.sha256 != action.previous_sha256:
                raise Raced()  # another filetraq recorded something meanwhile
        elif self.checker.store.exists(action.path, b"orig"):
            raise Raced()
        return self.checker.store.stage(action.path, content.data, content.st,
                                keep_previous=action.previous_sha256 is not None,
                                when=self.checker.when)
