"""The durable outbox: one SQLite file (WAL) per instance.

Every recorded event becomes a row ``(seq, lane, body)`` and is deleted only
once the hub has acknowledged it (or moved to the ``dead`` table when the hub
refused it for good). Recording is cheap on the caller's thread: the caller
numbers and serializes the event under one lock (so queue order is sequence
order), copies it into the crash journal and hands it to a writer thread
through a :class:`queue.SimpleQueue`; the writer commits rows in groups.

Durability point (``config.outbox.durability``):

``group`` (default)
    The writer commits whatever arrived within ``group_commit_ms`` in one
    transaction (``synchronous=FULL``). Until then the row is in the crash
    journal (:mod:`experience_sync.client.journal`), which survives the death
    of the process but not a power loss: an event survives ``kill -9`` once
    ``record`` returned, and a power loss ``group_commit_ms`` plus one fsync
    later. ``flush()`` waits for the commit.
``sync``
    ``record`` returns only once the event's transaction is committed.
    Concurrent callers share commits.

Capacity (``max_events``, counting rows not yet acknowledged): when full,
``when_full = "block"`` waits up to ``block_timeout`` seconds for room, then
raises :class:`~experience_sync.errors.OutboxFullError`; ``"refuse"`` raises
at once. Both are counted as *refused* with a reason; nothing is dropped
silently.

Sequence numbers, the Lamport clock and the instance's counters are stored in
the same transactions as the rows, so they survive restarts.

When a commit fails (a full disk: ``SQLITE_FULL``, ``ENOSPC``; an I/O error;
a read-only file) the writer thread survives and reports it (``error``,
``on_error``). Rows that only the commit could make durable (``sync`` mode,
or a full journal) are given up at once and their ``add`` raises
:class:`~experience_sync.errors.DiskFullError` (or its parent
:class:`~experience_sync.errors.OutboxWriteError`): the event was not
recorded. Rows already in the crash journal (``group`` mode) are kept and
retried with back-off (``RETRY_BASE`` doubling up to ``RETRY_MAX``); while
the writer holds such rows, ``add`` refuses new events with the same error.
The first commit that succeeds clears the error, without a restart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from experience_sync.client.journal import NO_SPACE, Journal
from experience_sync.client.state import LocalState
from experience_sync.config import OutboxConfig
from experience_sync.errors import DiskFullError, OutboxFullError, OutboxWriteError
from experience_sync.models import InstanceState, InstanceSummary

log = logging.getLogger("experience_sync.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    lane TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_lane ON outbox (lane, seq);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    lane TEXT NOT NULL,
    body BLOB NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

#: Back-off of the writer's retries after a failed commit: first delay, cap (seconds).
RETRY_BASE = 0.05
RETRY_MAX = 5.0
#: Rows per transaction when committing what a failed commit kept.
RETRY_ROWS = 500

#: Counters kept in ``meta`` next to ``next_seq`` and ``lamport``.
COUNTERS = ("recorded", "delivered", "filtered", "refused", "dead", "retries")
#: Saves a counter that only grows (``filtered``, ``refused``): never lowered
#: by a writer that read it earlier.
_SAVE_GROWING = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)"
)


@dataclass
class Row:
    """One committed outbox row."""

    seq: int
    lane: str
    body: bytes


#: A queued row: ``(seq, lane, body, state_kind, state_key, journaled)``; a plain
#: tuple is the cheapest thing to build on the caller's thread.
_Pending = tuple[int, str, bytes, str | None, str, bool]


def write_error(exc: BaseException, path: Path) -> OutboxWriteError:
    """The documented error for a failed write of the outbox at ``path``."""
    if isinstance(exc, OutboxWriteError):
        return exc
    code = getattr(exc, "sqlite_errorcode", None) if isinstance(exc, sqlite3.Error) else None
    full = code == 13 or (isinstance(exc, OSError) and exc.errno in NO_SPACE)
    if code is not None and code & 0xFF == 10:
        # SQLITE_IOERR does not say why; on a file system with no room left
        # (the WAL index cannot grow, a write came up short) it is a full disk.
        full = _no_room(path)
    cls = DiskFullError if full else OutboxWriteError
    err = cls(f"the outbox {path} cannot make events durable: {exc}")
    err.__cause__ = exc
    return err


def _no_room(path: Path) -> bool:
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite ends the transaction itself on SQLITE_FULL: a second ROLLBACK would
    # raise "no transaction is active" and hide the real error.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # the original error is the one to report
            conn.execute("ROLLBACK")


@dataclass
class Counters:
    """The instance's counters, persisted in the outbox."""

    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    reasons: dict[str, int] = field(default_factory=dict)

    def bump(self, name: str, n: int = 1, reason: str | None = None) -> None:
        """Add ``n`` to the counter ``name`` (and to ``name:reason`` with a reason)."""
        self.values[name] = self.values.get(name, 0) + n
        if reason:
            key = f"{name}:{reason}"
            self.reasons[key] = self.reasons.get(key, 0) + n


