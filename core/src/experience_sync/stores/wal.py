"""Checkpointing a SQLite store's write-ahead log off the commit path.

In WAL mode SQLite copies committed pages from the ``-wal`` file back into
the database file in a *checkpoint*. By default the connection that commits
runs one itself whenever the log passes 1,000 pages, and with
``synchronous=NORMAL`` a checkpoint is where the fsyncs happen: the commit
that crosses the mark waits for them. On the hub that is one request in a
few hundred taking tens of milliseconds longer, which is what a streaming
instance's p99 sees (docs/benchmarks.md, "Streaming end-to-end latency").

:class:`WalCheckpointer` runs the checkpoints on a thread and connection of
its own instead. A ``PASSIVE`` checkpoint takes no lock that a writer
needs, so commits go on while it copies and syncs; the writer's own
automatic checkpoint stays on, at :data:`BACKSTOP_PAGES`, for a log that
grows while the thread cannot keep up (a reader holding an old snapshot).
"""

from __future__ import annotations

import logging
import sqlite3
import threading

__all__ = ["BACKSTOP_PAGES", "CHECKPOINT_INTERVAL", "WalCheckpointer"]

log = logging.getLogger("experience_sync.stores")

#: Seconds between the thread's checkpoints while commits keep coming.
CHECKPOINT_INTERVAL = 0.25
#: The committing connection's own ``wal_autocheckpoint`` while the thread runs
#: (SQLite's default is 1,000 pages): reached only if the thread falls behind.
BACKSTOP_PAGES = 20_000


class WalCheckpointer:
    """Checkpoints the WAL of the database at ``path`` from a background thread.

    :param path: the database file (not ``:memory:``).
    :param interval: seconds between checkpoints while :meth:`committed` is
        being called; an idle store is not checkpointed again until the next
        commit.
    """

    def __init__(self, path: str, interval: float = CHECKPOINT_INTERVAL) -> None:
        self.interval = interval
        self.checkpoints = 0  # completed checkpoint calls
        #: The last checkpoint's ``(busy, log frames, checkpointed frames)``.
        self.last: tuple[int, int, int] | None = None
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # A checkpoint never waits for the writer: it copies what it can now.
        self._conn.execute("PRAGMA busy_timeout=0")
        self._cond = threading.Condition()
        self._dirty = False
        self._stop = False
        self._thread = threading.Thread(
            target=self._run, name="experience-sync-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def committed(self) -> None:
        """A commit landed in the log: checkpoint within ``interval``."""
        if not self._dirty:
            with self._cond:
                self._dirty = True
                self._cond.notify()

    def checkpoint(self) -> tuple[int, int, int]:
        """Run one ``PASSIVE`` checkpoint now: ``(busy, log frames, checkpointed frames)``."""
        row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.last = (int(row[0]), int(row[1]), int(row[2]))
        self.checkpoints += 1
        return self.last

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._dirty and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                # Gather the commits of one interval into one checkpoint.
                self._cond.wait(self.interval)
                if self._stop:
                    return
                self._dirty = False
            try:
                self.checkpoint()
            except sqlite3.Error as exc:  # a locked or full database: the backstop copes
                log.debug("WAL checkpoint failed: %s", exc)

    def close(self) -> None:
        """Stop the thread and close its connection (the store's close checkpoints last)."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()
        self._conn.close()
