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
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from experience_sync.client.journal import Journal
from experience_sync.client.state import LocalState
from experience_sync.config import OutboxConfig
from experience_sync.errors import OutboxFullError
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

#: Counters kept in ``meta`` next to ``next_seq`` and ``lamport``.
COUNTERS = ("recorded", "delivered", "filtered", "refused", "dead", "retries")


@dataclass
class Row:
    """One committed outbox row."""

    seq: int
    lane: str
    body: bytes


#: A queued row: ``(seq, lane, body, state_kind, state_key)``; a plain tuple is the
#: cheapest thing to build on the caller's thread.
_Pending = tuple[int, str, bytes, str | None, str]


@dataclass
class Counters:
    """The instance's counters, persisted in the outbox."""

    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    reasons: dict[str, int] = field(default_factory=dict)

    def bump(self, name: str, n: int = 1, reason: str | None = None) -> None:
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
        keep_memories: bool = True,
        encode: Callable[[dict[str, Any]], bytes] = orjson.dumps,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.on_commit = on_commit
        self.on_full = on_full
        self._sync = config.durability == "sync"
        self._encode = encode
        self._group_s = config.group_commit_ms / 1000.0

        self._wconn = connect(self.path)
        self._wconn.executescript(_SCHEMA)
        self.state = LocalState(self._wconn, keep_memories=keep_memories)
        self._rconn = connect(self.path)
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
            self.journal = Journal(self.path.parent)
            self._replay_journal(int(meta.get("committed", self._next_seq - 1)))

        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._durable = threading.Condition(threading.Lock())
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._closed = False
        self.error: BaseException | None = None
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
            except BaseException:
                conn.execute("ROLLBACK")
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
            if self._size >= self.config.max_events:
                self._wait_for_room()
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
            self._queue.put((seq, lane, body, state_kind, state_key))
        if not journaled:  # sync mode, or the journal is full of uncommitted rows
            self.wait_durable(seq, timeout=None)
        return seq

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
        """Bump a counter (``filtered``, ``refused``, ``retries``) with a reason."""
        with self._lock:
            self.counters.bump(name, n, reason=reason)

    def observe_lamport(self, value: int) -> None:
        """Advance the Lamport clock past a value seen elsewhere."""
        with self._lock:
            self._lamport = max(self._lamport, value)

    def wait_durable(self, seq: int, timeout: float | None) -> bool:
        """Wait until every event up to ``seq`` is committed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._durable:
            while self._watermark < seq:
                if self.error is not None:
                    raise RuntimeError("the outbox writer failed") from self.error
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._durable.wait(left if left is not None else 1.0)
            return True

    # ------------------------------------------------------------------ writer thread

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            if self._sync:
                stop = self._drain_now(batch)
            else:
                stop = self._drain_until(batch, time.monotonic() + self._group_s)
            try:
                self._commit(batch)
            except BaseException as exc:  # keep the reason; callers see it on wait
                log.exception("outbox commit failed")
                self.error = exc
                with self._durable:
                    self._durable.notify_all()
                return

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
            self._queued -= len(batch)
            values = dict(self.counters.values)
            # Persist only what is committed; queued events are in the journal,
            # and a replay counts them when it commits them.
            values["recorded"] -= self._queued
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
            meta = [("next_seq", next_seq), ("lamport", lamport), ("committed", committed)]
            meta += [(k, values[k]) for k in ("recorded", "filtered", "refused")]
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        with self._lock:
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
                conn.execute("ROLLBACK")
                raise
        with self._lock:
            for r in rows:
                self._pending[r.lane] = self._pending.get(r.lane, 0) - 1
            self._size -= len(rows)
            self._room.notify_all()
        return len(rows)

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
                self.journal.clear()  # everything it held is committed now
                self.journal.close()
        if not reader_in_use:
            with self._rlock:
                self._rconn.close()
        return done

    def abandon(self) -> None:
        """Forget the connections and thread without touching them (forked child)."""
        self._closed = True
        self.journal = None
