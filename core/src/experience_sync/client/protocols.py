"""Built-in sync protocols: ``streaming``, ``lumped`` and ``check_in``.

Each protocol owns one *lane* of the instance's outbox. At record time an
event goes to the first selected protocol that accepts it; ``streaming``
accepts only events at or above ``priority_threshold``, the others accept
everything. When ``protocol=None`` the lanes are tried in the order
``streaming``, ``lumped``, ``check_in`` (then any third-party protocol), so
low-priority events fall through to the lumped or check-in lane. An event no
lane accepts is counted as filtered (reason ``below_priority_threshold``) and
reported with a ``sync.filtered`` event.

Schedules run on a grid from the instance's start: ``streaming`` every
``interval_ms`` (or as soon as ``batch_size`` events wait), ``lumped`` every
``batch_interval``, ``check_in`` at the times of its cron ``schedule``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from croniter import croniter

from experience_sync.config import ExperienceSyncConfig
from experience_sync.interfaces import OutboxItem, ProtocolContext, SyncProtocol, SyncRequest
from experience_sync.models import CheckIn, EventsRequest, ExperienceBatch, ExperienceEvent

#: Events per check-in request (the wire model allows 100,000).
CHECKIN_CHUNK = 10_000


def _chunks(items: Sequence[OutboxItem], size: int) -> list[Sequence[OutboxItem]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class _Periodic(SyncProtocol):
    """Ships pending events on a fixed grid of ``interval`` seconds."""

    def __init__(self, interval: float, started_at: float) -> None:
        self.interval = interval
        self._next = started_at + interval

    def next_due(self, now: float) -> float | None:
        if self._next <= now:
            # Skip ticks that passed with nothing to ship, staying on the grid.
            missed = int((now - self._next) / self.interval) + 1
            self._next += missed * self.interval
        return self._next

    def due(self, now: float, pending: int) -> bool:
        return pending > 0 and now >= self._next

    def shipped(self, now: float) -> None:
        self.next_due(now)


class StreamingProtocol(_Periodic):
    """Ships events above a priority threshold every ``interval_ms``, or at ``batch_size``."""

    name = "streaming"
    rank = 0

    @classmethod
    def enabled(cls, config: ExperienceSyncConfig) -> bool:
        """``streaming.enabled``."""
        return config.streaming.enabled

    def __init__(self, config: ExperienceSyncConfig, context: ProtocolContext) -> None:
        cfg = config.streaming
        super().__init__(cfg.interval_ms / 1000.0, context.started_at)
        self.batch_size = cfg.batch_size
        self.threshold = cfg.priority_threshold

    def accepts(self, event: ExperienceEvent) -> bool:
        """Whether the event's priority is at least ``priority_threshold``."""
        return event.priority >= self.threshold

    def due(self, now: float, pending: int) -> bool:
        """Whether ``batch_size`` events wait, or the interval passed with any pending."""
        return pending >= self.batch_size or super().due(now, pending)

    def build_requests(
        self, items: Sequence[OutboxItem], context: ProtocolContext
    ) -> list[tuple[SyncRequest, list[int]]]:
        """One ``events`` request per ``batch_size`` items."""
        out = []
        for chunk in _chunks(items, self.batch_size):
            payload = EventsRequest(
                instance_id=context.instance_id, events=[i.event for i in chunk]
            )
            out.append(
                (SyncRequest("events", context.agent_id, payload), [i.sequence for i in chunk])
            )
        return out


class LumpedProtocol(_Periodic):
    """Ships everything pending every ``batch_interval``, split at ``max_batch_size``."""

    name = "lumped"
    rank = 2

    @classmethod
    def enabled(cls, config: ExperienceSyncConfig) -> bool:
        """``lumped.enabled``."""
        return config.lumped.enabled

    def __init__(self, config: ExperienceSyncConfig, context: ProtocolContext) -> None:
        cfg = config.lumped
        super().__init__(cfg.interval_seconds, context.started_at)
        self.max_batch_size = cfg.max_batch_size
        self.codec = cfg.codec

    def accepts(self, event: ExperienceEvent) -> bool:
        """Every event."""
        return True

    @property
    def max_items(self) -> int:
        """Four batches' worth: ``4 * max_batch_size``."""
        return self.max_batch_size * 4

    def build_requests(
        self, items: Sequence[OutboxItem], context: ProtocolContext
    ) -> list[tuple[SyncRequest, list[int]]]:
        """One ``batch`` request per ``max_batch_size`` items, compressed with ``codec``."""
        out = []
        for chunk in _chunks(items, self.max_batch_size):
            events = [i.event for i in chunk]
            stamps = [e.timestamp for e in events]
            payload = ExperienceBatch(
                instance_id=context.instance_id,
                agent_id=context.agent_id,
                timestamp_start=min(stamps),
                timestamp_end=max(stamps),
                events=events,
                compression=self.codec,
            )
            request = SyncRequest("batch", context.agent_id, payload, compression=self.codec)
            out.append((request, [i.sequence for i in chunk]))
        return out


class CheckInProtocol(SyncProtocol):
    """Checks in on a cron ``schedule`` with the pending events and the local state."""

    name = "check_in"
    rank = 3

    @classmethod
    def enabled(cls, config: ExperienceSyncConfig) -> bool:
        """``check_in.enabled``."""
        return config.check_in.enabled

    def __init__(self, config: ExperienceSyncConfig, context: ProtocolContext) -> None:
        cfg = config.check_in
        self.schedule = cfg.schedule
        self.include_full_state = cfg.include_full_state
        self.uses_state = cfg.include_full_state
        self._next = self._compute_next()

    def _compute_next(self) -> float:
        # croniter works on wall-clock time; the worker waits on the monotonic clock.
        wall = time.time()
        nxt = float(croniter(self.schedule, wall).get_next(float))
        return time.monotonic() + max(nxt - wall, 0.0)

    def accepts(self, event: ExperienceEvent) -> bool:
        """Every event."""
        return True

    def due(self, now: float, pending: int) -> bool:
        """Whether the scheduled time came, even with nothing pending."""
        return now >= self._next

    def next_due(self, now: float) -> float | None:
        """The next time of the cron ``schedule``."""
        return self._next

    def shipped(self, now: float) -> None:
        """Move on to the schedule's next time once the current one has come."""
        if now >= self._next:
            self._next = self._compute_next()

    @property
    def max_items(self) -> int:
        """:data:`CHECKIN_CHUNK`."""
        return CHECKIN_CHUNK

    def build_requests(
        self, items: Sequence[OutboxItem], context: ProtocolContext
    ) -> list[tuple[SyncRequest, list[int]]]:
        """One ``checkin`` request per :data:`CHECKIN_CHUNK` items (one if none are pending).

        With ``include_full_state`` the first carries the full local state;
        the others (or all, without it) carry the state's summary.
        """
        out = []
        chunks = _chunks(items, CHECKIN_CHUNK) or [[]]
        uptime = max(time.monotonic() - context.started_at, 0.0)
        for n, chunk in enumerate(chunks):
            full = self.include_full_state and n == 0
            payload = CheckIn(
                instance_id=context.instance_id,
                agent_id=context.agent_id,
                uptime_seconds=uptime,
                events=[i.event for i in chunk],
                state=context.state() if full else None,
                summary=None if full else context.summary(),
            )
            out.append(
                (SyncRequest("checkin", context.agent_id, payload), [i.sequence for i in chunk])
            )
        return out
