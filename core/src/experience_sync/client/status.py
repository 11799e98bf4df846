"""``SyncStatus``: what ``ExperienceSyncManager.status`` answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class SyncStatus:
    """Where one instance's sync stands.

    :param last_sync: when the hub last acknowledged something.
    :param next_sync: when the next shipment is scheduled (or retried).
    :param backlog_size: events recorded and not yet acknowledged.
    :param is_syncing: a request is in flight.
    :param error: the last failure, cleared by the next success.
    :param recorded, delivered, filtered, refused, dead_lettered, retries:
        counters kept across restarts; ``reasons`` splits them by reason
        (``filtered:below_priority_threshold``, ``refused:outbox_full``, ...).
    """

    instance_id: str
    agent_id: str
    last_sync: datetime | None
    next_sync: datetime | None
    backlog_size: int
    is_syncing: bool
    error: str | None
    protocols: list[str]
    transport: str
    recorded: int = 0
    delivered: int = 0
    filtered: int = 0
    refused: int = 0
    dead_lettered: int = 0
    retries: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    data_dir: str = ""
