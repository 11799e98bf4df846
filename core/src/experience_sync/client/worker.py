"""The sync worker: one thread per instance that ships outbox lanes to the hub.

For each protocol the worker asks :meth:`~experience_sync.interfaces.SyncProtocol.due`;
when a lane is due it reads the lane's oldest committed rows, lets the
protocol build requests, sends them through the transport and deletes what
the hub acknowledged. Nothing is deleted before the acknowledgement, so after
a crash or restart whatever is still in the outbox is sent again: delivery is
at-least-once, and the hub absorbs the duplicates (event ids, batch ids and
check-in ids are idempotent there).

Failures:

* :class:`~experience_sync.errors.RetryableError` (the transport already
  retried within its deadline): the rows stay; the lane is retried after an
  exponential backoff with jitter (0.5 s doubling up to 30 s).
* :class:`~experience_sync.errors.RejectedError` with 401, 403 or 404: the
  hub refuses *us* (token, agent), not the events: the rows stay and are
  retried with the same backoff until the operator fixes the configuration;
  ``status().error`` says why.
* any other rejection (400, 413, 422, ...): a request with several events is
  split in halves and re-sent, so one bad event cannot hold back the others;
  a single event the hub still refuses is moved to the outbox's ``dead``
  table with the status and reason, counted as ``dead`` and reported with
  ``sync.failed``. Nothing is lost silently.

The worker also reports for the outbox, whose writer thread has no emitter:
a failed commit (a full disk) is emitted as ``outbox.error`` and shown by
``status().error`` until a commit succeeds again (``outbox.recovered``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from experience_sync.client.outbox import Outbox, Row
from experience_sync.errors import OutboxWriteError, RejectedError
from experience_sync.interfaces import (
    OutboxItem,
    ProtocolContext,
    SyncProtocol,
    SyncRequest,
    Transport,
)
from experience_sync.models import ExperienceEvent, MergeResult
from experience_sync.units import UNITS

log = logging.getLogger("experience_sync.worker")

BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0
#: Rejections that are about the instance's credentials or target, not the events.
BLOCKING_STATUSES = {401, 403, 404}
_EVENT_TYPES = {kind: unit.event_type for kind, unit in UNITS.items()}

Emit = Callable[..., Any]


def ships_empty(protocol: SyncProtocol) -> bool:
    """Whether a protocol sends something even with no events (a check-in does)."""
    return protocol.due(float("inf"), 0)


@dataclass
class Lane:
    """A protocol and the outbox lane it ships."""

    name: str
    protocol: SyncProtocol
    retry_at: float = 0.0
    failures: int = 0


class SyncWorker:
    """Ships one instance's outbox through its transport, on its own thread."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        transport: Transport,
        lanes: Sequence[Lane],
        context: ProtocolContext,
        emit: Emit,
        send_timeout: float = 30.0,
    ) -> None:
        self.outbox = outbox
        self.transport = transport
        self.lanes = list(lanes)
        self.context = context
        self.emit = emit
        self.send_timeout = send_timeout
        self.last_sync: datetime | None = None
        self._error: str | None = None
        self.is_syncing = False
        self._cond = threading.Condition()
        self._wake = False
        self._stop = False
        self._force_until = 0  # ship every lane regardless of schedule up to this seq
        self._thread = threading.Thread(
            target=self._run, name=f"experience-sync-worker-{context.instance_id}", daemon=True
        )
        transport.on_retry = self._on_retry
        outbox.on_error = self._outbox_error

    @property
    def error(self) -> str | None:
        """The last failure: the outbox's while it cannot commit, else shipping's."""
        failed = self.outbox.error
        return str(failed) if failed is not None else self._error

    @error.setter
    def error(self, value: str | None) -> None:
        self._error = value

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def notify(self) -> None:
        """New rows were committed: re-check the protocols."""
        with self._cond:
            self._wake = True
            self._cond.notify()

    def force(self, upto_seq: int) -> None:
        """Ship every lane now, schedule or not, until ``upto_seq`` is delivered."""
        with self._cond:
            self._force_until = max(self._force_until, upto_seq)
            for lane in self.lanes:  # a flush is a reason to try again now
                lane.retry_at = 0.0
            self._wake = True
            self._cond.notify()

    def stop(self, timeout: float) -> bool:
        """Stop the thread; whether it ended within ``timeout``."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs."""
        return self._thread.is_alive()

    def next_sync(self) -> datetime | None:
        """Wall-clock time of the next scheduled shipment."""
        now = time.monotonic()
        times = [t for t in (self._lane_next(lane, now) for lane in self.lanes) if t is not None]
        if not times:
            return None
        return datetime.now(timezone.utc) + timedelta(seconds=max(min(times) - now, 0.0))

    # ------------------------------------------------------------------ loop

    def _lane_next(self, lane: Lane, now: float) -> float | None:
        nxt = lane.protocol.next_due(now)
        if lane.retry_at > now:
            return lane.retry_at if nxt is None else max(nxt, lane.retry_at)
        return nxt

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                self._wake = False
                force = self._force_until
            now = time.monotonic()
            for lane in self.lanes:
                if self._stop:
                    return
                if lane.retry_at > now:
                    continue
                pending = self.outbox.pending(lane.name)
                forced = force > 0 and pending > 0
                if forced or lane.protocol.due(now, pending):
                    try:
                        self._ship(lane, forced)
                    except Exception as exc:  # never let the worker die
                        if self._stop:
                            return  # shutting down: the outbox may be closing under us
                        log.exception("shipping lane %s failed", lane.name)
                        self._failed(lane, f"{type(exc).__name__}: {exc}", None)
                    lane.protocol.shipped(time.monotonic())
            if force:
                first = self.outbox.min_outstanding()
                with self._cond:
                    if (first is None or first > self._force_until) and force == self._force_until:
                        self._force_until = 0
            self._sleep()

    def _sleep(self) -> None:
        now = time.monotonic()
        wait: float | None = None
        for lane in self.lanes:
            if self.outbox.pending(lane.name) == 0 and not ships_empty(lane.protocol):
                nxt = None if lane.retry_at <= now else lane.retry_at
            else:
                nxt = self._lane_next(lane, now)
            if nxt is not None:
                left = max(nxt - now, 0.0)
                wait = left if wait is None else min(wait, left)
        with self._cond:
            if self._wake or self._stop:
                return
            if self._force_until and any(
                self.outbox.pending(lane.name) and lane.retry_at <= now for lane in self.lanes
            ):
                return
            # Protocols may be polled by third parties on their own terms; cap the wait.
            self._cond.wait(min(wait, 60.0) if wait is not None else 60.0)

    # ------------------------------------------------------------------ shipping

    def _ship(self, lane: Lane, forced: bool) -> None:
        proto = lane.protocol
        after = 0
        first = True
        while not self._stop:
            rows = self.outbox.read(lane.name, proto.max_items, after)
            if not rows and not (first and not forced and ships_empty(proto)):
                return
            first = False
            items, bad = self._decode(rows)
            if bad:
                self.outbox.dead_letter(bad, "undecodable", None)
            if not self._deliver(lane, items, {r.seq: r for r in rows}):
                return
            if not rows:
                return
            after = rows[-1].seq

    def _decode(self, rows: Sequence[Row]) -> tuple[list[OutboxItem], list[Row]]:
        items, bad = [], []
        for row in rows:
            try:
                event = ExperienceEvent.model_validate_json(row.body)
            except ValueError:
                bad.append(row)
                continue
            items.append(OutboxItem(row.seq, event, row.lane))
        return items, bad

    def _deliver(self, lane: Lane, items: Sequence[OutboxItem], rows: dict[int, Row]) -> bool:
        """Send items; whether the lane may continue with the next page."""
        built = lane.protocol.build_requests(items, self.context)
        if not built:
            return True
        backlog = str(self.outbox.size)
        for request, _ in built:
            request.meta.setdefault("backlog", backlog)
            request.meta.setdefault("protocol", lane.name)
        self.is_syncing = True
        try:
            results = self.transport.send_many([r for r, _ in built], timeout=self.send_timeout)
        finally:
            self.is_syncing = False
        # One transaction acknowledges every unit of this shipment.
        self.outbox.ack(
            [rows[s] for (_, seqs), result in zip(built, results, strict=True)
             if isinstance(result, MergeResult) for s in seqs if s in rows]
        )
        if self._stop:
            return False  # shutting down: failures now are ours, not the hub's
        ok = True
        by_seq = {i.sequence: i for i in items}
        for (request, seqs), result in zip(built, results, strict=True):
            unit_rows = [rows[s] for s in seqs if s in rows]
            if isinstance(result, MergeResult):
                self._acked(lane, request, result)
            elif isinstance(result, RejectedError) and result.status_code not in BLOCKING_STATUSES:
                if len(seqs) > 1:
                    half = len(seqs) // 2
                    for part in (seqs[:half], seqs[half:]):
                        sub = [by_seq[s] for s in part]
                        ok = self._deliver(lane, sub, rows) and ok
                else:
                    self.outbox.dead_letter(unit_rows, str(result), result.status_code)
                    self._failed(lane, str(result), result.status_code, dead=len(unit_rows))
                    lane.failures = 0
            else:
                status = getattr(result, "status_code", None)
                retry_after = getattr(result, "retry_after", None)
                self._failed(lane, str(result), status, retry_after=retry_after)
                ok = False
        return ok

    def _acked(self, lane: Lane, request: SyncRequest, result: MergeResult) -> None:
        lane.failures = 0
        lane.retry_at = 0.0
        self.error = None
        self.last_sync = datetime.now(timezone.utc)
        self.emit(
            _EVENT_TYPES.get(request.kind, "sync.event"),
            data={
                "protocol": lane.name,
                "transport": self.transport.name,
                "unit_id": request.unit_id,
                "events": request.event_count,
                "accepted": len(result.accepted_event_ids),
                "duplicates": len(result.duplicate_event_ids),
                "duplicate_unit": result.duplicate,
                "backlog": self.outbox.size,
            },
        )

    def _failed(
        self,
        lane: Lane,
        message: str,
        status: int | None,
        *,
        dead: int = 0,
        retry_after: float | None = None,
    ) -> None:
        self.error = message
        if not dead:
            lane.failures += 1
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (lane.failures - 1))
            delay = delay / 2 + random.uniform(0, delay / 2)
            if retry_after is not None:
                delay = max(delay, min(retry_after, BACKOFF_MAX))
            lane.retry_at = time.monotonic() + delay
        self.emit(
            "sync.failed",
            data={
                "protocol": lane.name,
                "transport": self.transport.name,
                "status": status,
                "error": message,
                "dead_lettered": dead,
                "will_retry": not dead,
                "backlog": self.outbox.size,
            },
        )

    def _outbox_error(self, err: OutboxWriteError | None) -> None:
        # Called on the outbox's writer thread.
        if err is None:
            self.emit("outbox.recovered", data={"backlog": self.outbox.size})
            return
        self.emit(
            "outbox.error",
            data={
                "error": str(err),
                "type": type(err).__name__,
                "unsaved": self.outbox.unsaved,
                "backlog": self.outbox.size,
            },
        )

    def _on_retry(self, attempt: int, delay: float, reason: str, status: int | None) -> None:
        # Shown by status() while the transport is still trying, not only once it gave up.
        self.error = f"retrying (attempt {attempt}): {reason}"
        self.outbox.count("retries")
        self.emit(
            "sync.retry",
            data={
                "transport": self.transport.name,
                "attempt": attempt,
                "delay": round(delay, 3),
                "reason": reason,
                "status": status,
            },
        )