def connect(path: Path) -> sqlite3.Connection:
    """Open the outbox database with the pragmas every connection needs."""
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed group survives power loss, not only a process crash.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class Outbox:
    """A bounded, durable queue of serialized events, split into protocol lanes."""

    def __init__(
        self,
        path: str | Path,
        config: OutboxConfig,
        *,
        on_commit: Callable[[], None] | None = None,
        on_full: Callable[[str], None] | None = None,
        on_error: Callable[[OutboxWriteError | None], None] | None = None,
        keep_memories: bool = True,
        encode: Callable[[dict[str, Any]], bytes] = orjson.dumps,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.on_commit = on_commit
        self.on_full = on_full
        #: Called on the writer thread after each failed commit, and with
        #: ``None`` once a commit succeeds again.
        self.on_error = on_error
        self._sync = config.durability == "sync"
        self._encode = encode
        self._group_s = config.group_commit_ms / 1000.0

        try:
            self._wconn = connect(self.path)
            self._wconn.executescript(_SCHEMA)
            self._rconn = connect(self.path)
        except (sqlite3.Error, OSError) as exc:
            raise write_error(exc, self.path) from exc
        self.state = LocalState(self._wconn, keep_memories=keep_memories)
        # Acknowledgements need no fsync: one lost in a crash only means the
        # rows are sent again, and the hub absorbs the duplicates.
        self._rconn.execute("PRAGMA synchronous=NORMAL")
        self._rlock = threading.Lock()

        meta = dict(self._wconn.execute("SELECT key, value FROM meta").fetchall())
        max_seq = int(self._wconn.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0])
        max_dead = int(self._wconn.execute("SELECT COALESCE(MAX(seq), 0) FROM dead").fetchone()[0])
        self._next_seq: int = max(int(meta.get("next_seq", 1)), max_seq + 1, max_dead + 1)
        self._lamport = int(meta.get("lamport", 0))
        self.counters = Counters()
        for name in COUNTERS:
            self.counters.values[name] = int(meta.get(name, 0))
        self._pending: dict[str, int] = {
            lane: n
            for lane, n in self._wconn.execute(
                "SELECT lane, COUNT(*) FROM outbox GROUP BY lane"
            ).fetchall()
        }
        self._size = sum(self._pending.values())
        # Everything up to the watermark is committed (rows are queued in
        # sequence order, so the last committed row is the watermark).
        self._watermark = self._next_seq - 1
        self._queued = 0
        self.journal: Journal | None = None
        if not self._sync:
            try:
                self.journal = Journal(self.path.parent)
            except OutboxWriteError as exc:
                # No room for the journal: replay what an earlier run left,
                # then run without one (every add waits for its commit).
                log.warning("%s; recording waits for each commit until a restart", exc)
                self.journal = Journal(self.path.parent, writable=False)
            self._replay_journal(int(meta.get("committed", self._next_seq - 1)))
            if not self.journal.writable:
                self.journal.close()
                self.journal = None

        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._durable = threading.Condition(threading.Lock())
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._closed = False
        #: The last failed commit, until a commit succeeds again.
        self.error: OutboxWriteError | None = None
        self._unsaved = 0  # journaled rows the writer holds after a failed commit
        self._given_up: dict[int, OutboxWriteError] = {}  # seq -> why, for its waiter
        self._stranded = False  # closed with rows left in the journal only
        self._writer = threading.Thread(
            target=self._write_loop, name=f"experience-sync-outbox-{self.path.parent.name}",
            daemon=True,
        )
        self._writer.start()

    def _replay_journal(self, committed: int) -> None:
        """Commit what a killed process had journaled but not yet committed."""
        assert self.journal is not None
        rows = {r[0]: r for r in self.journal.records() if r[0] > committed}
        if rows:
            batch = [rows[seq] for seq in sorted(rows)]
            top = batch[-1][0]
            self._next_seq = max(self._next_seq, top + 1)
            self._lamport = max(self._lamport, top)
            conn = self._wconn
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.executemany(
                    "INSERT OR IGNORE INTO outbox (seq, lane, body) VALUES (?, ?, ?)",
                    [r[:3] for r in batch],
                )
                added = int(cur.rowcount)
                self.state.apply([(r[3], r[4], r[2]) for r in batch if r[3] is not None])
                self.counters.bump("recorded", added)
                meta = [("next_seq", self._next_seq), ("lamport", self._lamport),
                        ("committed", self._next_seq - 1),
                        ("recorded", self.counters.values["recorded"])]
                conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta)
                conn.execute("COMMIT")
            except (sqlite3.Error, OSError) as exc:
                _rollback(conn)  # the journal is kept: the next start replays it
                raise write_error(exc, self.path) from exc
            except BaseException:
                _rollback(conn)
                raise
            log.info("replayed %d journaled events into %s", added, self.path)
            self._pending = {
                lane: n
                for lane, n in conn.execute(
                    "SELECT lane, COUNT(*) FROM outbox GROUP BY lane"
                ).fetchall()
            }
            self._size = sum(self._pending.values())
            self._watermark = self._next_seq - 1
        self.journal.clear()

    # ------------------------------------------------------------------ caller side

    @property
    def last_seq(self) -> int:
        """The last sequence number handed out."""
        return self._next_seq - 1

    @property
    def size(self) -> int:
        """Events recorded and not yet acknowledged (committed or queued)."""
        return self._size

    def pending(self, lane: str) -> int:
        """Committed rows waiting in ``lane``."""
        return self._pending.get(lane, 0)

    def add(
        self,
        lane: str,
        values: dict[str, Any],
        state_kind: str | None = None,
        state_key: str = "",
    ) -> int:
        """Number, serialize and queue one event; returns its sequence number.

        Sets ``values["sequence"]`` and ``values["lamport"]``, encodes them with
        the outbox's ``encode``, applies the full policy, copies the row into the
        crash journal (``group`` mode) and queues it for the writer; in ``sync``
        mode waits until it is committed. ``state_kind``/``state_key`` say which
        local-state row the event updates (``("skill", name)``, ...).
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the outbox is closed")
            refused: BaseException | None = None
            if self._unsaved and self.error is not None:
                # group mode: the writer holds accepted rows it cannot commit
                self.counters.bump("refused", reason=_reason(self.error))
                refused = _fresh(self.error)
            elif self._size >= self.config.max_events:
                try:
                    self._wait_for_room()
                except OutboxFullError as exc:
                    refused = exc
            if refused is None:
                seq, journaled = self._take(lane, values, state_kind, state_key)
        if refused is not None:
            # Saved now, not at the next commit: a crash must not forget it.
            self._save_counters()
            raise refused
        if not journaled:  # sync mode, or the journal is full of uncommitted rows
            self._wait_committed(seq)
        return seq

    def _take(
        self, lane: str, values: dict[str, Any], state_kind: str | None, state_key: str
    ) -> tuple[int, bool]:
        """Number, encode, journal and queue one row; the caller holds ``self._lock``.

        :returns: the row's sequence number, and whether the journal holds it.
        """
        seq = self._next_seq
        lamport = self._lamport + 1
        values["sequence"] = seq
        values["lamport"] = lamport
        body = self._encode(values)  # may raise: nothing is taken yet
        self._next_seq = seq + 1
        self._lamport = lamport
        self._size += 1
        self._queued += 1
        self.counters.values["recorded"] += 1
        journal = self.journal
        journaled = journal is not None and journal.append(
            seq, lane, body, state_kind, state_key, self._watermark
        )
        self._queue.put((seq, lane, body, state_kind, state_key, journaled))
        return seq, journaled

    def _save_counters(self, names: Sequence[str] = ("filtered", "refused")) -> None:
        """Persist counters that change without a commit (refusals, filtered events).

        They only grow, so the row keeps the larger of what is stored and what
        is written: a commit that snapshotted them earlier cannot lower them.
        A failure (a full disk) is logged; the next commit saves them again.
        """
        with self._lock:
            values = [(n, self.counters.values.get(n, 0)) for n in names]
        try:
            with self._rlock:
                self._rconn.executemany(_SAVE_GROWING, values)
        except sqlite3.Error as exc:
            log.warning("outbox %s: counters not saved (%s); the next commit saves them", self.path, exc)

    def _wait_committed(self, seq: int) -> None:
        """Wait for the commit of a row nothing else keeps; raise if it was given up."""
        with self._durable:
            while True:
                err = self._given_up.pop(seq, None)
                if err is not None:
                    raise _fresh(err)
                if self._watermark >= seq:
                    return
                if not self._writer.is_alive():
                    raise OutboxWriteError(f"the outbox {self.path} is closed: event not recorded")
                self._durable.wait(1.0)

    def _wait_for_room(self) -> None:
        # Called with self._lock held.
        limit = self.config.max_events
        if self.config.when_full == "block" and self.config.block_timeout > 0:
            deadline = time.monotonic() + self.config.block_timeout
            while self._size >= limit:
                left = deadline - time.monotonic()
                if left <= 0 or not self._room.wait(left):
                    break
            if self._size < limit:
                return
            reason = "outbox_full_timeout"
        else:
            reason = "outbox_full"
        self.counters.bump("refused", reason=reason)
        if self.on_full is not None:
            self.on_full(reason)
        raise OutboxFullError(
            f"the outbox holds {self._size} unacknowledged events (max_events={limit}); "
            f"event refused ({reason})"
        )

    def watermark(self) -> int:
        """The sequence up to which every event is committed."""
        return self._watermark

    def count(self, name: str, reason: str | None = None, n: int = 1) -> None:
        """Bump a counter (``filtered``, ``refused``, ``retries``) with a reason.

        ``filtered`` and ``refused`` are saved at once (a crash keeps them).
        """
        with self._lock:
            self.counters.bump(name, n, reason=reason)
        if name in ("filtered", "refused"):
            self._save_counters((name,))

    def observe_lamport(self, value: int) -> None:
        """Advance the Lamport clock past a value seen elsewhere."""
        with self._lock:
            self._lamport = max(self._lamport, value)

    @property
    def unsaved(self) -> int:
        """Accepted rows the writer holds after a failed commit (in the journal only)."""
        return self._unsaved

    def wait_durable(self, seq: int, timeout: float | None) -> bool:
        """Wait until every event up to ``seq`` is committed (or was refused).

        ``False`` on timeout, or when the writer has stopped: while commits
        fail, the writer retries and this waits.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._durable:
            while self._watermark < seq:
                if not self._writer.is_alive():
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._durable.wait(left if left is not None else 1.0)
            return True

    # ------------------------------------------------------------------ writer thread

    def _write_loop(self) -> None:
        stop = False
        carry: list[_Pending] = []  # journaled rows a failed commit kept
        failures = 0
        while True:
            if carry:
                delay = min(RETRY_MAX, RETRY_BASE * 2 ** (failures - 1))
                if not stop and failures:  # wait before retrying, taking in what arrives
                    stop = self._drain_until(carry, time.monotonic() + delay)
                # Retry in slices: one transaction for everything held could
                # need more room than the disk will ever have.
                batch, carry = carry[:RETRY_ROWS], carry[RETRY_ROWS:]
            else:
                if stop:
                    break
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                if self.journal is None:  # sync mode, or no room for a journal
                    stop = self._drain_now(batch)
                else:
                    stop = self._drain_until(batch, time.monotonic() + self._group_s)
            try:
                self._commit(batch)
            except Exception as exc:  # the writer survives: report, give up or retry
                failures += 1
                carry = self._failed_commit(batch, write_error(exc, self.path), carry)
                if stop and carry:
                    log.warning(
                        "outbox %s closed with %d events in its journal only; "
                        "the next start commits them", self.path, len(carry),
                    )
                    self._stranded = True
                    break
                continue
            if carry:
                failures = 0  # progress: the next slice goes at once
                with self._lock:
                    self._unsaved = len(carry)
                continue
            if failures or self.error is not None:
                failures = 0
                with self._lock:
                    self.error = None
                    self._unsaved = 0
                log.warning("outbox %s commits again", self.path)
                self._report(None)

    def _failed_commit(
        self, batch: list[_Pending], err: OutboxWriteError, rest: list[_Pending]
    ) -> list[_Pending]:
        """Give up the rows only the commit could keep; return what to retry.

        Those of ``rest`` too: a row the journal had no room for, taken in
        while a retry waited, would otherwise wait behind every slice of the
        retried rows, and its ``add`` with it, for as long as the disk is full.
        """
        kept = [p for p in batch if p[5]] + [p for p in rest if p[5]]
        dropped = [p for p in batch if not p[5]] + [p for p in rest if not p[5]]
        log.error("%s (%d events kept for a retry, %d refused)", err, len(kept), len(dropped))
        with self._lock:
            self.error = err
            self._unsaved = len(kept)
            if dropped:
                n = len(dropped)
                self._queued -= n
                self._size -= n
                self.counters.values["recorded"] -= n
                self.counters.bump("refused", n, reason=_reason(err))
                self._room.notify_all()
        with self._durable:
            for p in dropped:
                self._given_up[p[0]] = err
            if dropped and not kept:  # nothing below them is outstanding any more
                self._watermark = max(self._watermark, max(p[0] for p in dropped))
            self._durable.notify_all()
        self._report(err)
        return kept

    def _report(self, err: OutboxWriteError | None) -> None:
        if self.on_error is not None:
            try:
                self.on_error(err)
            except Exception:  # a failing observer must not stop the writer
                log.exception("outbox on_error callback failed")

    def _drain_now(self, batch: list[_Pending]) -> bool:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            batch.append(item)

    def _drain_until(self, batch: list[_Pending], deadline: float) -> bool:
        while True:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            batch.append(item)

    def _commit(self, batch: Sequence[_Pending]) -> None:
        conn = self._wconn
        with self._lock:
            values = dict(self.counters.values)
            # Persist only what is committed; queued events are in the journal,
            # and a replay counts them when it commits them.
            values["recorded"] -= self._queued - len(batch)
            lamport = self._lamport
            next_seq = self._next_seq
        committed = batch[-1][0]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO outbox (seq, lane, body) VALUES (?, ?, ?)",
                [p[:3] for p in batch],
            )
            self.state.apply([(p[3], p[4], p[2]) for p in batch if p[3] is not None])
            meta = [("next_seq", next_seq), ("lamport", lamport), ("committed", committed),
                    ("recorded", values["recorded"])]
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta)
            conn.executemany(_SAVE_GROWING, [(k, values[k]) for k in ("filtered", "refused")])
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        with self._lock:
            self._queued -= len(batch)
            for p in batch:
                self._pending[p[1]] = self._pending.get(p[1], 0) + 1
        with self._durable:
            self._watermark = committed
            self._durable.notify_all()
        if self.on_commit is not None:
            self.on_commit()

    # ------------------------------------------------------------------ worker side

    def read(self, lane: str, limit: int, after: int = 0) -> list[Row]:
        """The oldest committed rows of ``lane`` after sequence ``after``."""
        with self._rlock:
            rows = self._rconn.execute(
                "SELECT seq, lane, body FROM outbox WHERE lane = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (lane, after, limit),
            ).fetchall()
        return [Row(seq, ln, body) for seq, ln, body in rows]

    def adopt_lanes(self, lanes: list[str]) -> int:
        """Move rows of lanes no longer configured to the last of ``lanes``.

        A restart with other protocols must not strand what an earlier run
        recorded; the last lane in routing order is the least selective one.
        Returns how many rows moved.
        """
        target = lanes[-1]
        with self._rlock, self._lock:
            orphans = [lane for lane in self._pending if lane not in lanes]
            if not orphans:
                return 0
            marks = ",".join("?" * len(orphans))
            cur = self._rconn.execute(
                f"UPDATE outbox SET lane = ? WHERE lane IN ({marks})", (target, *orphans)
            )
            moved = sum(self._pending.pop(lane, 0) for lane in orphans)
            self._pending[target] = self._pending.get(target, 0) + moved
            return int(cur.rowcount)

    def min_outstanding(self) -> int | None:
        """The smallest sequence still in the outbox, if any."""
        with self._rlock:
            value = self._rconn.execute("SELECT MIN(seq) FROM outbox").fetchone()[0]
        return None if value is None else int(value)

    def ack(self, rows: Iterable[Row]) -> int:
        """Delete acknowledged rows; returns how many were removed."""
        return self._remove(list(rows), None)

    def dead_letter(self, rows: Iterable[Row], reason: str, status: int | None) -> int:
        """Move rows the hub refused for good to the ``dead`` table."""
        return self._remove(list(rows), (reason, status))

    def _remove(self, rows: list[Row], dead: tuple[str, int | None] | None) -> int:
        if not rows:
            return 0
        seqs = [(r.seq,) for r in rows]
        name = "delivered" if dead is None else "dead"
        with self._lock:
            self.counters.bump(name, len(rows), reason=dead[0] if dead else None)
            count = self.counters.values[name]
            retries = self.counters.values["retries"]
        with self._rlock:
            conn = self._rconn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if dead is not None:
                    now = time.time()
                    conn.executemany(
                        "INSERT OR REPLACE INTO dead (seq, lane, body, status, reason, at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [(r.seq, r.lane, r.body, dead[1], dead[0], now) for r in rows],
                    )
                conn.executemany("DELETE FROM outbox WHERE seq = ?", seqs)
                conn.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [(name, count), ("retries", retries)],
                )
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        with self._lock:
            for r in rows:
                self._pending[r.lane] = self._pending.get(r.lane, 0) - 1
            self._size -= len(rows)
            self._room.notify_all()
        return len(rows)

    def purge(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, int]:
        """Delete every unsent event, dead letter and local-state row whose event ``match`` es.

        For a data-deletion request (see :mod:`experience_sync.forgetting`):
        call it once what is queued is committed (``wait_durable``). Freed
        space is zeroed and the WAL emptied, so the text leaves the file. A
        row the worker is sending at that moment may still reach the hub
        (forget it there). Returns how many rows went, by table.
        """
        tables = {
            "outbox": "seq", "dead": "seq", "local_memories": "seq",
            "local_skills": "name", "local_knowledge": "key", "local_characteristics": "key",
        }
        with self._rlock:
            conn = self._rconn
            doomed: dict[str, list[tuple[Any]]] = {}
            lanes: dict[str, int] = {}
            for table, key in tables.items():
                extra = ", lane" if table == "outbox" else ""
                doomed[table] = []
                for row in conn.execute(f"SELECT {key}, body{extra} FROM {table}"):
                    if match(orjson.loads(row[1])):
                        doomed[table].append((row[0],))
                        if table == "outbox":
                            lanes[row[2]] = lanes.get(row[2], 0) + 1
            conn.execute("PRAGMA secure_delete=ON")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for table, keys in doomed.items():
                        conn.executemany(
                            f"DELETE FROM {table} WHERE {tables[table]} = ?", keys
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.execute("PRAGMA secure_delete=OFF")
        gone = len(doomed["outbox"])
        if gone:
            with self._lock:
                for lane, n in lanes.items():
                    self._pending[lane] = self._pending.get(lane, 0) - n
                self._size -= gone
                self._room.notify_all()
        return {table: len(keys) for table, keys in doomed.items()}

    def dead_rows(self) -> list[dict[str, Any]]:
        """The dead-letter table: what the hub refused, with the reason."""
        with self._rlock:
            rows = self._rconn.execute(
                "SELECT seq, lane, body, status, reason, at FROM dead ORDER BY seq"
            ).fetchall()
        return [
            {"seq": s, "lane": ln, "event": orjson.loads(b), "status": st, "reason": r, "at": at}
            for s, ln, b, st, r, at in rows
        ]

    def snapshot(self) -> InstanceState:
        """The instance's full local state (read on the worker's connection)."""
        with self._rlock:
            return self.state.snapshot(self._rconn, self.counters)

    def summary(self) -> InstanceSummary:
        """Counts of the local state and the last sequence."""
        with self._rlock:
            return self.state.summary(self._rconn, self.counters, self.last_seq)

    def skills(self) -> dict[str, dict[str, Any]]:
        """The latest local skill reports, by case-folded name."""
        with self._rlock:
            return self.state.skills(self._rconn)

    # ------------------------------------------------------------------ lifecycle

    def close(self, timeout: float = 5.0, *, reader_in_use: bool = False) -> bool:
        """Commit what is queued, stop the writer and close the database.

        ``reader_in_use``: a worker that did not stop in time may still read or
        acknowledge; its connection is then left to be closed when collected.
        """
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        self._queue.put(None)
        self._writer.join(timeout)
        done = not self._writer.is_alive()
        if done:
            self._wconn.close()
            if self.journal is not None:
                if not self._stranded:
                    self.journal.clear()  # everything it held is committed now
                self.journal.close()
            done = not self._stranded
        if not reader_in_use:
            with self._rlock:
                self._rconn.close()
        return done

    def abandon(self) -> None:
        """Forget the connections and thread without touching them (forked child)."""
        self._closed = True
        self.journal = None


def _reason(err: OutboxWriteError) -> str:
    return "disk_full" if isinstance(err, DiskFullError) else "write_failed"


def _fresh(err: OutboxWriteError) -> OutboxWriteError:
    # A new instance per raise: re-raising one object from many calls would
    # chain every traceback onto it.
    new = type(err)(str(err))
    new.__cause__ = err.__cause__
    return new
