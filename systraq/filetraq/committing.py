"""filetraq's commit: the store updates a delivered report announced.

Everything is staged first (dated copies, new content aside), flushed to disk once, then
renamed into place and flushed again. A file that changed again since the report is left
for the next run, which reports it.
"""

from __future__ import annotations

import stat

from systraq.filetraq.checking import Action, Checker, NowPrivate, Raced
from systraq.filetraq.listing import Gone
from systraq.filetraq.store import ORIG, StagedContent, StoreError
from systraq.pathcodec import escape


class Committer:
    """Does what one check's actions say, after the report about them was delivered."""

    def __init__(self, checker: Checker) -> None:
        self.checker = checker
        self.staged: dict[bytes, StagedContent] = {}  # by path: what this run wrote

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
                self.staged[action.path] = staged[-1]
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
        keep_previous = action.previous_sha256 is not None
        linked = self._link(action, keep_previous)
        if linked is not None:
            return linked
        return self.checker.store.stage(action.path, content.data, content.st,
                                        keep_previous=keep_previous, when=self.checker.when)

    def _link(self, action: Action, keep_previous: bool) -> StagedContent | None:
        """Stage a hard link to the content stored for an earlier name of the same file:
        written this run, or its ``orig`` if that still holds this content."""
        if action.same_as is None:
            return None
        store = self.checker.store
        earlier = self.staged.get(action.same_as)
        if earlier is not None:
            source = earlier.tmp
        else:
            orig = store.read_orig(action.same_as, self.checker.limit)
            if orig is None or orig.content is None or orig.sha256 != action.sha256:
                return None
            source = ORIG
        return store.stage_link(action.path, action.same_as, source, keep_previous,
                                self.checker.when)
