"""Which memories a CrewAI ``Memory`` save stored, read back from the memory itself.

CrewAI 1.15 saves a crew's memories with ``Memory.remember_many()``: the
encoding runs on the memory's own save thread and its
``MemorySaveCompletedEvent.value`` is a summary ("2 memories saved"), never the
memories; no event carries them (the encoding flow suppresses its own events).
What the event does carry is enough to find them: its source is the ``Memory``,
its ``timestamp`` is taken when the save finished and ``save_time_ms`` is how
long the save took. A ``Memory`` runs its saves one at a time (one save
thread), and every record a save inserts gets its ``created_at`` while that save
runs, so the records created inside the save's window are exactly what it
stored. ``remember()`` goes through the same save thread and emits the same
pair of events (with the content as ``value``), so both are read the same way.

What this does not see: a save CrewAI consolidates into an existing record
(an update, not an insert) creates no record and is not reported; records
saved outside the memory's own ``root_scope`` (a per-call ``root_scope`` that
is not under it) are not listed by ``list_records``. Two ``Memory`` objects
sharing one storage path and saving at the same moment can see each other's
records; each record is still recorded once, under one of the two events.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

#: Slack before a save's window. The window's start is estimated as the
#: event's ``timestamp`` minus ``save_time_ms``, which is a little late: CrewAI
#: builds the event (and stamps it) just after measuring the save, and a busy
#: machine can switch threads in between. Records of an earlier save that fall
#: into the slack have been recorded by that save's event already (the
#: listener records a record id once), so a generous slack costs nothing.
WINDOW_SLACK_BEFORE = timedelta(milliseconds=250)
#: Slack after it: a record is stamped before the event is, so only the
#: clocks' resolution needs covering.
WINDOW_SLACK_AFTER = timedelta(milliseconds=10)
_PAGE = 100
#: The summaries CrewAI puts in ``value`` for a ``remember_many()`` batch.
_BATCH_SUMMARY = re.compile(r"^\d+ memor(?:y|ies) (?:saved|\(background\))$")


def is_batch_summary(value: object) -> bool:
    """Whether an event's ``value`` is CrewAI's "<n> memories saved" summary, not a memory."""
    return isinstance(value, str) and _BATCH_SUMMARY.match(value.strip()) is not None


def _utc(moment: datetime) -> datetime:
    # CrewAI stamps records with naive utcnow() and events with aware UTC times.
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def records_of_save(memory: Any, event: Any, started: datetime | None = None) -> list[Any] | None:
    """The ``MemoryRecord`` objects the save reported by ``event`` inserted into ``memory``.

    :param memory: the event's source, a ``crewai.Memory``.
    :param event: its ``MemorySaveCompletedEvent``.
    :param started: the timestamp of the save's ``MemorySaveStartedEvent``,
        when it was seen: nothing the save inserts is older, so the window
        starts there (less the clocks' resolution) rather than at the
        estimate, and a record of an earlier save just before it (one that a
        new listener has not seen recorded) stays out.
    :returns: the records, oldest first; ``None`` when ``memory`` cannot list
        its records (not a CrewAI ``Memory``).
    """
    list_records: Callable[..., list[Any]] | None = getattr(memory, "list_records", None)
    timestamp = getattr(event, "timestamp", None)
    if not callable(list_records) or not isinstance(timestamp, datetime):
        return None
    took = timedelta(milliseconds=float(getattr(event, "save_time_ms", 0.0) or 0.0))
    upper = _utc(timestamp) + WINDOW_SLACK_AFTER
    lower = _utc(timestamp) - took - WINDOW_SLACK_BEFORE
    if started is not None:
        lower = max(lower, _utc(started) - WINDOW_SLACK_AFTER)
    found: list[Any] = []
    offset = 0
    while True:  # newest first: later saves' records, then this one's, then older ones
        page = list_records(limit=_PAGE, offset=offset)
        for record in page:
            created = getattr(record, "created_at", None)
            if not isinstance(created, datetime):
                continue
            created = _utc(created)
            if created < lower:
                return found[::-1]
            if created <= upper:
                found.append(record)
        if len(page) < _PAGE:
            return found[::-1]
        offset += _PAGE
